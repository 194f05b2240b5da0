"""``salesledger report html --from DATE --to DATE [--out PATH]``: one self-contained HTML page
with the business charts (revenue and margin by day and branch, top products, ageing buckets,
stock value; see :mod:`salesledger.reports.html`).

Registered into the ``report`` group of :mod:`salesledger.cli.report` (which owns the group),
reading the accounting store as the reporting role like every other report.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

import typer

from salesledger.cli import report as report_cli


def html(
    date_from: dt.datetime = typer.Option(..., "--from", formats=["%Y-%m-%d"],
                                          help="First day of the P&L charts."),
    date_to: dt.datetime = typer.Option(..., "--to", formats=["%Y-%m-%d"],
                                        help="Last day of the P&L charts; ageing and stock "
                                             "are as of this day."),
    out: Path = typer.Option(Path("salesledger-report.html"), "--out", "-o",
                             help="Where to write the page."),
    schema: str = report_cli._SCHEMA, chart: str = report_cli._CHART,
) -> None:
    """Write one self-contained HTML page (plotly.js embedded, nothing loaded from the network)
    with revenue and margin by day and branch, top products, ageing buckets and stock value."""
    from salesledger.reports import html as html_report
    from salesledger.reports.accounts import report_accounts

    first, last = date_from.date(), date_to.date()
    if first > last:
        raise typer.BadParameter(f"--from {first} is after --to {last}", param_hint="--from")
    accounts = report_accounts(chart)
    data = _collect(schema, lambda conn: html_report.collect(conn, accounts, date_from=first,
                                                             date_to=last))
    page = html_report.render(data, title=f"salesledger {first} .. {last}")
    out.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out} ({len(page.encode()) // 1024} KiB)")


def _collect(schema: str, build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``build(conn)`` over the store as the reporting role; exit 2 like the other reports
    when the store is unreachable or the schema has no ledger."""
    import psycopg

    from salesledger.config import get_settings
    from salesledger.reports import store

    try:
        with store.connect(get_settings().conninfo("accounting", "reporting"), schema) as conn:
            if not store.has_ledger(conn):
                typer.echo(f"schema {schema!r} has no ledger tables: run `salesledger ledger "
                           f"migrate --schema {schema}` first", err=True)
                raise typer.Exit(2)
            return build(conn)
    except psycopg.OperationalError as err:
        typer.echo(f"accounting store unreachable: {err}", err=True)
        raise typer.Exit(2) from None
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def register(root_app: typer.Typer) -> None:
    """Add ``html`` to the ``report`` group (mounted by salesledger.cli)."""
    del root_app
    if not any(getattr(c, "name", None) == "html" for c in report_cli.app.registered_commands):
        report_cli.app.command("html")(html)
