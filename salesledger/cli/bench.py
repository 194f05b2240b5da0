"""``salesledger bench [--lines N] [--repeats R] [--soak] [--dataset D] [--quick]``: throughput,
freshness and the capture limit, side by side (what ``make bench`` runs).

Prints a table and writes ``.bench/latest.json`` (see :mod:`salesledger.bench.runner` for what
is measured and :mod:`salesledger.bench.figures` for the file's shape). The stack must be up
(``salesledger stack up``); the bench uses its own namespace (profile test, databases
``sales_bench`` / ``accounting_bench``, prefix ``slbench``), wiped at the start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

QUICK_LINES = 5_000
QUICK_FRESHNESS_S = 10.0
SOAK_S = 3600.0


def register(root_app: typer.Typer) -> None:
    """Add the top-level ``bench`` command."""
    root_app.command(name="bench")(bench)


def bench(
    lines: Optional[int] = typer.Option(None, "--lines", min=1,
                                        help="Invoice lines per backlog (default 100,000; "
                                             f"--quick {QUICK_LINES:,})."),
    repeats: Optional[int] = typer.Option(None, "--repeats", min=1,
                                          help="Repeats (medians are published; default 3, "
                                               "--quick 1)."),
    soak: bool = typer.Option(False, "--soak", help="Also run one hour at 100 documents/s "
                                                    "and report the RSS slope per worker."),
    dataset: str = typer.Option("synthetic", "--dataset",
                                help="synthetic (seeded) | online-retail-full (not built yet)."),
    quick: bool = typer.Option(False, "--quick", help=f"N = {QUICK_LINES:,}, one repeat, "
                                                      f"{QUICK_FRESHNESS_S:g} s per offered rate."),
    freshness_s: Optional[float] = typer.Option(None, "--freshness-s", min=1,
                                                help="Seconds of load per offered rate "
                                                     "(default 30; --quick 10)."),
    rates: str = typer.Option("10,100,1000", "--rates",
                              help="Offered documents/s of the freshness measurement."),
    seed: int = typer.Option(42, "--seed", help="Seed of the synthetic workload."),
    out: Path = typer.Option(Path(".bench/latest.json"), "--out", help="Where the JSON goes."),
) -> None:
    """Measure Debezium alone, the broker, the whole pipeline, freshness and replay."""
    from rich.console import Console

    from salesledger.bench.runner import DATASETS, Bench, BenchError, BenchOptions
    from salesledger.bench.table import summary_table

    console = Console(width=None if sys.stdout.isatty() else 160)
    if dataset not in DATASETS:
        console.print(f"[bold red]bench failed[/]: unknown dataset {dataset!r} "
                      f"({', '.join(DATASETS)})")
        raise typer.Exit(2)
    try:
        offered = tuple(int(r) for r in rates.split(",") if r.strip())
    except ValueError:
        offered = ()
    if not offered or min(offered) < 1:
        console.print(f"[bold red]bench failed[/]: --rates {rates!r}: positive integers, "
                      "comma-separated")
        raise typer.Exit(2)
    options = BenchOptions(rates=offered,
        lines=lines or (QUICK_LINES if quick else 100_000),
        repeats=repeats or (1 if quick else 3),
        freshness_s=freshness_s or (QUICK_FRESHNESS_S if quick else 30.0),
        soak_s=SOAK_S if soak else 0.0, dataset=dataset, seed=seed)
    runner = Bench(options, lambda line: console.print(line, highlight=False),
                   out_dir=out.parent)
    try:
        document = runner.run()
    except BenchError as exc:
        console.print(f"[bold red]bench failed[/]: {exc}")
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    console.print(summary_table(document))
    console.print(f"written: {out}")
