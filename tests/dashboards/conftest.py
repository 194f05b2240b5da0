"""Fixtures of the dashboard tests: the report tests' fresh store schema, sink-writer ledger and
in-process CLI (tests/reports/conftest.py), and the known ledger of ``ledger.yaml``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.reports.conftest import (  # noqa: F401 - fixtures re-used here
    cli,
    owner_conn,
    run_golden,
    store,
    write_ledger,
)

LEDGER_FILE = Path(__file__).with_name("ledger.yaml")


@pytest.fixture
def known_ledger(store: str, write_ledger: Callable[[list], None]) -> dict[str, Any]:
    """``ledger.yaml`` posted by the engine and written into ``store``: ``{"schema", "first",
    "last"}`` (the first and last accounting dates of its entries)."""
    ledger = run_golden(LEDGER_FILE)
    write_ledger(ledger.facts())
    days = sorted({e.accounting_date for e in ledger.entries})
    return {"schema": store, "first": days[0], "last": days[-1], "ledger": ledger}


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
