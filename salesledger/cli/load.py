"""``salesledger load online-retail|northwind|pagila --path FILE [--days N] [--since DATE] [--seed S]``.

Loads a dataset slice's **master data and opening balances** into the profile's sales database
(idempotent: a re-run writes nothing). Documents arrive only through ``salesledger simulate``,
so the connector's initial snapshot never doubles them. The dataset file is always given with
``--path``: the product does not look for it anywhere by itself.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

NAME = "load"
app = typer.Typer(help="Load a dataset's master data and opening balances into the sales database.",
                  no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)

PATH_OPTION = typer.Option(None, "--path", exists=True, dir_okay=False, readable=True,
                           help="The Online Retail CSV (InvoiceNo,StockCode,…,Country; .gz ok); "
                                "default: the bundled February 2011 (CC BY 4.0).")
DAYS_OPTION = typer.Option(None, "--days", min=1,
                           help="Trading days in the slice (default 7: the file's last 7).")
SINCE_OPTION = typer.Option(None, "--since", formats=["%Y-%m-%d"],
                            help="First day of the slice (YYYY-MM-DD); default: the last --days.")
SEED_OPTION = typer.Option(42, "--seed", help="Seed of the generative model (costs, stock, payers).")
SHIFT_OPTION = typer.Option(False, "--shift-to-today",
                            help="Date the opening balance as if the slice's last day were today.")
PROFILE_OPTION = typer.Option(None, "--profile", help="run | test (default: SALESLEDGER_PROFILE or run)")


@app.callback()
def _group() -> None:
    """Load a dataset's master data and opening balances into the sales database."""


def build_plan(path: Path, days: Optional[int], since: Optional[dt.date], seed: int,
               until: Optional[dt.date] = None, dataset: str = "online-retail"):
    """Read the dataset file and plan the slice (shared by ``load`` and ``simulate``); ``until``
    drops the trading days after it (a recorded load's last day).

    Raises:
        DatasetError: unreadable file or empty slice (NorthwindError is one).
    """
    from salesledger.datasets import online_retail as orr

    if dataset == "northwind":
        from salesledger.datasets import northwind as nw

        rows = nw.read_dump(path)
        available = nw.shipping_days(nw.orders_of(rows))
    elif dataset == "pagila":
        from salesledger.datasets import pagila as pg

        rows = pg.read_dump(path)
        available = pg.activity_days(rows)
    else:
        from salesledger.datasets.plan import plan_online_retail

        lines = orr.read_csv(path)
        available = orr.trading_days(lines)
    chosen = orr.select_days(available, days=days, since=since)
    chosen = [d for d in chosen if until is None or d <= until]
    if not chosen:
        raise orr.DatasetError(f"no trading day between {since} and {until}")
    if dataset == "northwind":
        return nw.plan_northwind(rows, chosen, seed)
    if dataset == "pagila":
        return pg.plan_pagila(rows, chosen, seed)
    return plan_online_retail(lines, chosen, seed)


def dataset_file(dataset: str) -> Path:
    """The bundled copy of ``dataset`` (used when ``--path`` is not given).

    Raises:
        LookupError: nothing is bundled for ``dataset``.
    """
    from salesledger.datasets import bundled_path

    return bundled_path(dataset)


def shift_to_today(last_day: dt.date, today: dt.date | None = None) -> int:
    """Whole days that move ``last_day`` to ``today`` (local date)."""
    return ((today or dt.date.today()) - last_day).days


def settings_for(profile: Optional[str]):
    """The settings of ``profile`` (default: the environment's)."""
    from salesledger.config import get_settings

    return get_settings(profile=profile) if profile else get_settings()


