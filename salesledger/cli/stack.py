"""``salesledger stack up | down | status | logs [SERVICE] | reset``: the local stack.

Every failure prints the service, the cause and the log file, and exits with code 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from salesledger.config import Settings, get_settings
from salesledger.stack import manager
from salesledger.stack.errors import StackError
from salesledger.stack.process import tail

NAME = "stack"
app = typer.Typer(help="The local stack (PostgreSQL, Kafka, Connect+Debezium, Prometheus) as "
                       "plain processes.", no_args_is_help=True)
# Wide enough for the status table when output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ProfileOption = typer.Option(None, "--profile", "-p",
                             help="run | test (default: SALESLEDGER_PROFILE or run)")


def _settings(profile: Optional[str]) -> Settings:
    if profile is not None and profile not in ("run", "test"):
        raise typer.BadParameter("profile must be run or test")
    return get_settings(profile=profile) if profile else get_settings()


def _fail(exc: StackError) -> None:
    err_console.print(f"[bold red]stack failed[/]: service [bold]{exc.service}[/]: {exc.cause}")
    if exc.log_path:
        err_console.print(f"log file: {exc.log_path}")
    raise typer.Exit(1)


def _report(line: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {line}", highlight=False)


def status_table(rows: list) -> Table:
    """The status rows as a rich table."""
    table = Table(title="salesledger stack")
    for column in ("service", "pid", "port", "health", "version", "memory", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row.health.healthy:
            health = "[green]healthy[/]"
        elif row.required:
            health = "[red]unhealthy[/]" if row.pid else "[red]down[/]"
        else:
            health = "[yellow]n/a[/]"
        rss = f"{row.rss_kib // 1024} MiB" if row.rss_kib else "-"
        table.add_row(row.name, str(row.pid or "-"), str(row.port or "-"), health,
                      row.health.version or "-", rss, row.health.detail)
    return table


@app.command()
def up(profile: Optional[str] = ProfileOption) -> None:
    """Start every service not running yet; return once each passed its health round trip."""
    settings = _settings(profile)
    started = time.monotonic()
    try:
        manager.up(settings, _report)
    except StackError as exc:
        _fail(exc)
    rows = manager.status(settings)
    console.print(status_table(rows))
    console.print(f"stack up in {time.monotonic() - started:.1f} s (profile {settings.profile}; "
                  f"stack dir {settings.stack_dir})")
    if not manager.all_healthy(rows):
        err_console.print("[red]some required service is not healthy[/]")
        raise typer.Exit(1)


@app.command()
def down() -> None:
    """Stop the services that `up` started (pid files); leave anything else alone."""
    settings = get_settings()
    stopped = manager.down(settings, _report)
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status(profile: Optional[str] = ProfileOption) -> None:
    """Print service, pid, port, health (after a real round trip), version. Exit 1 unless every
    required service is healthy."""
    settings = _settings(profile)
    rows = manager.status(settings)
    console.print(status_table(rows))
    if not manager.all_healthy(rows):
        raise typer.Exit(1)


@app.command()
def logs(service: Optional[str] = typer.Argument(None, help="postgresql | kafka | connect | "
                                                 "prometheus | maven (default: all)"),
         lines: int = typer.Option(40, "--lines", "-n", help="lines per log"),
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines")) -> None:
    """Print the last lines of the log files (or follow one)."""
    settings = get_settings()
    names = [service] if service else sorted(p.stem for p in settings.log_dir.glob("*.log"))
    if not names:
        console.print(f"no logs yet in {settings.log_dir}")
        return
    paths = [settings.log_dir / f"{name}.log" for name in names]
    for path in paths:
        if not path.exists():
            err_console.print(f"no log file {path}")
            raise typer.Exit(1)
        if len(paths) > 1:
            console.print(f"[bold]==> {path} <==[/]")
        print(tail(path, lines))
    if follow:
        _follow(paths)


def _follow(paths: list[Path]) -> None:
    positions = {p: p.stat().st_size for p in paths}
    try:
        while True:
            for path in paths:
                size = path.stat().st_size if path.exists() else 0
                if size < positions[path]:
                    positions[path] = 0  # rotated
                if size > positions[path]:
                    with open(path, "rb") as handle:
                        handle.seek(positions[path])
                        sys.stdout.write(handle.read().decode(errors="replace"))
                        sys.stdout.flush()
                    positions[path] = size
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


@app.command()
def reset(profile: Optional[str] = typer.Option(None, "--profile", "-p",
                                                help="wipe only this profile's data (run | test)"),
          all_data: bool = typer.Option(False, "--all", help="stop the stack and wipe all data"),
          yes: bool = typer.Option(False, "--yes", "-y", help="do not ask (needed for run/--all "
                                                               "without a terminal)")) -> None:
    """Wipe data: one profile's databases, topics, groups, connectors and slots (`--profile
    test` never touches the demo's data), or everything (`--all`)."""
    if all_data == (profile is not None):
        raise typer.BadParameter("give exactly one of --profile run|test or --all")
    settings = _settings(profile)
    if (all_data or profile == "run") and not yes:
        what = "ALL stack data" if all_data else "the run profile's (demo) data"
        if not sys.stdin.isatty() or not typer.confirm(f"Delete {what}?"):
            err_console.print("not confirmed (use --yes)")
            raise typer.Exit(1)
    try:
        if all_data:
            manager.reset_all(settings, _report)
        else:
            manager.reset_profile(settings, settings.profile, _report)
    except StackError as exc:
        _fail(exc)


@app.command("bootstrap-db")
def bootstrap_db() -> None:
    """Create or update the roles, databases and default privileges on a PostgreSQL server that
    `up` did not start (e.g. the Docker Compose variant), then check them as each role."""
    from salesledger.stack.postgres import PostgresService

    settings = get_settings()
    service = PostgresService(settings)
    try:
        service.converge()
        health = service.health()
    except Exception as exc:  # psycopg errors: name the server and the cause
        err_console.print(f"[bold red]bootstrap failed[/]: postgresql at "
                          f"{settings.host}:{settings.pg_port}: {exc}")
        raise typer.Exit(1)
    console.print(f"postgresql: {health.detail}")
    if not health.healthy:
        raise typer.Exit(1)
