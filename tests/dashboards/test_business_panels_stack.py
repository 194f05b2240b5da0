"""Every accounting-store panel of the dashboards, run as Grafana would send it (macros and
template variables substituted, tests/dashboards/grafana.py) against the test profile's
accounting store as the read-only reporting role, over the known ledger of ``ledger.yaml``:
each query returns data and its figures equal ``salesledger report … --format json`` for the
same window (P&L over [from, to]; ageing, stock and advances as of ``to``; payments as the
trial balance's cash/bank debit turnover between the day before ``from`` and ``to``)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal as D
from typing import Any, Callable

import pytest

from salesledger.ledger.charts import load_chart
from salesledger.reports.html import top_products
from tests.dashboards.grafana import PG_UID, dashboards, panels, render_sql, variables
from tests.reports.conftest import report_json

pytestmark = pytest.mark.stack
ONE_DAY = dt.timedelta(days=1)


class Reports:
    """``report … --format json`` of one store, for a window [first, last]."""

    def __init__(self, cli: Callable[..., Any], schema: str, first: dt.date, last: dt.date):
        self.cli, self.schema, self.first, self.last = cli, schema, first, last

    def run(self, *args: str) -> Any:
        return report_json(self.cli, "report", *args, "--schema", self.schema)

    def pnl(self, by: str) -> dict:
        return self.run("pnl", "--from", str(self.first), "--to", str(self.last), "--by", by)

    def aging(self, as_of: dt.date | None = None) -> dict:
        return self.run("ar-aging", "--as-of", str(as_of or self.last))

    def stock(self, as_of: dt.date | None = None) -> list:
        return self.run("stock", "--as-of", str(as_of or self.last))

    def debit(self, accounts: set[str], as_of: dt.date) -> D:
        tb = self.run("trial-balance", "--as-of", str(as_of))
        return sum((D(a["debit"]) for a in tb["accounts"] if a["account"] in accounts), D(0))


def _rows(pnl: dict, key: str, *measures: str) -> list[tuple]:
    return [(r[key], *(D(r[m]) for m in measures)) for r in pnl["rows"]]


def _overdue(aging: dict) -> list[tuple]:
    out = []
    for c in aging["customers"]:
        late = [d for d in c["documents"] if d["days_past_due"] > 0]
        if late:
            out.append((c["customer"], sum((D(d["open"]) for d in late), D(0)),
                        max(d["days_past_due"] for d in late), len(late)))
    return sorted(out, key=lambda r: (-r[1], r[0]))


def _stock_net_per_day(r: Reports) -> list[tuple]:
    out = []
    day = r.first
    while day <= r.last:
        before = {(p["sku"], p["warehouse"]): (D(p["qty"]), D(p["value"])) for p in r.stock(day - ONE_DAY)}
        after = {(p["sku"], p["warehouse"]): (D(p["qty"]), D(p["value"])) for p in r.stock(day)}
        qty = sum((v[0] for v in after.values()), D(0)) - sum((v[0] for v in before.values()), D(0))
        value = sum((v[1] for v in after.values()), D(0)) - sum((v[1] for v in before.values()), D(0))
        if after != before:
            out.append((dt.datetime.combine(day, dt.time()), qty, value))
        day += ONE_DAY
    return out


def _per_warehouse(stock: list) -> list[tuple]:
    sums: dict[str, D] = defaultdict(D)
    for p in stock:
        sums[p["warehouse"]] += D(p["value"])
    return sorted(sums.items())


#: Panel title -> (the expected rows from the reports, how to read the query's rows).
EXPECTED: dict[str, Callable[[Reports], list[tuple]]] = {
    "Revenue (net of VAT)": lambda r: [(D(r.pnl("day")["totals"]["revenue"]),)],
    "Gross margin": lambda r: [(D(r.pnl("day")["totals"]["gross_margin"]),)],
    "Returns and discounts": lambda r: [(D(r.pnl("day")["totals"]["returns"]),
                                         D(r.pnl("day")["totals"]["discounts"]))],
    "Revenue and gross margin by day": lambda r: [
        (dt.datetime.fromisoformat(d), rev, gm)
        for d, rev, gm in _rows(r.pnl("day"), "day", "revenue", "gross_margin")],
    "Revenue and gross margin per branch": lambda r: sorted(
        [(b or "—", rev, gm) for b, rev, gm in _rows(r.pnl("branch"), "branch", "revenue",
                                                      "gross_margin")],
        key=lambda t: (-t[1], t[0])),
    "Top products": lambda r: _rows(top_products(r.pnl("sku")), "sku", "revenue",
                                    "gross_margin"),
    "Open receivables": lambda r: [(D(r.aging()["total"]),)],
    "Overdue": lambda r: [(sum((row[1] for row in _overdue(r.aging())), D(0)),)],
    "Advances received (unused)": lambda r: [(D(r.aging()["advances"]),)],
    "Payments received": lambda r: [(
        r.debit(CASH, r.last) - r.debit(CASH, r.first - ONE_DAY),)],
    "Ageing buckets": lambda r: [(b, D(v)) for b, v in r.aging()["buckets"].items()],
    "Overdue customers": lambda r: _overdue(r.aging()),
    "Stock value": lambda r: [(sum((D(p["value"]) for p in r.stock()), D(0)),)],
    "Positions on hand": lambda r: [(len(r.stock()),)],
    "Value per warehouse": lambda r: _per_warehouse(r.stock()),
    "On hand": lambda r: [(p["sku"], p["warehouse"], D(p["qty"]), D(p["value"]))
                          for p in r.stock()],
    "Movements per day": lambda r: _stock_net_per_day(r),
}
_CHART = load_chart("az-nas")
CASH = {_CHART.account("cash"), _CHART.account("bank")}


def _sql_panels() -> list[tuple[str, dict]]:
    return [(name, p) for name, board in dashboards().items() for p in panels(board)
            if p["datasource"]["uid"] == PG_UID]


def test_every_store_panel_has_a_report_figure_to_match() -> None:
    titles = [p["title"] for _, p in _sql_panels()]
    assert len(titles) == len(set(titles))
    assert set(titles) == set(EXPECTED)


@pytest.mark.parametrize("window", ["whole", "one-day"])
def test_store_panels_return_data_equal_to_the_reports(
        window, known_ledger, cli, pg_connect) -> None:
    # whole: every entry, ageing two weeks after the last (items overdue); one day: the day
    # of a return, a payment and stock movements, without revenue.
    first, last = known_ledger["first"], known_ledger["last"] + 14 * ONE_DAY
    if window == "one-day":
        first = last = dt.date(2026, 3, 5)
    reports = Reports(cli, known_ledger["schema"], first, last)
    conn = pg_connect("accounting", "reporting")
    seen = 0
    for name, panel in _sql_panels():
        values = {**variables(dashboards()[name]), "schema": known_ledger["schema"]}
        target, = panel["targets"]
        rows = conn.execute(render_sql(target["rawSql"], values, first, last)).fetchall()
        assert rows and all(v is not None for v in rows[0]), (panel["title"], rows)
        got = [tuple(row) for row in rows]
        if panel["title"] == "Movements per day":  # net = received − issued; net vs. reports
            assert all(net == received - issued for _, net, _, received, issued in got)
            got = [row[:3] for row in got]
        want = EXPECTED[panel["title"]](reports)
        assert got == want, panel["title"]
        if window == "whole":  # the known ledger gives every panel a figure that is not zero
            assert any(row[-1] for row in got), (panel["title"], got)
        seen += 1
    assert seen == len(EXPECTED)
