"""``salesledger ledger ...`` (the accounting store) and the top-level ``salesledger ledger-hash``.

- ``ledger migrate [--schema S]``: apply the store's numbered migrations (as the owner role).
- ``ledger check [--format json] [--schema S]``: entries, unbalanced, duplicates, totals; exit 1
  if anything is off, 2 if the schema has no ledger.
- ``ledger sink``: run one sink worker until SIGTERM (settings ``SALESLEDGER_SINK_*``).
- ``ledger dead-letters [--status open|resolved|all]`` and ``ledger resolve T/P/O --note``.
- ``ledger-hash [--schema S]``: sha256 of the canonical ledger, as the last line of output.
"""

from __future__ import annotations

import json
from enum import Enum

import psycopg
import typer

app = typer.Typer(help="The accounting store: migrations, checks, the sink worker.",
                  no_args_is_help=True)


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


def _connect(role: str) -> psycopg.Connection:
    from salesledger.config import get_settings

    return psycopg.connect(**get_settings().conninfo("accounting", role), autocommit=True,
                           connect_timeout=10)


def _no_schema(schema: str) -> typer.Exit:
    typer.echo(f"schema {schema!r} has no ledger tables: run `salesledger ledger migrate "
               f"--schema {schema}` first", err=True)
    return typer.Exit(2)


@app.command("migrate")
def migrate(schema: str = typer.Option("ledger", help="Target schema.")) -> None:
    """Apply the accounting store's migrations (deploy/sql/accounting) in order."""
    from salesledger.config import get_settings
    from salesledger.sinks.migrate import migrate_store

    applied = migrate_store(get_settings(), schema)
    typer.echo(f"schema {schema}: applied {applied or 'nothing (up to date)'}")


@app.command("check")
def check(
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text or json."),
    schema: str = typer.Option("ledger", help="Schema of the accounting store to check."),
) -> None:
    """Check the ledger: every entry balances, no posting is stored twice, debits = credits.
    Exit code 1 if anything is off."""
    from salesledger.sinks.audit import check_ledger

    try:
        with _connect("reporting") as conn:
            result = check_ledger(conn, schema)
    except psycopg.errors.UndefinedTable:
        raise _no_schema(schema) from None
    if output is OutputFormat.json:
        typer.echo(json.dumps(result.as_json(), sort_keys=True))
    else:
        typer.echo(f"entries {result.entries}  unbalanced {result.unbalanced}  "
                   f"duplicates {result.duplicates}  conflicts {result.conflicts}  "
                   f"debit {result.total_debit}  "
                   f"credit {result.total_credit}  {'OK' if result.ok else 'NOT OK'}")
    raise typer.Exit(0 if result.ok else 1)


@app.command("dead-letters")
def dead_letters(
    status: str = typer.Option("open", help="open | resolved | all."),
    schema: str = typer.Option("ledger", help="Schema of the accounting store."),
    limit: int = typer.Option(100, min=1, max=10_000, help="Rows at most (oldest first)."),
) -> None:
    """List stored dead letters: topic/partition/offset, reason, document, message."""
    from psycopg import sql

    if status not in ("open", "resolved", "all"):
        raise typer.BadParameter("status is open, resolved or all")
    where = sql.SQL("") if status == "all" else sql.SQL("WHERE status = {}").format(
        sql.Literal(status))
    query = sql.SQL(
        "SELECT source_topic, source_partition, source_offset, reason, document_id, status,"
        " message FROM {} {} ORDER BY created_at, source_topic, source_partition, source_offset"
        " LIMIT {}").format(sql.Identifier(schema, "dead_letters"), where, limit)
    try:
        with _connect("reporting") as conn:
            rows = conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        raise _no_schema(schema) from None
    for topic, partition, offset, reason, document, state, message in rows:
        typer.echo(f"{topic}/{partition}/{offset}\t{reason}\t{document or '-'}\t{state}\t"
                   f"{message}")
    typer.echo(f"{len(rows)} dead letter(s) {status}")


@app.command("resolve")
def resolve(
    position: str = typer.Argument(..., help="TOPIC/PARTITION/OFFSET of the dead letter."),
    note: str = typer.Option(..., "--note", help="How it was resolved (kept with it)."),
    schema: str = typer.Option("ledger", help="Schema of the accounting store."),
) -> None:
    """Mark an open dead letter resolved (the only change a dead letter allows)."""
    from psycopg import sql

    try:
        topic, partition, offset = position.rsplit("/", 2)
        key = (topic, int(partition), int(offset))
    except ValueError:
        raise typer.BadParameter("expected TOPIC/PARTITION/OFFSET") from None
    with _connect("sink") as conn:
        done = conn.execute(sql.SQL(
            "UPDATE {} SET status = 'resolved', resolved_at = now(), resolution = %s"
            " WHERE source_topic = %s AND source_partition = %s AND source_offset = %s"
            " AND status = 'open'").format(sql.Identifier(schema, "dead_letters")),
            (note, *key)).rowcount
    if done != 1:
        typer.echo(f"no open dead letter at {position}", err=True)
        raise typer.Exit(1)
    typer.echo(f"resolved {position}")


@app.command("sink")
def sink() -> None:
    """Run one sink worker (Kafka ledger topics -> accounting store) until SIGTERM."""
    import logging

    from salesledger.config import get_settings
    from salesledger.sinks.worker import run_sink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stats = run_sink(get_settings())
    typer.echo(f"sink stopped: {stats.batches} batches, {stats.records} records, "
               f"{stats.dead_letters} dead letters")


def ledger_hash(
    schema: str = typer.Option("ledger", help="Schema of the accounting store to hash."),
) -> None:
    """Print the sha256 of the canonical ledger (entries and lines ordered by id, ingestion
    timestamps and source trace excluded; form in salesledger/sinks/canonical.py) as the last
    line."""
    from salesledger.sinks.audit import ledger_hash as compute

    try:
        with _connect("reporting") as conn:
            digest, entries, lines = compute(conn, schema)
    except psycopg.errors.UndefinedTable:
        raise _no_schema(schema) from None
    typer.echo(f"schema {schema}: {entries} entries, {lines} lines")
    typer.echo(digest)


def register(root_app: typer.Typer) -> None:
    """Mount ``ledger`` (group) and ``ledger-hash`` (top-level) on the root CLI."""
    root_app.add_typer(app, name="ledger")
    root_app.command("ledger-hash")(ledger_hash)
