"""``salesledger run [--workers N]``: run the pipeline's workers under the supervisor.

Starts the assembly worker, N posting workers (one active, the others standbys) and N sink
workers (see :mod:`salesledger.supervisor`), restarts a crashed one with backoff and stops them
all on Ctrl-C / SIGTERM. Logs: ``<stack_dir>/logs/worker-<prefix>-<name>.log``.
"""

from __future__ import annotations

import logging

import typer


def register(root: typer.Typer) -> None:
    """Add the top-level ``run`` command."""

    @root.command("run")
    def run(workers: int = typer.Option(1, "--workers", min=1, max=16,
                                        help="Posting and sink workers (assembly is always one).")
            ) -> None:
        """Run assembly, posting and sink workers until Ctrl-C / SIGTERM."""
        from salesledger.config import get_settings
        from salesledger.supervisor import Supervisor, plan

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        settings = get_settings()
        supervisor = Supervisor(settings, plan(settings, workers))
        supervisor.install_signal_handlers()
        typer.echo(f"salesledger run: profile {settings.profile}, prefix {settings.topic_prefix}, "
                   f"{workers} posting/sink worker(s); logs in {settings.log_dir}")
        supervisor.run()
