"""``salesledger golden``: run golden posting cases through the posting engine.

``salesledger golden run PATH... [--format json]`` prints, in JSON, ``{"cases": [{"file",
"id", "run", "status", "diffs"}], "passed": N, "failed": M}`` on stdout (nothing else), one entry
per file × run × variant; exit status 1 when any case fails. The human format prints one line
per case and a readable diff per failing one. ``salesledger golden bench`` measures documents/s
through the engine alone.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

NAME = "golden"
app = typer.Typer(help="Golden posting cases through the posting engine.", no_args_is_help=True)


class Format(str, Enum):
    """Output format of ``golden run``."""

    human = "human"
    json = "json"


@app.command("run")
def run(
    paths: list[Path] = typer.Argument(..., help="Case files or directories of case files."),
    format: Format = typer.Option(Format.human, "--format", help="human | json"),
) -> None:
    """Run case files; exit 1 on any failure."""
    from salesledger.ledger.golden import CaseFormatError, run_paths

    try:
        outcomes = run_paths(paths)
    except CaseFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    passed = sum(o.status == "pass" for o in outcomes)
    failed = len(outcomes) - passed
    if format is Format.json:
        doc = {"cases": [o.as_dict() for o in outcomes], "passed": passed, "failed": failed}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        for o in outcomes:
            typer.echo(f"{'PASS' if o.status == 'pass' else 'FAIL'}  {o.id:<6} {o.run}  ({o.file})")
            for d in o.diffs:
                typer.echo(f"      - {d}")
        typer.echo(f"{passed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


@app.command("bench")
def bench(
    documents: int = typer.Option(20000, help="Documents to post."),
    customers: int = typer.Option(200, help="Distinct customers."),
    skus: int = typer.Option(100, help="Distinct SKUs."),
) -> None:
    """Documents/s through the engine alone on one core (generated invoices, payments,
    receipts and returns)."""
    from salesledger.ledger.bench import run_bench

    result = run_bench(documents=documents, customers=customers, skus=skus)
    typer.echo(json.dumps(result))
