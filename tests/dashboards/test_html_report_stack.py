"""``salesledger report html`` over the known ledger (ledger.yaml): the page's embedded data
equal ``report pnl | ar-aging | stock --format json`` and the chart arrays carry exactly those
figures; the page references nothing on the network; headless Chromium without network renders
it: the DOM after load holds plotly's SVG charts with their bars, and a PNG screenshot is not
blank."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal as D
from pathlib import Path

import pytest

from salesledger.reports import html as html_report
from tests.dashboards.browser import chromium, png_pixels
from tests.reports.conftest import report_json

pytestmark = pytest.mark.stack
CHARTS = ("revenue", "margin", "top-products", "ageing", "stock", "stock-positions")


def _embedded(page: str, element_id: str):
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>',
                      page, re.S)
    assert match, element_id
    return json.loads(match.group(1))


@pytest.fixture
def written(known_ledger, cli, tmp_path) -> dict:
    first, last = known_ledger["first"], known_ledger["last"] + dt.timedelta(days=14)
    out = tmp_path / "report.html"
    cli("report", "html", "--from", str(first), "--to", str(last), "--out", str(out),
        "--schema", known_ledger["schema"])
    return {"path": out, "page": out.read_text(encoding="utf-8"), "first": first, "last": last,
            "schema": known_ledger["schema"]}


def test_html_chart_data_equal_the_reports(written, cli) -> None:
    page, schema = written["page"], written["schema"]
    span = ("--from", str(written["first"]), "--to", str(written["last"]))
    data = _embedded(page, html_report.DATA_ELEMENT_ID)
    pnl = report_json(cli, "report", "pnl", *span, "--by", "day,branch", "--schema", schema)
    assert data["pnl"] == pnl
    full = report_json(cli, "report", "pnl", *span, "--schema", schema)
    assert data["pnl"]["totals"] == full["totals"] and D(full["totals"]["revenue"]) > 0
    by_sku = report_json(cli, "report", "pnl", *span, "--by", "sku", "--schema", schema)
    assert data["top_products"] == html_report.top_products(by_sku)
    as_of = ("--as-of", str(written["last"]), "--schema", schema)
    assert data["ar_aging"] == report_json(cli, "report", "ar-aging", *as_of)
    assert data["stock"] == report_json(cli, "report", "stock", *as_of)

    figures = {f["id"]: f for f in _embedded(page, html_report.FIGURES_ELEMENT_ID)}
    assert tuple(figures) == CHARTS
    for chart, measure in (("revenue", "revenue"), ("margin", "gross_margin")):
        plotted = {(day, trace["name"]): value for trace in figures[chart]["data"]
                   for day, value in zip(trace["x"], trace["y"])}
        want = {(r["day"], r["branch"] or "—"): r[measure] for r in pnl["rows"]}
        assert {k: v for k, v in plotted.items() if k in want} == want, chart
        assert all(D(v) == 0 for k, v in plotted.items() if k not in want), chart
    revenue, margin = figures["top-products"]["data"]
    ranked = sorted(by_sku["rows"], key=lambda r: -D(r["revenue"]))
    assert revenue["x"] == margin["x"] == [r["sku"] for r in ranked]
    assert revenue["y"] == [r["revenue"] for r in ranked]
    assert margin["y"] == [r["gross_margin"] for r in ranked]
    ageing, = figures["ageing"]["data"]
    assert dict(zip(ageing["x"], ageing["y"])) == data["ar_aging"]["buckets"]
    stock, = figures["stock"]["data"]
    per_warehouse: dict = {}
    for p in data["stock"]:
        per_warehouse[p["warehouse"]] = per_warehouse.get(p["warehouse"], D(0)) + D(p["value"])
    assert dict(zip(stock["x"], map(D, stock["y"]))) == per_warehouse and per_warehouse
    largest, = figures["stock-positions"]["data"]
    ranked = sorted(data["stock"], key=lambda p: -D(p["value"]))[:20]
    assert largest["y"] == [p["value"] for p in ranked]


def test_html_page_is_self_contained(written) -> None:
    page = written["page"]
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # plotly.js is inlined
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page, re.I)
    assert "default-src 'none'" in page  # and the page forbids itself any fetch


def test_headless_chromium_without_network_renders_the_charts(written, tmp_path) -> None:
    dom = chromium(written["path"], tmp_path / "profile-dom", "--dump-dom").stdout
    assert f'data-charts-drawn="{len(CHARTS)}"' in dom
    blocks = re.split(r'<div class="chart js-plotly-plot" id="([\w-]+)">', dom)
    drawn = dict(zip(blocks[1::2], blocks[2::2]))
    assert tuple(drawn) == CHARTS
    for chart, block in drawn.items():
        assert 'class="main-svg"' in block and 'class="subplot xy"' in block, chart
        marks = "trace bars" if chart != "margin" else "trace scatter"
        assert f'class="{marks}' in block and 'class="point"' in block, chart

    png = tmp_path / "report.png"
    chromium(written["path"], tmp_path / "profile-png", "--window-size=800,1200",
             f"--screenshot={png}", "--hide-scrollbars")
    width, height, rows = png_pixels(png)
    assert (width, height) == (800, 1200)
    pixels = {row[i:i + 3] for row in rows[::4] for i in range(0, len(row), 12)}
    assert len(pixels) > 20, "the screenshot is (nearly) one colour"
    white = sum(1 for row in rows[::4] for i in range(0, len(row), 12)
                if row[i:i + 3] == b"\xff\xff\xff")
    samples = sum(len(row) // 12 for row in rows[::4])
    assert white < samples * 0.97, "the screenshot is nearly blank"


def test_html_refuses_a_reversed_window_and_a_schema_without_ledger(cli, tmp_path) -> None:
    out = tmp_path / "never.html"
    result = cli("report", "html", "--from", "2026-03-02", "--to", "2026-03-01", "--out",
                 str(out), expect=2)
    assert "after --to" in result.output and not out.exists()
    result = cli("report", "html", "--from", "2026-03-01", "--to", "2026-03-02", "--out",
                 str(out), "--schema", "no_such_schema", expect=2)
    assert "no ledger tables" in result.output and not out.exists()
