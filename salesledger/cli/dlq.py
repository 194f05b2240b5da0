"""``salesledger dlq list | show ID | retry ID|--all``: the dead letters of the accounting store.

A dead letter's ID is its source position ``TOPIC/PARTITION/OFFSET`` (the store's key; as
``ledger resolve`` takes it); ``show`` and ``retry`` also take a document id
(``invoice:INV-1``), meaning that document's open dead letters.

``retry``: a dead letter whose stored payload is a documents-topic record — a version that failed
validation before emission (assembly stores the document record it would have sent), or one
the posting stage could not post — is decoded, validated again against the sales database's
master data as it is now (:mod:`salesledger.salesdb.master_data`) and, when valid, published
unchanged (same key, same value bytes, same version) to ``{prefix}.documents``; then the dead
letter is marked resolved (open -> resolved, the only change the store allows). Order of
effects, so that a crash in between loses nothing and posts nothing twice:

1. produce the record (acks=all, idempotent producer) and wait for its delivery report;
2. mark the dead letter resolved with the documents-topic offset in ``resolution``.

A crash after 1 leaves the letter open: the next retry publishes the same version again, which
the posting stage treats as a duplicate (it deduplicates by document version) — so a second
retry is harmless. A dead letter of a CDC record (a poison pill) carries no document: retry
says so and leaves it open (fix the source, then ``ledger resolve`` it with a note).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import typer

NAME = "dlq"
app = typer.Typer(help="Dead letters: list, show, retry after the cause is fixed.",
                  no_args_is_help=True)

#: Dead letters retried per ``retry --all`` run, at most (oldest first).
RETRY_ALL_MAX = 10_000
_COLUMNS = ("source_topic", "source_partition", "source_offset", "reason", "message",
            "error_type", "document_id", "record_key", "payload", "first_seen", "status",
            "created_at", "resolved_at", "resolution")
_KAFKA_TIMEOUT_S = 30.0


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """One row of the store's ``dead_letters`` table (columns of migration 005)."""

    source_topic: str
    source_partition: int
    source_offset: int
    reason: str
    message: str
    error_type: str
    document_id: str | None
    record_key: bytes | None
    payload: bytes | None
    first_seen: dt.datetime
    status: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolution: str | None

    @property
    def id(self) -> str:
        """``TOPIC/PARTITION/OFFSET``: the dead letter's key in the store."""
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"

    def as_json(self, *, with_payload: bool = False) -> dict[str, Any]:
        """JSON-ready fields (bytes as their length, or hex with ``with_payload``)."""
        out: dict[str, Any] = {"id": self.id}
        for name in _COLUMNS:
            value = getattr(self, name)
            if isinstance(value, (bytes, memoryview)):
                value = bytes(value).hex() if with_payload else f"{len(value)} bytes"
            elif isinstance(value, dt.datetime):
                value = value.isoformat()
            out[name] = value
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (Decimal, dt.date, dt.datetime)):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON: {type(value).__name__}")


# --------------------------------------------------------------------------- store access


def _store(role: str):
    import psycopg

    from salesledger.config import get_settings

    return psycopg.connect(**get_settings().conninfo("accounting", role), autocommit=True,
                           connect_timeout=10)


def _default_schema() -> str:
    from salesledger.sinks.settings import SinkSettings

    return SinkSettings().schema_name


def fetch(conn: Any, schema: str, *, status: str = "open", reason: str | None = None,
          ident: str | None = None, limit: int = 100) -> list[StoredDeadLetter]:
    """Dead letters, oldest first: by ``status`` (open | resolved | all), ``reason``, and
    ``ident`` (``TOPIC/PARTITION/OFFSET`` or a document id)."""
    from psycopg import sql

    where, params = [], []
    if status != "all":
        where.append(sql.SQL("status = %s"))
        params.append(status)
    if reason:
        where.append(sql.SQL("reason = %s"))
        params.append(reason)
    if ident:
        position = _position(ident)
        if position is not None:
            where.append(sql.SQL("(source_topic, source_partition, source_offset) = (%s, %s, %s)"))
            params.extend(position)
        else:
            where.append(sql.SQL("document_id = %s"))
            params.append(ident)
    query = sql.SQL("SELECT {} FROM {} {} ORDER BY created_at, first_seen, source_topic,"
                    " source_partition, source_offset LIMIT %s").format(
        sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), sql.Identifier(schema, "dead_letters"),
        sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""))
    rows = conn.execute(query, (*params, limit)).fetchall()
    return [StoredDeadLetter(*(bytes(v) if isinstance(v, memoryview) else v for v in row))
            for row in rows]


def _position(ident: str) -> tuple[str, int, int] | None:
    """``TOPIC/PARTITION/OFFSET`` parsed, or None for anything else (a document id)."""
    topic, sep, rest = ident.rpartition("/")
    head, sep2, partition = topic.rpartition("/")
    if not (sep and sep2 and partition.isdigit() and rest.isdigit() and head):
        return None
    return head, int(partition), int(rest)


