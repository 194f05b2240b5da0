"""Fixtures of the report tests: a fresh accounting-store schema per test in ``accounting_test``,
ledgers written into it through the sink writer (:class:`salesledger.sinks.writer.LedgerWriter`)
from golden cases run through the real posting engine, and the CLI run in-process.

Stack tests fail (never skip) when PostgreSQL is not there (tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest
import yaml
from psycopg import sql

from salesledger.config import Settings

GOLDEN_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "golden").resolve()


@dataclass
class Ledger:
    """Every fact a golden run produced, in order, and the run's final engine state."""

    entries: list = field(default_factory=list)
    movements: list = field(default_factory=list)
    updates: list = field(default_factory=list)
    state: Any = None
    chart: Any = None

    def facts(self) -> list:
        return [*self.entries, *self.movements, *self.updates]


def _collect(ledger: Ledger, result: Any) -> None:
    ledger.entries += result.entries
    ledger.movements += result.movements
    ledger.updates += result.receivable_updates
    for sub in result.also:
        _collect(ledger, sub)


def run_golden(name: str | Path, run: int = 0, release: bool = True) -> Ledger:
    """Run golden case file ``name`` (run ``run`` of its ``cases:``) through the posting engine,
    keeping every entry, stock movement and receivable update; held documents are released at
    the end when ``release``. ``name`` is a file of the golden directory or any path."""
    from salesledger.ledger import engine, golden
    from salesledger.ledger.charts import load_chart
    from salesledger.ledger.model import OpeningBalance, OpeningStockLine, Release
    from salesledger.ledger.state import LedgerState

    path = name if isinstance(name, Path) else GOLDEN_DIR / name
    assert path.is_file(), f"golden case {path} not found"
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    _, chart_name, raw_settings, steps, _ = golden.runs_of(case)[run]
    settings, chart = golden.make_settings(raw_settings), load_chart(chart_name)
    given = case.get("given") or {}
    builder = golden._Builder(settings.functional_currency)
    inputs = [builder.build(*golden._step(s)) for s in steps]
    ledger, state = Ledger(chart=chart), LedgerState()
    if given.get("stock"):
        first = min(i.date for i in inputs if hasattr(i, "date"))
        opening = OpeningBalance(
            id="opening", number="OPENING", date=first - dt.timedelta(days=1),
            currency=settings.functional_currency,
            stock=tuple(OpeningStockLine(sku=str(s["sku"]), warehouse=str(s["warehouse"]),
                                         qty=golden._dec(s["qty"], "qty"),
                                         unit_cost=golden._dec(s["unit_cost"], "cost"))
                        for s in given["stock"]))
        state, result = engine.post(state, opening, settings, chart)
        _collect(ledger, result)
    if given.get("locked_through") is not None:
        state, _ = engine.lock_period(state, golden.PeriodLock(
            through=golden._date(given["locked_through"], "locked_through")))
    for item in inputs:
        state, result = engine.apply(state, item, settings, chart)
        _collect(ledger, result)
    if release:
        for key in list(state.held):
            state, result = engine.release(state, Release(document_key=key), settings, chart)
            _collect(ledger, result)
    ledger.state = state
    return ledger


@pytest.fixture(scope="session")
def owner_conn(settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(**settings.conninfo("accounting", "owner"), autocommit=True,
                         connect_timeout=10) as conn:
        yield conn


@pytest.fixture
def store(settings: Settings, owner_conn: psycopg.Connection) -> Iterator[str]:
    """A fresh accounting-store schema with every migration applied; dropped after the test."""
    from salesledger.sinks.migrate import apply_migrations

    schema = f"rpt_{uuid.uuid4().hex[:10]}"
    apply_migrations(owner_conn, schema, writer_role=settings.sink_role,
                     reporting_role=settings.reporting_role)
    yield schema
    owner_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def write_ledger(settings: Settings, store: str) -> Callable[[list], None]:
    """Writes facts into ``store`` through the sink writer, as the sink role."""
    from salesledger.sinks.records import LedgerRecord, Position
    from salesledger.sinks.writer import LedgerWriter

    offsets = iter(range(1_000_000))

    def write(facts: list) -> None:
        writer = LedgerWriter(lambda: psycopg.connect(**settings.conninfo("accounting", "sink"),
                                                      connect_timeout=10),
                              consumer_group=f"rpt-{store}", schema=store)
        try:
            records = [LedgerRecord(Position("rpt.facts", 0, next(offsets)), fact)
                       for fact in facts]
            result = writer.write(records)
        finally:
            writer.close()
        assert not result.dead_letters, [d.message for d in result.dead_letters]

    return write


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Runs ``salesledger <args>`` in-process; returns the click result (exit_code, output)."""
    from typer.testing import CliRunner

    from salesledger.cli import app

    runner = CliRunner()

    def invoke(*args: str, expect: int | None = 0) -> Any:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result

    return invoke


def report_json(cli: Callable[..., Any], *args: str) -> Any:
    """``salesledger <args> --format json`` parsed."""
    result = cli(*args, "--format", "json")
    return json.loads(result.stdout)
