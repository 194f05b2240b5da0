"""``salesledger reconcile [--from DATE] [--to DATE] [--format table|json]``: the sales database
(source side, by SQL) against the accounting store (ledger side), plus the ledger's own
invariants; see :mod:`salesledger.reports.reconcile`. Both are read as the reporting role.

Exit 0 when nothing differs, 1 when anything does, 2 when a database or the ledger is missing.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Optional

import typer


class ReconcileFormat(str, Enum):
    table = "table"
    json = "json"


def reconcile(
    date_from: Optional[dt.datetime] = typer.Option(None, "--from", formats=["%Y-%m-%d"],
                                                    help="First document day (default: all)."),
    date_to: Optional[dt.datetime] = typer.Option(None, "--to", formats=["%Y-%m-%d"],
                                                  help="Last document day (default: today)."),
    fmt: ReconcileFormat = typer.Option(ReconcileFormat.table, "--format", help="table or json."),
    schema: str = typer.Option("ledger", "--schema", help="Schema of the accounting store."),
    chart: str = typer.Option("az-nas", "--chart", envvar="SALESLEDGER_PIPELINE_CHART",
                              help="Chart of accounts the ledger was posted with."),
    currency: Optional[str] = typer.Option(
        None, "--currency", help="The ledger's functional currency (default: its lines')."),
    customer: Optional[str] = typer.Option(None, "--customer", help="Only this customer."),
    branch: Optional[str] = typer.Option(None, "--branch", help="Only this branch."),
) -> None:
    """Compare invoiced (net, VAT, gross), returned, paid and goods issued per document, day,
    branch and customer with the ledger; check the ledger's invariants. Exit 1 on a difference."""
    import psycopg

    from salesledger.config import get_settings
    from salesledger.reports import render, store
    from salesledger.reports.accounts import report_accounts
    from salesledger.reports.reconcile import reconcile as run

    settings = get_settings()
    last = date_to.date() if date_to else dt.date.today()
    first = date_from.date() if date_from else None
    try:
        with store.connect(settings.conninfo("accounting", "reporting"), schema) as ledger, \
                psycopg.connect(**settings.conninfo("sales", "reporting"), autocommit=True,
                                connect_timeout=10) as sales:
            if not store.has_ledger(ledger):
                typer.echo(f"schema {schema!r} has no ledger tables", err=True)
                raise typer.Exit(2)
            sales.read_only = True
            try:
                functional = currency or store.ledger_currency(ledger)
            except ValueError as err:
                raise typer.BadParameter(str(err), param_hint="--currency") from None
            report = run(sales, ledger, report_accounts(chart), date_from=first, date_to=last,
                         functional_currency=functional, customer=customer, branch=branch)
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as err:
        typer.echo(f"cannot read the databases: {err}", err=True)
        raise typer.Exit(2) from None
    if fmt is ReconcileFormat.json:
        typer.echo(render.to_json(report))
    else:
        from rich.console import Console

        console = Console()
        checked = ", ".join(f"{k} {v}" for k, v in report["checked"].items())
        console.print(f"checked: {checked}")
        if report["golive"]:
            console.print(f"go-live {report['golive']}: the {report['checked']['before_golive']} "
                          "source documents dated on or before it are in the opening balance, "
                          "not compared")
        if report["differences"]:
            console.print(render.rich_table("reconcile", report, "Differences"))
        else:
            console.print("no differences")
    raise typer.Exit(1 if report["differences"] else 0)


def register(root_app: typer.Typer) -> None:
    """Mount ``reconcile`` as a top-level command."""
    root_app.command("reconcile")(reconcile)
