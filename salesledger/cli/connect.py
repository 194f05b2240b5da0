"""``salesledger connect register | status | delete | restart``: the Debezium sales connector."""

from __future__ import annotations

from typing import Optional

import typer

NAME = "connect"
app = typer.Typer(help="The Debezium connector of the sales database (Kafka Connect).",
                  no_args_is_help=True)

_PROFILE = typer.Option(None, "--profile", help="run | test (default: SALESLEDGER_PROFILE or run)")


def _settings(profile: Optional[str]):
    from salesledger.config import get_settings

    return get_settings(profile=profile) if profile else get_settings()


# Not named `register`: the CLI mounter calls a module-level `register(root_app)`.
@app.command("register")
def register_connector(profile: Optional[str] = _PROFILE,
             timeout_s: float = typer.Option(180.0, "--timeout", help="seconds to wait for RUNNING")) -> None:
    """Create or update the connector from connect-configs/sales-postgres.json; wait for RUNNING."""
    from salesledger import connect

    settings = _settings(profile)
    state = connect.register(settings, timeout_s=timeout_s)
    typer.echo(f"{state.name}: {state.state}, tasks {', '.join(state.task_states)}")


@app.command("status")
def show_status(profile: Optional[str] = _PROFILE) -> None:
    """Connector and task states, and its replication slot; exit 1 unless RUNNING."""
    from salesledger import connect
    from salesledger.salesdb.capture import slot_info

    settings = _settings(profile)
    name = connect.connector_name(settings.topic_prefix)
    state = connect.ConnectClient(settings.connect_url).status(name)
    slot = slot_info(settings.dsn("sales", "owner"), connect.slot_name(settings.topic_prefix))
    if slot is not None:
        typer.echo(f"slot {slot.name}: active={slot.active} lag_bytes={slot.lag_bytes}")
    if state is None:
        typer.echo(f"{name}: not registered")
        raise typer.Exit(1)
    typer.echo(f"{name}: {state.state}, tasks {', '.join(state.task_states) or 'none'}")
    for trace in state.traces:
        typer.echo(trace.splitlines()[0])
    if not state.running:
        raise typer.Exit(1)


@app.command()
def restart(profile: Optional[str] = _PROFILE) -> None:
    """Restart the connector and its task, then wait for RUNNING."""
    from salesledger import connect

    settings = _settings(profile)
    client = connect.ConnectClient(settings.connect_url)
    name = connect.connector_name(settings.topic_prefix)
    client.restart(name)
    state = client.wait_running(name)
    typer.echo(f"{name}: {state.state}")


@app.command()
def delete(profile: Optional[str] = _PROFILE,
           drop_slot: bool = typer.Option(False, "--drop-slot",
                                          help="also erase its offsets and drop the replication "
                                               "slot (the next registration snapshots again)")) -> None:
    """Delete the connector; with --drop-slot also its offsets and replication slot (a slot
    nobody reads retains WAL)."""
    from salesledger import connect
    from salesledger.salesdb.capture import drop_slot as drop

    settings = _settings(profile)
    name = connect.connector_name(settings.topic_prefix)
    existed = connect.ConnectClient(settings.connect_url).delete(name, reset_offsets=drop_slot)
    typer.echo(f"{name}: {'deleted' if existed else 'not registered'}")
    if drop_slot:
        slot = connect.slot_name(settings.topic_prefix)
        dropped = drop(settings.dsn("sales", "cdc"), slot)
        typer.echo(f"slot {slot}: {'dropped' if dropped else 'absent'}")
