"""``salesledger demo [--days N] [--dataset D] [--fresh] [--follow] [--speed X]``: what
``make demo`` runs (after ``make setup`` installed what was missing).

Brings the stack up, loads the dataset's master data and opening stock, registers the
connector, starts the workers, replays the sales as live traffic with a live view, waits until
the pipeline has drained and prints the books (see :mod:`salesledger.demo.orchestrate`).
Settings: ``deploy/demo.yaml`` (``--settings`` for another file); the profile is
``SALESLEDGER_PROFILE`` (default ``run``). Exit 0 when the books balance and reconcile.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def register(root_app: typer.Typer) -> None:
    """Add the top-level ``demo`` command."""
    root_app.command(name="demo")(demo)


def demo(
    days: Optional[int] = typer.Option(None, "--days", min=1,
                                       help="Trading days of the slice (default: demo.yaml, 7)."),
    dataset: Optional[str] = typer.Option(None, "--dataset",
                                          help="Dataset (default: demo.yaml, online-retail)."),
    path: Optional[Path] = typer.Option(None, "--path", exists=True, dir_okay=False,
                                        help="Dataset file (default: the copy shipped in the "
                                             "package)."),
    fresh: bool = typer.Option(False, "--fresh", help="Wipe this profile's data first "
                                                     "(databases, topics, connector)."),
    follow: bool = typer.Option(False, "--follow", help="Keep the pipeline and the live view "
                                                       "running after the books are printed."),
    speed: Optional[str] = typer.Option(None, "--speed",
                                        help="Simulated seconds per wall second, or 'max' "
                                             "(default: the speed that fits demo.yaml's within_s)."),
    within: Optional[float] = typer.Option(None, "--within", min=1,
                                           help="Seconds the replay should last (default: "
                                                "demo.yaml, 420)."),
    settings_file: Optional[Path] = typer.Option(None, "--settings", exists=True, dir_okay=False,
                                                 help="Demo settings file (default: "
                                                      "deploy/demo.yaml)."),
) -> None:
    """Stack up, load real sales, replay them live into the books, print the books."""
    from rich.console import Console

    from salesledger.cli.simulate import parse_speed
    from salesledger.config import get_settings
    from salesledger.datasets import DATASETS
    from salesledger.demo.orchestrate import DemoError, run_demo
    from salesledger.demo.settings import load_demo_settings

    console = Console(width=None if sys.stdout.isatty() else 160)
    if dataset is not None and dataset != "online-retail" and path is None:
        if dataset not in DATASETS:
            console.print(f"[bold red]demo failed[/]: unknown dataset {dataset!r} "
                          f"({', '.join(DATASETS)})")
            raise typer.Exit(2)
        console.print(f"[bold red]demo failed[/]: only online-retail is shipped; give --path "
                      f"for {dataset}")
        raise typer.Exit(2)
    demo_settings = load_demo_settings(settings_file).with_overrides(
        days=days, dataset=dataset, path=path, within_s=within,
        speed=parse_speed(speed) if speed else None)
    try:
        code = run_demo(get_settings(), demo_settings, fresh=fresh, follow=follow,
                        console=console)
    except DemoError as exc:
        console.print(f"[bold red]demo failed[/]: {exc}")
        raise typer.Exit(1)
    raise typer.Exit(code)
