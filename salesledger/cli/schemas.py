"""``salesledger schemas list | check``: the Avro contracts in ``schemas/``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

NAME = "schemas"
app = typer.Typer(help="The Avro contracts (schemas/*.avsc): versions, fingerprints, "
                       "backward compatibility.", no_args_is_help=True)

_DIR = typer.Option(None, "--dir", help="schema directory (default: the shipped schemas/)")


@app.command("list")
def list_schemas(directory: Optional[Path] = _DIR) -> None:
    """Every subject with its versions, record name and CRC-64-AVRO fingerprints."""
    from salesledger.streams.serde import SchemaCatalog

    catalog = SchemaCatalog.from_directory(directory)
    for subject in catalog.subjects:
        for version in catalog.versions(subject):
            typer.echo(f"{subject:<20} v{version.version:<3} {version.full_name:<32} "
                       f"{version.fingerprint:#018x}")


@app.command("check")
def check_schemas(directory: Optional[Path] = _DIR,
                  samples: int = typer.Option(200, "--samples", min=1, max=10_000,
                                              help="generated records per version pair")) -> None:
    """Check that each version reads data written with the previous one; exit 1 if not."""
    from salesledger.streams.serde import SchemaCatalog, compatibility_problems

    catalog = SchemaCatalog.from_directory(directory)
    failed = 0
    for subject in catalog.subjects:
        versions = catalog.versions(subject)
        for old, new in zip(versions, versions[1:]):
            problems = compatibility_problems(old, new, samples=samples)
            status = "ok" if not problems else "INCOMPATIBLE"
            typer.echo(f"{subject} v{old.version} -> v{new.version}: {status}")
            for problem in problems:
                typer.echo(f"  {problem}")
            failed += bool(problems)
        if len(versions) == 1:
            typer.echo(f"{subject} v1: only version")
    raise typer.Exit(1 if failed else 0)
