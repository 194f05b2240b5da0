"""The HTML page's pure parts: ranking of top products, chart arrays carrying the reports'
decimal strings, and report data that cannot break out of its ``<script>`` element."""

from __future__ import annotations

import json
import re

from salesledger.reports import html as html_report


def _pnl(rows):
    return {"from": "2026-03-01", "to": "2026-03-02", "by": ["sku"], "rows": rows,
            "totals": {"revenue": "0.00", "gross_margin": "0.00"}}


def _row(sku, revenue, margin="1.00", day=None, branch=None):
    return {"day": day, "branch": branch, "sku": sku, "revenue": revenue, "returns": "0.00",
            "discounts": "0.00", "cogs": "0.00", "gross_margin": margin}


def test_top_products_ranks_by_decimal_revenue_then_sku_and_keeps_the_first_ten() -> None:
    rows = [_row(f"S{i:02d}", f"{i}.50") for i in range(12)] + [_row("A", "9.5"), _row("Z", "100")]
    top = html_report.top_products(_pnl(rows))
    assert [r["sku"] for r in top["rows"]] == ["Z", "S11", "S10", "A", "S09", "S08", "S07",
                                             "S06", "S05", "S04"]
    assert top["totals"] == _pnl(rows)["totals"]


def _data():
    pnl = {"from": "2026-03-01", "to": "2026-03-02", "by": ["day", "branch"],
           "rows": [_row(None, "10.0001", "2.00", "2026-03-01", "B1"),
                    _row(None, "5.00", "-1.00", "2026-03-02", None)],
           "totals": {"revenue": "15.0001", "gross_margin": "1.00"}}
    return {"from": "2026-03-01", "to": "2026-03-02", "currency": "AZN", "pnl": pnl,
            "top_products": _pnl([_row("</script><script>alert(1)</script>", "3.00")]),
            "ar_aging": {"buckets": {"not_due": "1.00", "1-30": "0.00"}, "total": "1.00"},
            "stock": [{"sku": "A", "warehouse": "W1", "qty": "2", "value": "6.0000"}]}


def test_chart_arrays_are_the_report_strings_with_zero_for_days_without_a_branch_row() -> None:
    figures = {f["id"]: f for f in html_report.figures(_data())}
    revenue = {t["name"]: t["y"] for t in figures["revenue"]["data"]}
    assert revenue == {"B1": ["10.0001", "0.00"], "—": ["0.00", "5.00"]}
    margin = {t["name"]: t["y"] for t in figures["margin"]["data"]}
    assert margin == {"B1": ["2.00", "0.00"], "—": ["0.00", "-1.00"]}
    assert figures["stock"]["data"][0]["y"] == ["6.0000"]
    assert html_report.stock_per_warehouse([
        {"sku": "A", "warehouse": "W2", "qty": "1", "value": "1.10"},
        {"sku": "B", "warehouse": "W1", "qty": "1", "value": "2.0001"},
        {"sku": "C", "warehouse": "W2", "qty": "1", "value": "0.90"}]) == {"W1": "2.0001",
                                                                             "W2": "2.00"}


def test_report_data_cannot_close_its_script_element() -> None:
    page = html_report.render(_data())
    assert "alert(1)</script>" not in page
    match = re.search(r'id="salesledger-report-data">(.*?)</script>', page, re.S)
    data = json.loads(match.group(1))
    assert data["top_products"]["rows"][0]["sku"] == "</script><script>alert(1)</script>"
