"""``salesledger salesdb migrate | status``: the reference sales schema in the profile's sales DB."""

from __future__ import annotations

from typing import Optional

import typer

NAME = "salesdb"
app = typer.Typer(help="The reference sales database (schema `sales`): migrations.",
                  no_args_is_help=True)

_PROFILE = typer.Option(None, "--profile", help="run | test (default: SALESLEDGER_PROFILE or run)")


def _settings(profile: Optional[str]):
    from salesledger.config import get_settings

    return get_settings(profile=profile) if profile else get_settings()


def identifiers(settings) -> dict[str, str]:
    """The migration placeholders for ``settings``: role names and the publication name."""
    from salesledger.connect import PUBLICATION

    return {"cdc_role": settings.cdc_role, "reporting_role": settings.reporting_role,
            "publication": PUBLICATION}


@app.command()
def migrate(profile: Optional[str] = _PROFILE) -> None:
    """Apply the pending migrations of deploy/sql/sales (as the owner role); idempotent."""
    from salesledger.salesdb.migrations import migrate as run

    settings = _settings(profile)
    applied = run(settings.dsn("sales", "owner"), identifiers(settings))
    for migration in applied:
        typer.echo(f"applied {migration.version}_{migration.name}")
    typer.echo(f"{settings.sales_db}: {len(applied)} migration(s) applied, schema up to date")


@app.command()
def status(profile: Optional[str] = _PROFILE) -> None:
    """List the migrations with their applied time; exit 1 if any is pending or changed."""
    from salesledger.salesdb.migrations import status as read

    settings = _settings(profile)
    states = read(settings.dsn("sales", "owner"))
    for state in states:
        m = state.migration
        when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "pending"
        flag = "  CHANGED SINCE APPLIED" if state.changed else ""
        typer.echo(f"{m.version}_{m.name:<24} {when}{flag}")
    if any(s.applied_at is None or s.changed for s in states):
        raise typer.Exit(1)