@app.command("online-retail")
def online_retail(path: Optional[Path] = PATH_OPTION, days: Optional[int] = DAYS_OPTION,
                  since: Optional[dt.datetime] = SINCE_OPTION, seed: int = SEED_OPTION,
                  shift: bool = SHIFT_OPTION, profile: Optional[str] = PROFILE_OPTION,
                  as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Upsert branch, warehouse, unit, customers, suppliers, products (with kind and 20% VAT) and
    record the opening stock at cost, for the chosen slice of Online Retail."""
    _load("online-retail", path, days, since, seed, shift, profile, as_json)


@app.command("northwind")
def northwind(path: Path = typer.Option(..., "--path", exists=True, dir_okay=False, readable=True,
                                        help="northwind.sql (pthom/northwind_psql plain-SQL dump)."),
              days: Optional[int] = DAYS_OPTION, since: Optional[dt.datetime] = SINCE_OPTION,
              seed: int = SEED_OPTION, shift: bool = SHIFT_OPTION,
              profile: Optional[str] = PROFILE_OPTION,
              as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Upsert Northwind's customers, suppliers and products (USD, VAT 0%) and record the opening
    stock at cost, for the chosen slice of shipping days."""
    _load("northwind", path, days, since, seed, shift, profile, as_json)


@app.command("pagila")
def pagila(path: Path = typer.Option(..., "--path", exists=True, dir_okay=False, readable=True,
                                     help="pagila-data.sql (devrimgunduz/pagila data-only dump)."),
           days: Optional[int] = DAYS_OPTION, since: Optional[dt.datetime] = SINCE_OPTION,
           seed: int = SEED_OPTION, shift: bool = SHIFT_OPTION,
           profile: Optional[str] = PROFILE_OPTION,
           as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Upsert Pagila's stores (branches, warehouses), customers and rented films (services, USD,
    VAT 0%) for the chosen slice of activity days; no stock."""
    _load("pagila", path, days, since, seed, shift, profile, as_json)


def _load(dataset: str, path: Optional[Path], days: Optional[int], since: Optional[dt.datetime], seed: int,
          shift: bool, profile: Optional[str], as_json: bool) -> None:
    import psycopg

    from salesledger.datasets import store
    from salesledger.datasets.online_retail import DatasetError

    settings = settings_for(profile)
    try:
        path = path or dataset_file(dataset)
        plan = build_plan(path, days, since.date() if since else None, seed, dataset=dataset)
    except (DatasetError, ValueError, LookupError) as exc:
        console.print(f"[bold red]load failed[/]: {exc}")
        raise typer.Exit(2)
    shift_days = shift_to_today(plan.days[-1]) if shift else 0
    try:
        with psycopg.connect(settings.dsn("sales", "owner")) as conn:
            report = store.load_plan(conn, plan, shift_days, settings.reporting_role)
    except psycopg.errors.UndefinedTable as exc:
        console.print(f"[bold red]load failed[/]: {exc.diag.message_primary}; run "
                      f"`salesledger salesdb migrate` first")
        raise typer.Exit(1)
    header = {"dataset": plan.dataset, "database": settings.sales_db, "seed": seed,
              "slice": [plan.days[0].isoformat(), plan.days[-1].isoformat()],
              "trading_days": len(plan.days), "shift_days": shift_days}
    if as_json:
        typer.echo(json.dumps({**header, "tables": report}, indent=2))
        return
    table = Table(title=f"load {plan.dataset} → {settings.sales_db} (slice {plan.days[0]} … "
                        f"{plan.days[-1]}, {len(plan.days)} trading days, seed {seed})")
    for column in ("table", "rows", "inserted", "updated", "unchanged"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, r in report.items():
        table.add_row(name, str(r["rows"]), str(r["inserted"]), str(r["updated"]),
                      str(r["rows"] - r["inserted"] - r["updated"]))
    console.print(table)
    opening = report["opening_stock"]
    console.print(f"opening stock as of {opening['as_of']}: {opening['rows']} SKUs worth "
                  f"{opening['value']} {opening['currency']} at cost, in {store.SCHEMA}.opening_stock; "
                  f"documents come with `salesledger simulate`.")
