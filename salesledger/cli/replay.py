"""``salesledger replay --into SCHEMA --from-beginning | --from-documents``: the audit replay.

Rebuilds the ledger into a fresh (or partly filled) schema of the profile's accounting
database, from the ledger topics or by posting the documents topic again (see
:mod:`salesledger.replay`), then prints the schema's ledger hash as the last line — compare it
with ``salesledger ledger-hash`` of the live store.

``--from-documents`` posts with the chart and ledger settings the live pipeline of this topic
prefix was started with by ``salesledger demo`` (recorded in
``<stack_dir>/run/<prefix>-pipeline.json``); without that record, with
``SALESLEDGER_PIPELINE_CHART`` / ``SALESLEDGER_PIPELINE_LEDGER_SETTINGS_FILE`` (the
settings ``salesledger run`` reads). ``--chart`` / ``--ledger-settings`` override both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def register(root_app: typer.Typer) -> None:
    """Add the top-level ``replay`` command."""
    root_app.command(name="replay")(replay)


def pipeline_options(settings, chart: Optional[str], ledger_file: Optional[Path]):
    """(LedgerSettings, Chart, where they came from) for ``--from-documents``."""
    import yaml

    from salesledger.demo.settings import recorded_pipeline_settings
    from salesledger.ledger.charts import load_chart
    from salesledger.ledger.settings import LedgerSettings
    from salesledger.streams.app import PipelineSettings

    recorded = recorded_pipeline_settings(settings)
    pipeline = PipelineSettings()
    origin = "SALESLEDGER_PIPELINE_* settings"
    chart_name = pipeline.chart
    ledger_path = pipeline.ledger_settings_file
    if recorded is not None:
        origin = f"the live pipeline's record ({settings.topic_prefix}-pipeline.json)"
        chart_name, ledger_path = recorded["chart"], Path(recorded["ledger_settings_file"])
    if chart or ledger_file:
        origin = "the command line"
    chart_name = chart or chart_name
    ledger_path = ledger_file or ledger_path
    ledger = LedgerSettings(**(yaml.safe_load(ledger_path.read_text()) or {})) \
        if ledger_path else LedgerSettings()
    return ledger, load_chart(chart_name), f"chart {chart_name}, {ledger.functional_currency}, " \
                                          f"from {origin}"


def replay(
    into: str = typer.Option(..., "--into", help="Target schema in the accounting database "
                                                 "(created and migrated if missing)."),
    from_beginning: bool = typer.Option(False, "--from-beginning",
                                        help="Rebuild from the ledger topics (offset 0)."),
    from_documents: bool = typer.Option(False, "--from-documents",
                                        help="Post the documents topic again (pure engine)."),
    chart: Optional[str] = typer.Option(None, "--chart", help="Chart for --from-documents "
                                                               "(default: the live run's)."),
    ledger_settings: Optional[Path] = typer.Option(
        None, "--ledger-settings", exists=True, dir_okay=False,
        help="LedgerSettings YAML for --from-documents (default: the live run's)."),
) -> None:
    """Rebuild the ledger into SCHEMA from Kafka; print its ledger hash as the last line."""
    from salesledger.config import get_settings
    from salesledger.replay import replay_from_beginning, replay_from_documents
    from salesledger.sinks.audit import ledger_hash

    if from_beginning == from_documents:
        typer.echo("give exactly one of --from-beginning and --from-documents", err=True)
        raise typer.Exit(2)
    if not _SCHEMA.match(into) or into == "ledger":
        typer.echo(f"--into {into!r}: a lower-case schema name other than the live 'ledger'",
                   err=True)
        raise typer.Exit(2)
    settings = get_settings()
    try:
        if from_beginning:
            typer.echo(f"replay: ledger topics of {settings.topic_prefix} -> "
                       f"{settings.accounting_db}.{into}")
            result = replay_from_beginning(settings, into, typer.echo)
        else:
            ledger, chart_obj, origin = pipeline_options(settings, chart, ledger_settings)
            typer.echo(f"replay: {settings.topic('documents')} through the posting engine "
                       f"({origin}) -> {settings.accounting_db}.{into}")
            result = replay_from_documents(settings, into, ledger, chart_obj, typer.echo)
    except LookupError as exc:
        typer.echo(f"replay failed: {exc}", err=True)
        raise typer.Exit(1)
    rows = ", ".join(f"{t} {n}" for t, n in sorted(result.rows.items()) if n) or "none"
    typer.echo(f"new rows: {rows}; entries already present: {result.duplicate_entries}; "
               f"dead letters: {result.dead_letters}")
    import psycopg

    with psycopg.connect(**settings.conninfo("accounting", "reporting"), connect_timeout=10) as conn:
        digest, entries, lines = ledger_hash(conn, into)
    typer.echo(f"schema {into}: {entries} entries, {lines} lines")
    typer.echo(digest)
