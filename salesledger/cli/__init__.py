"""The ``salesledger`` command line.

Every module in this package that defines ``app`` (a :class:`typer.Typer`) and ``NAME`` (its
sub-command name) is mounted automatically, so each layer owns its own commands without editing
this file. A module that defines ``register(root_app)`` instead adds top-level commands itself.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(
    name="salesledger",
    help="Sales database -> Debezium -> Kafka -> posting engine -> accounting store.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _mount_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(app)
        elif hasattr(module, "app") and hasattr(module, "NAME"):
            app.add_typer(module.app, name=module.NAME)


@app.callback()
def _root() -> None:
    """Sales database -> Debezium -> Kafka -> posting engine -> accounting store."""


@app.command()
def version() -> None:
    """Print the salesledger version."""
    from salesledger import __version__

    typer.echo(__version__)


_mount_commands()


def main() -> None:
    """Entry point of the ``salesledger`` console script."""
    app()
