"""``salesledger bench [--lines N] [--repeats R] [--soak [--soak-minutes M]] [--dataset D]
[--namespace NAME] [--quick]``: throughput,
freshness and the capture limit, side by side (what ``make bench`` runs).

Prints a table and writes ``.bench/latest.json`` (see :mod:`salesledger.bench.runner` for what
is measured and :mod:`salesledger.bench.figures` for the file's shape). The stack must be up
(``salesledger stack up``); the bench uses its own namespace (profile test, databases
``sales_bench`` / ``accounting_bench``, prefix ``slbench``), wiped at the start.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

QUICK_LINES = 5_000
QUICK_FRESHNESS_S = 10.0
SOAK_S = 3600.0
#: Where ``--dataset online-retail-full`` looks without ``--dataset-path``: beside the checkout.
DEFAULT_DATASET_PATH = (Path(__file__).resolve().parents[3] / "shared" / "datasets"
                        / "online_retail" / "onlineretail.rda")


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def register(root_app: typer.Typer) -> None:
    """Add the top-level ``bench`` command."""
    root_app.command(name="bench")(bench)


def bench(
    lines: Optional[int] = typer.Option(None, "--lines", min=1,
                                        help="Invoice lines per backlog (default 100,000; "
                                             f"--quick {QUICK_LINES:,}; online-retail-full: "
                                             "every sales line, or its first invoices up to N)."),
    repeats: Optional[int] = typer.Option(None, "--repeats", min=0,
                                          help="Repeats (medians are published; default 3, "
                                               "--quick 1; 0 with --soak: the soak alone)."),
    soak: bool = typer.Option(False, "--soak", help="Then a steady load (--soak-docs-per-s) "
                                                    "for --soak-minutes: RSS slope per worker, "
                                                    "RSS at 15 min, freshness."),
    soak_minutes: float = typer.Option(SOAK_S / 60, "--soak-minutes", min=0.5,
                                       help="Length of the soak's load, minutes."),
    soak_docs_per_s: float = typer.Option(10.0, "--soak-docs-per-s", min=0.1,
                                          help="Offered documents/s during the soak."),
    dataset: str = typer.Option("synthetic", "--dataset",
                                help="synthetic (seeded) | online-retail-full (all 541,909 "
                                     "lines of Online Retail as the backlog)."),
    dataset_path: Optional[Path] = typer.Option(
        None, "--dataset-path", help="The Online Retail R data file (default: "
                                     "../shared/datasets/online_retail/onlineretail.rda beside "
                                     "the checkout)."),
    quick: bool = typer.Option(False, "--quick", help=f"N = {QUICK_LINES:,}, one repeat, "
                                                      f"{QUICK_FRESHNESS_S:g} s per offered rate."),
    freshness_s: Optional[float] = typer.Option(None, "--freshness-s", min=1,
                                                help="Seconds of load per offered rate "
                                                     "(default 30; --quick 10)."),
    rates: str = typer.Option("10,50,100,1000", "--rates",
                              help="Offered documents/s of the freshness measurement."),
    seed: int = typer.Option(42, "--seed", help="Seed of the synthetic workload."),
    namespace: str = typer.Option("", "--namespace",
                                  help="Run in a separate namespace NAME (prefix slbenchNAME, "
                                       "databases sales_bench_NAME / accounting_bench_NAME), "
                                       "e.g. a soak beside a bench."),
    out: Path = typer.Option(Path(".bench/latest.json"), "--out", help="Where the JSON goes."),
) -> None:
    """Measure Debezium alone, the broker, the whole pipeline, freshness and replay."""
    from rich.console import Console

    from salesledger.bench import runner as bench_runner
    from salesledger.bench.table import summary_table

    console = Console(width=None if sys.stdout.isatty() else 160)

    def refuse(message: str) -> None:
        console.print(f"[bold red]bench failed[/]: {message}")
        raise typer.Exit(2)

    if dataset not in bench_runner.DATASETS:
        refuse(f"unknown dataset {dataset!r} ({', '.join(bench_runner.DATASETS)})")
    try:
        offered = tuple(int(r) for r in rates.split(",") if r.strip())
    except ValueError:
        offered = ()
    if not offered or min(offered) < 1:
        refuse(f"--rates {rates!r}: positive integers, comma-separated")
    if repeats == 0 and not soak:
        refuse("--repeats 0 measures nothing without --soak")
    if dataset == "online-retail-full":
        dataset_path = dataset_path or DEFAULT_DATASET_PATH
        if not dataset_path.is_file():
            refuse(f"--dataset-path {dataset_path}: no such file (the Online Retail R data, "
                   "onlineretail.rda)")
    try:
        space = bench_runner.namespace(namespace)
    except bench_runner.BenchError as exc:
        refuse(str(exc))
    options = bench_runner.BenchOptions(
        rates=offered, lines=lines or (0 if dataset == "online-retail-full" else
                                       QUICK_LINES if quick else 100_000),
        repeats=(1 if quick else 3) if repeats is None else repeats,
        freshness_s=freshness_s or (QUICK_FRESHNESS_S if quick else 30.0),
        soak_s=soak_minutes * 60 if soak else 0.0, soak_docs_per_s=soak_docs_per_s,
        dataset=dataset, dataset_path=dataset_path, seed=seed)
    bench_run = bench_runner.Bench(options, lambda line: console.print(line, highlight=False),
                                   space=space, out_dir=out.parent)
    # SIGTERM and SIGINT (also when started in the background, where SIGINT is ignored) end
    # the run through its clean-up: workers stopped, connector and replication slot removed
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        document = bench_run.run()
    except bench_runner.BenchError as exc:
        console.print(f"[bold red]bench failed[/]: {exc}")
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    console.print(summary_table(document))
    console.print(f"written: {out}")