def _resolve(conn: Any, schema: str, letter: StoredDeadLetter, resolution: str) -> bool:
    from psycopg import sql

    return conn.execute(sql.SQL(
        "UPDATE {} SET status = 'resolved', resolved_at = now(), resolution = %s"
        " WHERE source_topic = %s AND source_partition = %s AND source_offset = %s"
        " AND status = 'open'").format(sql.Identifier(schema, "dead_letters")),
        (resolution, letter.source_topic, letter.source_partition, letter.source_offset),
    ).rowcount == 1


# --------------------------------------------------------------------------- retry (pure part)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What retry does with one dead letter: ``action`` publish | still_invalid |
    not_retryable, ``detail`` for a human, ``event`` the decoded document version (with its
    invoice lines' kind from the master data now), ``value`` the record value to publish: the
    stored bytes, or re-encoded when the master data changed the line kinds (a product that was
    unknown when the letter was written)."""

    action: str
    detail: str
    event: Any = None
    value: bytes | None = None


def decide_retry(letter: StoredDeadLetter, serde: Any, validator_for: Any) -> RetryDecision:
    """Decode the stored payload and validate it again (``validator_for(document)`` gives a
    :class:`~salesledger.streams.validation.DocumentValidator` for it). Pure but for what
    ``validator_for`` reads."""
    from salesledger.streams.deadletter import RejectedRecord
    from salesledger.streams.documents import DocumentVersionEvent, decode_documents_record

    try:
        event = decode_documents_record(serde, letter.payload)
    except RejectedRecord as error:
        return RetryDecision("not_retryable", f"payload is not a document record ({error.reason})")
    if not isinstance(event, DocumentVersionEvent):
        return RetryDecision("not_retryable", "payload is not a document version")
    validator = validator_for(event.document)
    document = validator.enrich(event.document)
    error = validator.check(document)
    if error is not None:
        return RetryDecision("still_invalid", f"{error.reason}: {error.message}", event)
    value = letter.payload
    if document != event.document:
        event = dataclasses.replace(event, document=document)
        value = _encoded(serde, event)
    return RetryDecision("publish", f"{event.key} version {event.version[0]}.{event.version[1]}",
                         event, value)


def _encoded(serde: Any, event: Any) -> bytes:
    """The documents-topic value of a read-back document version (same key and version)."""
    from salesledger.streams.assembly import DocumentEvent
    from salesledger.streams.documents import DOCUMENT_SUBJECT, document_datum

    return serde.encode(DOCUMENT_SUBJECT, document_datum(DocumentEvent(
        key=event.key, operation=event.operation, version=event.version, document=event.document,
        source=event.document.source)))


def _validator_factory(settings: Any, sales: Any) -> Any:
    """``document -> DocumentValidator`` with the sales database's master data now (read
    once) and, for a return, its invoice and the other posted returns against it."""
    from salesledger.ledger.model import SalesReturn
    from salesledger.salesdb.master_data import load_master_data, load_returns_view
    from salesledger.streams.app import PipelineSettings
    from salesledger.streams.validation import DocumentsView, DocumentValidator

    ledger = PipelineSettings().ledger_settings()
    master = load_master_data(sales)

    def validator_for(document: Any) -> DocumentValidator:
        view = (load_returns_view(sales, document.against) if isinstance(document, SalesReturn)
                else DocumentsView())
        return DocumentValidator(master, view, functional_currency=ledger.functional_currency,
                                 rate_max_age_days=ledger.rate_max_age_days)

    return validator_for


def _publish(settings: Any, letter: StoredDeadLetter, event: Any, value: bytes) -> str:
    """Produce ``value`` under the letter's key to the documents topic; its
    ``topic/partition/offset``."""
    from confluent_kafka import Producer

    topic = settings.topic("documents")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True})
    report: dict[str, Any] = {}

    def delivered(error: Any, message: Any) -> None:
        report["error"], report["message"] = error, message

    producer.produce(topic, key=letter.record_key, value=value, on_delivery=delivered,
                     headers=[("sl.version", f"{event.version[0]}.{event.version[1]}".encode()),
                              ("dlq.retry.of", letter.id.encode())])
    if producer.flush(_KAFKA_TIMEOUT_S) != 0 or report.get("error") is not None:
        raise RuntimeError(f"publishing {event.key} failed: {report.get('error')}")
    message = report["message"]
    return f"{topic}/{message.partition()}/{message.offset()}"


# --------------------------------------------------------------------------- commands


def _print_table(letters: list[StoredDeadLetter], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("ID", "reason", "document", "status", "first seen", "message"):
        table.add_column(column, overflow="fold")
    for d in letters:
        table.add_row(d.id, d.reason, d.document_id or "-", d.status,
                      d.first_seen.isoformat(timespec="seconds"), d.message[:160])
    Console(width=200).print(table)


@app.command("list")
def list_(
    status: str = typer.Option("open", help="open | resolved | all."),
    reason: str = typer.Option(None, help="Only this reason code."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    schema: str = typer.Option(None, help="Accounting store schema (default: the sink's)."),
    limit: int = typer.Option(100, min=1, max=10_000, help="Rows at most (oldest first)."),
) -> None:
    """List dead letters (oldest first): ID, reason, document, status, message."""
    if status not in ("open", "resolved", "all"):
        raise typer.BadParameter("status is open, resolved or all")
    with _store("reporting") as conn:
        letters = fetch(conn, schema or _default_schema(), status=status, reason=reason,
                        limit=limit)
    if output is OutputFormat.json:
        typer.echo(json.dumps([d.as_json() for d in letters], sort_keys=True))
    else:
        _print_table(letters, f"{len(letters)} dead letter(s) {status}")


@app.command("show")
def show(
    ident: str = typer.Argument(..., metavar="ID", help="TOPIC/PARTITION/OFFSET or a document id."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    schema: str = typer.Option(None, help="Accounting store schema (default: the sink's)."),
) -> None:
    """One dead letter (or a document's) in full, with its payload decoded when it is a
    document record. Exit 1 if there is none."""
    from salesledger.config import get_settings
    from salesledger.streams.serde import AvroSerde

    with _store("reporting") as conn:
        letters = fetch(conn, schema or _default_schema(), status="all", ident=ident)
    if not letters:
        typer.echo(f"no dead letter {ident}", err=True)
        raise typer.Exit(1)
    serde = AvroSerde.for_settings(get_settings())
    items = []
    for letter in letters:
        item = letter.as_json()
        item["document"] = _decoded(serde, letter.payload)
        items.append(item)
    if output is OutputFormat.json:
        typer.echo(json.dumps(items, sort_keys=True, default=_jsonable))
        return
    for item in items:
        for name, value in item.items():
            if name != "document":
                typer.echo(f"{name:>17}: {value}")
        typer.echo(f"{'document':>17}: " + json.dumps(item["document"], default=_jsonable,
                                                        indent=2))


def _decoded(serde: Any, payload: bytes | None) -> Any:
    from salesledger.streams.deadletter import RejectedRecord
    from salesledger.streams.documents import DocumentVersionEvent, decode_documents_record

    try:
        event = decode_documents_record(serde, payload)
    except RejectedRecord:
        return None
    if not isinstance(event, DocumentVersionEvent):
        return None
    return {"key": event.key, "operation": event.operation, "version": list(event.version),
            "type": event.document.doc_type, **dataclasses.asdict(event.document)}


@app.command("retry")
def retry(
    ident: str = typer.Argument(None, metavar="[ID]",
                                help="TOPIC/PARTITION/OFFSET or a document id."),
    every: bool = typer.Option(False, "--all", help="Every open dead letter (oldest first)."),
    schema: str = typer.Option(None, help="Accounting store schema (default: the sink's)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """Validate open dead letters again and publish the valid ones to the documents topic,
    then mark them resolved. Exit 1 if a named dead letter is still invalid, not retryable or
    not open."""
    from salesledger.config import get_settings
    from salesledger.salesdb.master_data import connect_sales
    from salesledger.streams.serde import AvroSerde

    if every == (ident is not None):
        raise typer.BadParameter("give one ID or --all")
    schema = schema or _default_schema()
    settings = get_settings()
    with _store("sink") as store, connect_sales(settings) as sales:
        letters = fetch(store, schema, status="open", ident=ident,
                        limit=RETRY_ALL_MAX if every else 100)
        if not letters:
            typer.echo(f"no open dead letter {ident or ''}".rstrip(), err=True)
            raise typer.Exit(0 if every else 1)
        validator_for, serde = _validator_factory(settings, sales), AvroSerde.for_settings(settings)
        results = []
        for letter in letters:
            decision = decide_retry(letter, serde, validator_for)
            detail = decision.detail
            if decision.action == "publish":
                position = _publish(settings, letter, decision.event,   # 1. publish
                                    decision.value)
                detail = f"retried: {detail} published at {position}"
                if not _resolve(store, schema, letter, detail):         # 2. resolve
                    detail += " (already resolved meanwhile)"
            results.append({"id": letter.id, "document": letter.document_id,
                            "action": decision.action, "detail": detail})
    if output is OutputFormat.json:
        typer.echo(json.dumps(results, sort_keys=True))
    else:
        for r in results:
            typer.echo(f"{r['id']}\t{r['document'] or '-'}\t{r['action']}\t{r['detail']}")
    published = sum(r["action"] == "publish" for r in results)
    typer.echo(f"{published} published, {len(results) - published} left open", err=True)
    if not every and published < len(results):
        raise typer.Exit(1)
