"""Receivable reports over the state: open items, advances and ageing.

Ageing (golden README): open items age by due date into ``not_due``, ``1-30``, ``31-60``,
``61-90``, ``91-120``, ``121+``; ``days_past_due = as_of − due`` (negative while not yet due).
Reports ``as_of`` a date count only postings with an accounting date on or before it.
Amounts in the functional currency.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from salesledger.ledger.model import ZERO, OpenItem
from salesledger.ledger.state import LedgerState

BUCKETS = ((0, "not_due"), (30, "1-30"), (60, "31-60"), (90, "61-90"), (120, "91-120"))


def bucket(days_past_due: int) -> str:
    """The ageing bucket of ``days_past_due``."""
    for upper, name in BUCKETS:
        if days_past_due <= upper:
            return name
    return "121+"


@dataclass(frozen=True, slots=True)
class AgeingRow:
    """One open item aged on ``as_of``: ``open`` amount, ``due`` date, ``days_past_due``,
    ``bucket``."""

    customer: str
    document: str
    open: Decimal
    due: dt.date
    days_past_due: int
    bucket: str


def age_item(item: OpenItem, as_of: dt.date) -> AgeingRow:
    """Age one open item on ``as_of``."""
    days = (as_of - item.due_date).days
    return AgeingRow(item.customer, item.document, item.open_as_of(as_of), item.due_date, days, bucket(days))


def ageing(state: LedgerState, as_of: dt.date, *, include_settled: bool = False) -> list[AgeingRow]:
    """Every open item of every customer aged on ``as_of`` (settled ones only on request),
    ordered by customer, due date, document."""
    rows = [
        age_item(item, as_of)
        for acc in state.customers.values()
        for item in acc.open_items.values()
        if item.document_date <= as_of or item.postings
    ]
    rows = [r for r in rows if include_settled or r.open != 0]
    return sorted(rows, key=lambda r: (r.customer, r.due, r.document))


def receivable_balance(state: LedgerState, as_of: dt.date | None = None) -> Decimal:
    """Σ open items (all customers), optionally as of a date."""
    return sum(
        (i.open if as_of is None else i.open_as_of(as_of) for a in state.customers.values() for i in a.open_items.values()),
        ZERO,
    )


def advance_balance(state: LedgerState, customer: str | None = None, as_of: dt.date | None = None) -> Decimal:
    """Σ unused advances (of one customer or all), optionally as of a date."""
    accounts = state.customers.values() if customer is None else [a for a in (state.customers.get(customer),) if a]
    return sum((adv.open if as_of is None else adv.open_as_of(as_of) for a in accounts for adv in a.advances), ZERO)
