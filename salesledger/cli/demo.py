"""``salesledger demo``: what ``make demo`` runs.

Until the main job (the posting pipeline) lands, the demo brings the stack up, shows its status
and says plainly that the pipeline is not wired yet. It does not pretend to post anything.
"""

from __future__ import annotations

import typer

from salesledger.cli.stack import console, status_table
from salesledger.config import get_settings
from salesledger.stack import manager
from salesledger.stack.errors import StackError


def register(root_app: typer.Typer) -> None:
    """Add the top-level ``demo`` command."""
    root_app.command(name="demo")(demo)


def demo() -> None:
    """Bring the local stack up (profile run) and show its status."""
    settings = get_settings(profile="run")
    try:
        manager.up(settings, lambda line: console.print(line, highlight=False))
    except StackError as exc:
        console.print(f"[bold red]demo failed[/]: service {exc.service}: {exc.cause}")
        if exc.log_path:
            console.print(f"log file: {exc.log_path}")
        raise typer.Exit(1)
    rows = manager.status(settings)
    console.print(status_table(rows))
    if not manager.all_healthy(rows):
        raise typer.Exit(1)
    console.print(
        "The stack is up and healthy: PostgreSQL "
        f"{settings.host}:{settings.pg_port} (databases {settings.sales_db}, "
        f"{settings.accounting_db}), Kafka {settings.kafka_bootstrap}, Connect "
        f"{settings.connect_url}, Prometheus {settings.prometheus_url}.\n"
        "[bold yellow]The posting pipeline (sales -> Debezium -> postings -> accounting store) is "
        "not wired into the demo yet[/]: nothing is captured or posted. Stop the stack with "
        "`salesledger stack down`.")
