"""``salesledger simulate --dataset online-retail --path CSV [--speed X] [--shift-to-today] …``.

Re-enacts a slice of the dataset as live traffic into the profile's sales database: documents
inserted as drafts, posted, edited, cancelled, paid, returned, in timestamp order at X× speed,
each step in its own transaction, with a progress bar; then prints a summary (and writes it as
JSON with ``--summary-json``). Slice, seed and shift default to the latest ``salesledger load``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table

from salesledger.cli.load import (DAYS_OPTION, PROFILE_OPTION, SINCE_OPTION, build_plan,
                                  dataset_file, settings_for, shift_to_today)

console = Console(width=None if sys.stdout.isatty() else 160)
DEFAULT_SPEED = "1000"


def register(root_app: typer.Typer) -> None:
    """Add the top-level ``simulate`` command."""
    root_app.command(name="simulate")(simulate)


def parse_speed(text: str) -> float:
    """``"max"``/``"inf"`` -> infinity, else a positive number of simulated seconds per second."""
    if text.strip().lower() in ("max", "inf", "infinity"):
        return math.inf
    value = float(text)
    if not value > 0:
        raise typer.BadParameter(f"speed must be positive or 'max', got {text}")
    return value


def speed_for(plan, within_s: float) -> float:
    """The speed at which ``plan``'s simulated span (first to last step) takes ``within_s``
    wall seconds (at least 1×)."""
    if len(plan.steps) < 2:
        return math.inf
    span_s = (plan.steps[-1].at - plan.steps[0].at).total_seconds()
    return max(span_s / within_s, 1.0)


def simulate(
    dataset: str = typer.Option("online-retail", "--dataset", help="Dataset to replay."),
    path: Optional[Path] = typer.Option(None, "--path", exists=True, dir_okay=False, readable=True,
                                        help="The dataset file: Online Retail CSV (.gz ok), northwind.sql "
                                             "or pagila-data.sql; default: the bundled copy (online-retail)."),
    speed: str = typer.Option(DEFAULT_SPEED, "--speed",
                              help="Simulated seconds per wall second; 'max' = as fast as possible."),
    shift: Optional[bool] = typer.Option(None, "--shift-to-today/--no-shift",
                                         help="Move dates so the last simulated day is today "
                                              "(default: as the latest load)."),
    days: Optional[int] = DAYS_OPTION,
    since: Optional[dt.datetime] = SINCE_OPTION,
    seed: Optional[int] = typer.Option(None, "--seed", help="Model seed (default: the latest load's, else 42)."),
    within: Optional[float] = typer.Option(None, "--within", min=1,
                                           help="Pick the speed so the replay lasts about this many "
                                                "seconds (overrides --speed)."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Write the summary here."),
    profile: Optional[str] = PROFILE_OPTION,
) -> None:
    """Replay the slice into the sales database as a working day of a sales program."""
    import psycopg

    from salesledger.datasets import DATASETS, store
    from salesledger.simulation import run_plan

    if dataset not in DATASETS:
        console.print(f"[bold red]simulate failed[/]: dataset {dataset!r} is not available "
                      f"(available: {', '.join(DATASETS)})")
        raise typer.Exit(2)
    rate = parse_speed(speed)
    settings = settings_for(profile)
    dsn = settings.dsn("sales", "owner")
    plan, load = _plan_for(dsn, dataset, path, days, since, seed)
    if within is not None:
        rate = speed_for(plan, within)
    if shift is None:
        shift_days = load.shift_days if load else 0
    else:
        shift_days = shift_to_today(plan.days[-1]) if shift else 0
    with psycopg.connect(dsn) as conn:
        missing = store.missing_master_data(conn, plan)
        store.ensure_schema(conn, settings.reporting_role)
        conn.commit()
    if missing:
        counts = ", ".join(f"{len(v)} {k}" for k, v in missing.items())
        console.print(f"[bold red]simulate failed[/]: master data missing in {settings.sales_db} "
                      f"({counts}); run `salesledger load {dataset} --path … ` with the same slice")
        raise typer.Exit(1)
    if load is not None and load.shift_days != shift_days:
        console.print(f"[yellow]note[/]: the latest load dated the opening stock with shift "
                      f"{load.shift_days} days, this replay shifts {shift_days} days")
    result = _run_with_progress(dsn, plan, rate, shift_days, run_plan)
    summary = result.summary(plan, shift_days, rate)
    with psycopg.connect(dsn) as conn:
        summary["dead_letters_recorded"] = store.dead_letter_counts(conn, plan.dataset)
    _print_summary(summary)
    if summary_json:
        summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        console.print(f"summary written to {summary_json}")
    if result.interrupted:
        raise typer.Exit(130)


def _plan_for(dsn: str, dataset: str, path: Optional[Path], days: Optional[int],
              since: Optional[dt.datetime], seed: Optional[int]):
    """The plan to replay and the latest load record (None): without --days/--since the latest
    load's slice, without --seed its seed (else 42)."""
    import psycopg

    from salesledger.datasets import store
    from salesledger.datasets.online_retail import DatasetError

    with psycopg.connect(dsn) as conn:
        load = store.latest_load(conn, dataset)
    from_load = load is not None and days is None and since is None
    since_day = load.first_day if from_load else (since.date() if since else None)
    until = load.last_day if from_load else None
    if seed is None:
        seed = load.seed if load else 42
    try:
        path = path or dataset_file(dataset)
        return build_plan(path, days, since_day, seed, until=until, dataset=dataset), load
    except (DatasetError, ValueError, LookupError) as exc:
        console.print(f"[bold red]simulate failed[/]: {exc}")
        raise typer.Exit(2)


