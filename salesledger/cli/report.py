"""``salesledger report trial-balance | ar-aging | stock | pnl | journal`` over the accounting
store, read as the reporting role (read only).

Every report prints a rich table by default and takes ``--format json|csv|xlsx`` (``xlsx``
needs ``--output FILE``; json/csv go to ``--output`` or stdout), ``--as-of DATE`` (only what is
dated on or before it; default today), ``--schema`` (default ``ledger``) and ``--chart`` (the
chart the pipeline posts with: ``SALESLEDGER_PIPELINE_CHART``, default ``az-nas``). Filters:
``--branch``, ``--customer``, ``--sku``, ``--account`` where the report has that dimension.
Exit 2 when the schema has no ledger.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import typer

NAME = "report"
app = typer.Typer(help="Reports over the accounting store (read-only).", no_args_is_help=True)


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    xlsx = "xlsx"


_FORMAT = typer.Option(ReportFormat.table, "--format", help="table, json, csv or xlsx.")
_OUTPUT = typer.Option(None, "--output", "-o", help="Write to this file (required for xlsx).")
_AS_OF = typer.Option(None, "--as-of", formats=["%Y-%m-%d"],
                      help="Count only what is dated on or before this day (default: today).")
_SCHEMA = typer.Option("ledger", "--schema", help="Schema of the accounting store.")
_CHART = typer.Option("az-nas", "--chart", envvar="SALESLEDGER_PIPELINE_CHART",
                      help="Chart of accounts the ledger was posted with (preset or YAML file).")
_BRANCH = typer.Option(None, "--branch", help="Only this branch.")
_CUSTOMER = typer.Option(None, "--customer", help="Only this customer.")
_SKU = typer.Option(None, "--sku", help="Only this SKU.")


def _day(value: Optional[dt.datetime]) -> Optional[dt.date]:
    return value.date() if value is not None else None


def _run(kind: str, schema: str, build: Callable[[Any], Any], fmt: ReportFormat,
         output: Optional[Path], title: str) -> None:
    """Open the store as the reporting role, build the report, print or write it."""
    import psycopg

    from salesledger.config import get_settings
    from salesledger.reports import store

    if fmt is ReportFormat.xlsx and output is None:
        raise typer.BadParameter("--format xlsx needs --output FILE", param_hint="--output")
    try:
        with store.connect(get_settings().conninfo("accounting", "reporting"), schema) as conn:
            if not store.has_ledger(conn):
                typer.echo(f"schema {schema!r} has no ledger tables: run `salesledger ledger "
                           f"migrate --schema {schema}` first", err=True)
                raise typer.Exit(2)
            report = build(conn)
    except psycopg.OperationalError as err:
        typer.echo(f"accounting store unreachable: {err}", err=True)
        raise typer.Exit(2) from None
    _emit(kind, report, fmt, output, title)


def _emit(kind: str, report: Any, fmt: ReportFormat, output: Optional[Path], title: str) -> None:
    from salesledger.reports import render

    if fmt is ReportFormat.xlsx:
        render.write_xlsx(render.flatten(kind, report), output, kind)  # type: ignore[arg-type]
        typer.echo(f"wrote {output}")
        return
    if fmt is ReportFormat.table:
        from rich.console import Console

        Console().print(render.rich_table(kind, report, title))
        return
    text = render.to_json(report) if fmt is ReportFormat.json else \
        render.to_csv(render.flatten(kind, report))
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=not text.endswith("\n"))


@app.command("trial-balance")
def trial_balance(
    as_of: Optional[dt.datetime] = _AS_OF, fmt: ReportFormat = _FORMAT,
    output: Optional[Path] = _OUTPUT, schema: str = _SCHEMA, chart: str = _CHART,
    currency: Optional[str] = typer.Option(
        None, "--currency", help="Currency of the lines counted (default: the ledger's)."),
    branch: Optional[str] = _BRANCH, customer: Optional[str] = _CUSTOMER,
    sku: Optional[str] = _SKU,
    account: Optional[str] = typer.Option(None, "--account", help="Only this account."),
) -> None:
    """Debit and credit turnovers per account up to --as-of; balance = debit − credit."""
    from salesledger.reports import assemble, store
    from salesledger.reports.accounts import report_accounts

    day = _day(as_of) or dt.date.today()
    names = report_accounts(chart).names

    def build(conn: Any) -> Any:
        try:
            code = currency or store.ledger_currency(conn)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--currency") from None
        return assemble.trial_balance(
            store.trial_balance_rows(conn, as_of=day, currency=code, branch=branch,
                                     customer=customer, sku=sku, account=account),
            as_of=day, currency=code, names=names)

    _run("trial-balance", schema, build, fmt, output, f"Trial balance as of {day}")


@app.command("ar-aging")
def ar_aging(
    as_of: Optional[dt.datetime] = _AS_OF, fmt: ReportFormat = _FORMAT,
    output: Optional[Path] = _OUTPUT, schema: str = _SCHEMA, customer: Optional[str] = _CUSTOMER,
    branch: Optional[str] = _BRANCH,
) -> None:
    """Open items per customer aged by due date (not_due, 1-30 ... 121+); advances apart
    (--branch selects open items, not advances)."""
    from salesledger.reports import assemble, store

    day = _day(as_of) or dt.date.today()
    _run("ar-aging", schema, lambda conn: assemble.ar_aging(
        store.open_item_rows(conn, as_of=day, customer=customer, branch=branch),
        store.advance_rows(conn, as_of=day, customer=customer), as_of=day),
        fmt, output, f"Receivables ageing as of {day}")


@app.command("stock")
def stock(
    as_of: Optional[dt.datetime] = _AS_OF, fmt: ReportFormat = _FORMAT,
    output: Optional[Path] = _OUTPUT, schema: str = _SCHEMA, sku: Optional[str] = _SKU,
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Only this warehouse."),
) -> None:
    """Quantity and value on hand per SKU and warehouse (Σ value = the inventory account)."""
    from salesledger.reports import assemble, store

    day = _day(as_of) or dt.date.today()
    _run("stock", schema, lambda conn: assemble.stock(
        store.stock_rows(conn, as_of=day, sku=sku, warehouse=warehouse)),
        fmt, output, f"Stock as of {day}")


@app.command("pnl")
def pnl(
    date_from: Optional[dt.datetime] = typer.Option(None, "--from", formats=["%Y-%m-%d"],
                                                    help="First day (default: 1st of the month)."),
    date_to: Optional[dt.datetime] = typer.Option(None, "--to", formats=["%Y-%m-%d"],
                                                  help="Last day (default: --as-of or today)."),
    as_of: Optional[dt.datetime] = _AS_OF,
    by: str = typer.Option("day,branch,sku", "--by", help="Grouping: any of day,branch,sku."),
    fmt: ReportFormat = _FORMAT, output: Optional[Path] = _OUTPUT, schema: str = _SCHEMA,
    chart: str = _CHART, branch: Optional[str] = _BRANCH, customer: Optional[str] = _CUSTOMER,
    sku: Optional[str] = _SKU,
) -> None:
    """Revenue, returns, discounts, cost of sales and gross margin per day, branch, SKU."""
    from salesledger.reports import assemble, store
    from salesledger.reports.accounts import report_accounts

    try:
        dims = assemble.parse_dimensions(by)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--by") from None
    last = _day(date_to) or _day(as_of) or dt.date.today()
    first = _day(date_from) or last.replace(day=1)
    accounts = report_accounts(chart)
    _run("pnl", schema, lambda conn: assemble.pnl(
        store.pnl_rows(conn, accounts, date_from=first, date_to=last, branch=branch,
                       customer=customer, sku=sku),
        date_from=first, date_to=last, by=dims), fmt, output, f"P&L {first} .. {last}")


@app.command("journal")
def journal(
    document: str = typer.Option(..., "--document", help="Document number."),
    document_type: Optional[str] = typer.Option(None, "--type",
                                                help="Document type (invoice, payment ...)."),
    as_of: Optional[dt.datetime] = _AS_OF, fmt: ReportFormat = _FORMAT,
    output: Optional[Path] = _OUTPUT, schema: str = _SCHEMA, chart: str = _CHART,
) -> None:
    """A document's journal entries with their trace to the source (row id, LSN, txid)."""
    from salesledger.reports import assemble, store
    from salesledger.reports.accounts import report_accounts

    day = _day(as_of)
    names = report_accounts(chart).names

    def build(conn: Any) -> Any:
        entries, lines = store.journal_rows(conn, document, as_of=day, document_type=document_type)
        subledgers = store.subledger_rows(conn, document, as_of=day, document_type=document_type)
        return assemble.journal(document, entries, lines, as_of=day, names=names,
                                subledgers=subledgers)

    _run("journal", schema, build, fmt, output, f"Journal of {document}")
