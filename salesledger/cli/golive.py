"""``salesledger golive --date D [--branch B] [--returnable-days N] [--dry-run] [--json]``.

Computes the opening balances as of D from the sales database (stock per SKU and warehouse at
cost, open receivables per invoice, customer advances per payment; :mod:`salesledger.golive`)
and posts them as one ``opening_balance`` document through the documents topic, followed by the
reference documents of the invoices dated on or before D that can still be returned (no entry;
a later return against them posts normally). The ledger
settings (currency, valuation) are the pipeline's (``SALESLEDGER_PIPELINE_LEDGER_SETTINGS_FILE``);
their ``golive_date`` must be D, so that only documents dated after D are posted.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Optional

import typer

from salesledger.cli.load import PROFILE_OPTION, settings_for


def register(root_app: typer.Typer) -> None:
    """Add the top-level ``golive`` command."""
    root_app.command(name="golive")(golive)


def golive(date: dt.datetime = typer.Option(..., "--date", formats=["%Y-%m-%d"],
                                            help="Go-live cut-off D: balances as of the end of D."),
           branch: Optional[str] = typer.Option(None, "--branch", help="Only this branch (phased roll-out)."),
           returnable_days: Optional[int] = typer.Option(
               None, "--returnable-days", min=0,
               help="Take over only invoices of the last N days for later returns (default: every returnable one)."),
           dry_run: bool = typer.Option(False, "--dry-run", help="Compute and print; post nothing."),
           as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
           profile: Optional[str] = PROFILE_OPTION) -> None:
    """Post the opening balances as of --date from the sales database's history."""
    import psycopg

    from salesledger import golive as gl
    from salesledger.streams.app import PipelineSettings

    settings = settings_for(profile)
    ledger = PipelineSettings().ledger_settings()
    as_of = date.date()
    if not dry_run and ledger.golive_date != as_of:
        typer.echo(f"the ledger settings' golive_date is {ledger.golive_date}, not {as_of}: set "
                   f"`golive_date: {as_of}` in the ledger settings file (SALESLEDGER_PIPELINE_"
                   "LEDGER_SETTINGS_FILE) so that documents dated on or before it are not posted", err=True)
        raise typer.Exit(2)
    try:
        with psycopg.connect(settings.dsn("sales", "owner")) as conn:
            source = gl.read_source(conn, as_of, ledger.functional_currency, branch)
        opening = gl.opening_document(source, as_of, ledger, returnable_days)
    except gl.GoliveError as error:
        typer.echo(f"golive: {error}", err=True)
        raise typer.Exit(1)
    summary = {**opening.summary(), "valuation": ledger.valuation, "branch": branch, "posted_to": None}
    if not dry_run:
        summary["posted_to"] = gl.produce_opening(settings, opening.document, opening.references)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if key != "negative_stock":
            typer.echo(f"{key:>16}: {value}")
    if opening.negative:
        typer.echo(f"{len(opening.negative)} positions with negative stock left out (first: {opening.negative[0]})")
