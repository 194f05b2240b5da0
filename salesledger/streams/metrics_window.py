"""Per-minute business aggregates for the real-time metrics topic (``{prefix}.metrics``).

Fed with the journal entries the posting stage newly posts, it sums per window of
``window_s`` seconds (default 60) of the source commit time (event time: the same documents
give the same windows on every replay; wall clock only when a document has no commit time):

==================  ==================================================  =================
metric              amount (functional currency, scale 2)               dimensions
==================  ==================================================  =================
``revenue_amount``  Σ (credit − debit) on the chart's ``revenue`` account  branch, sku
``returns_amount``  Σ (debit − credit) on ``sales_returns``                branch, sku
``cogs_amount``     Σ (debit − credit) on ``cost_of_sales``                branch, sku
``margin_amount``   revenue − returns − cogs                               branch, sku
``payments_amount`` Σ (debit − credit) on cash / bank / vat_deposit in      branch
                    entries of kind ``payment``
==================  ==================================================  =================

Defined on accounts (not entry kinds), so reversals and adjustments count and the window sums
equal the ledger's account movements over the same documents. Records are Avro
``salesledger.MetricAggregate`` (``schemas/metric_aggregate.v1.avsc``), keyed by metric name.
A record is a *partial* aggregate: a late document for a window already flushed produces a
second record for it; consumers sum records with equal (metric, window, dimensions).
In-memory: a crash loses the unflushed windows (metrics are not the ledger; the ledger is).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Iterable

from salesledger.ledger.charts import Chart
from salesledger.ledger.model import ZERO, JournalEntry

WINDOW_S_DEFAULT = 60
#: Open windows kept at most; the oldest are flushed beyond it.
OPEN_WINDOWS_MAX = 1_000
_MONEY_ROLES = ("cash", "bank", "vat_deposit")

_Key = tuple[int, str, tuple[tuple[str, str], ...]]  # (window start s, metric, dims)


class MinuteAggregator:
    """Sums entries into windows; :meth:`flush` returns the datums of closed windows."""

    def __init__(self, chart: Chart, currency: str, window_s: int = WINDOW_S_DEFAULT) -> None:
        assert window_s > 0
        self.window_s = window_s
        self.currency = currency
        self.revenue = chart.account("revenue") if chart.has("revenue") else None
        self.returns = chart.account("sales_returns") if chart.has("sales_returns") else None
        self.cogs = chart.account("cost_of_sales") if chart.has("cost_of_sales") else None
        self.money = {chart.account(r) for r in _MONEY_ROLES if chart.has(r)}
        self._sums: dict[_Key, list] = defaultdict(lambda: [0, ZERO])

    def _window(self, entry: JournalEntry) -> int:
        source = entry.document.source
        at = source.commit_time if source and source.commit_time else dt.datetime.now(dt.UTC)
        seconds = int(at.timestamp())
        return seconds - seconds % self.window_s

    def _add(self, window: int, metric: str, dims: dict[str, str], amount: Decimal) -> None:
        cell = self._sums[(window, metric, tuple(sorted(dims.items())))]
        cell[0] += 1
        cell[1] += amount

    def add(self, entries: Iterable[JournalEntry]) -> None:
        """Count the lines of ``entries`` (newly posted only; duplicates are not re-added)."""
        for entry in entries:
            window = self._window(entry)
            for line in entry.lines:
                dims = {"branch": line.branch or "", "sku": line.sku or ""}
                if line.account == self.revenue:
                    amount = line.credit - line.debit
                    self._add(window, "revenue_amount", dims, amount)
                    self._add(window, "margin_amount", dims, amount)
                elif line.account == self.returns:
                    amount = line.debit - line.credit
                    self._add(window, "returns_amount", dims, amount)
                    self._add(window, "margin_amount", dims, -amount)
                elif line.account == self.cogs:
                    amount = line.debit - line.credit
                    self._add(window, "cogs_amount", dims, amount)
                    self._add(window, "margin_amount", dims, -amount)
                elif entry.kind == "payment" and line.account in self.money:
                    self._add(window, "payments_amount", {"branch": line.branch or ""},
                              line.debit - line.credit)

    def flush(self, now: dt.datetime | None = None, *, everything: bool = False) -> list[dict]:
        """Datums of windows that ended before ``now`` (or all with ``everything``), removed."""
        limit = int((now or dt.datetime.now(dt.UTC)).timestamp())
        windows = sorted({k[0] for k in self._sums})
        closed = set(windows if everything else [w for w in windows if w + self.window_s <= limit])
        if len(windows) - len(closed) > OPEN_WINDOWS_MAX:
            closed |= set(windows[: len(windows) - OPEN_WINDOWS_MAX])
        out = []
        for key in sorted(k for k in self._sums if k[0] in closed):
            count, amount = self._sums.pop(key)
            window, metric, dims = key
            out.append({
                "metric": metric,
                "window_start": dt.datetime.fromtimestamp(window, dt.UTC),
                "window_end": dt.datetime.fromtimestamp(window + self.window_s, dt.UTC),
                "dimensions": dict(dims), "count": count, "amount_sum": amount,
                "currency": self.currency, "value_sum": None, "value_max": None,
            })
        return out


__all__ = ["MinuteAggregator", "OPEN_WINDOWS_MAX", "WINDOW_S_DEFAULT"]