def _run_with_progress(dsn: str, plan, rate: float, shift_days: int, run_plan):
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[docs]} docs · {task.fields[rate]} docs/s"
                                                " · {task.fields[clock]}"), TimeElapsedColumn())
    shift = dt.timedelta(days=shift_days)
    with Progress(*columns, console=console, refresh_per_second=8) as progress:
        task = progress.add_task(f"replay {plan.dataset}", total=len(plan.steps), docs=0, rate="-",
                                 clock="")

        def on_step(index, step, result) -> None:
            if index % 20 and index + 1 != len(plan.steps):
                return
            docs = result.documents_inserted
            rate_now = f"{docs / result.elapsed_s:.0f}" if result.elapsed_s > 0 else "-"
            progress.update(task, completed=index + 1, docs=docs, rate=rate_now,
                            clock=f"{step.at + shift:%Y-%m-%d %H:%M}")

        return run_plan(dsn, plan, speed=rate, shift_days=shift_days, on_step=on_step)


def _print_summary(summary: dict) -> None:
    plan, executed = summary["plan"], summary["executed"]
    table = Table(title=f"simulate {summary['dataset']}: {summary['slice']['first_day']} … "
                        f"{summary['slice']['last_day']} (shift {summary['shift_days']} d, seed "
                        f"{summary['seed']}, speed {summary['speed']})")
    for column in ("document kind", "in plan", "from dataset", "inserted now", "posted now", "lines"):
        table.add_column(column, justify="left" if column == "document kind" else "right")
    for kind, n in plan["documents"].items():
        table.add_row(kind, str(n), str(plan["documents_from_dataset"].get(kind, 0)),
                      str(executed.get("insert", {}).get(kind, 0)),
                      str(executed.get("post", {}).get(kind, 0)), str(plan["lines"].get(kind, 0)))
    console.print(table)
    dead = ", ".join(f"{k} {v}" for k, v in plan["dead_letters"].items()) or "none"
    console.print(
        f"source slice: {plan['source_documents']} documents, {plan['source_lines']} lines; "
        f"documents from the dataset {plan['documents_from_dataset_total']}; dead letters "
        f"{plan['dead_letters_total']} ({dead}); edited {plan.get('edited_invoices', 0)}, "
        f"duplicates cancelled {plan['duplicates_cancelled']}; payments after the slice "
        f"{plan.get('payments_after_slice', 0)}; skipped (already done) "
        f"{summary['skipped_already_done']}; {summary['elapsed_s']} s, "
        f"{summary['documents_per_s'] or '-'} docs/s")
