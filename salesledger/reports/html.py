"""One self-contained HTML page with the business charts (``salesledger report html``).

The page holds everything it needs: plotly.js (the copy the ``plotly`` PyPI package ships,
inlined), the report data and the chart specifications. Nothing is loaded from the network, so
it can be mailed or opened offline.

The data are the reports of :mod:`salesledger.reports.assemble`, built from the same store
queries as ``salesledger report pnl | ar-aging | stock`` (:func:`collect`), so a chart shows
exactly the figures the JSON reports give:

- ``pnl``: ``report pnl --by day,branch`` over [from, to] — revenue and gross margin by day and
  branch;
- ``top_products``: ``report pnl --by sku`` over [from, to] — the :data:`TOP_PRODUCTS_MAX`
  SKUs with the highest revenue;
- ``ar_aging``: ``report ar-aging --as-of <to>`` — open receivables per ageing bucket;
- ``stock``: ``report stock --as-of <to>`` — value on hand per warehouse, and the
  :data:`TOP_POSITIONS_MAX` largest positions (SKU and warehouse).

Amounts stay decimal strings end to end (the chart arrays carry the report's strings; plotly.js
reads numeric strings as numbers), in the ledger's functional currency; nothing is rounded here.
The page embeds the data as ``<script type="application/json" id="salesledger-report-data">``
and the figures as ``id="salesledger-figures"`` (tests read them back).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from decimal import Decimal
from typing import Any

from salesledger.reports import assemble, store
from salesledger.reports.accounts import ReportAccounts

#: Bars in the top-products chart and in the largest-stock-positions chart.
TOP_PRODUCTS_MAX = 10
TOP_POSITIONS_MAX = 20
DATA_ELEMENT_ID = "salesledger-report-data"
FIGURES_ELEMENT_ID = "salesledger-figures"


def collect(conn: Any, accounts: ReportAccounts, *, date_from: dt.date,
            date_to: dt.date) -> dict[str, Any]:
    """The page's data from the accounting store (a reporting-role connection, search_path on
    the store's schema): ``{"from", "to", "currency", "pnl", "top_products", "ar_aging",
    "stock"}``, each report exactly as the matching ``report … --format json`` gives it.

    Raises ``ValueError`` when ``date_from`` is after ``date_to`` or the ledger holds several
    currencies."""
    if date_from > date_to:
        raise ValueError(f"--from {date_from} is after --to {date_to}")
    pnl_rows = store.pnl_rows(conn, accounts, date_from=date_from, date_to=date_to)
    by_sku = assemble.pnl(pnl_rows, date_from=date_from, date_to=date_to, by=("sku",))
    return {
        "from": date_from.isoformat(), "to": date_to.isoformat(),
        "currency": store.ledger_currency(conn),
        "pnl": assemble.pnl(pnl_rows, date_from=date_from, date_to=date_to,
                            by=("day", "branch")),
        "top_products": top_products(by_sku),
        "ar_aging": assemble.ar_aging(store.open_item_rows(conn, as_of=date_to),
                                      store.advance_rows(conn, as_of=date_to), as_of=date_to),
        "stock": assemble.stock(store.stock_rows(conn, as_of=date_to)),
    }


def top_products(pnl_by_sku: dict[str, Any], limit: int = TOP_PRODUCTS_MAX) -> dict[str, Any]:
    """``pnl_by_sku`` (a P&L grouped by SKU) keeping the ``limit`` rows with the highest
    revenue (ties by SKU), in that order; totals are left as they were (all SKUs)."""
    rows = sorted(pnl_by_sku["rows"], key=lambda r: (-Decimal(r["revenue"]), r["sku"] or ""))
    return {**pnl_by_sku, "rows": rows[:limit]}


def stock_per_warehouse(stock: list[dict[str, str]]) -> dict[str, str]:
    """Σ value per warehouse of a ``report stock`` (decimal strings, warehouses sorted)."""
    sums: dict[str, Decimal] = {}
    for position in stock:
        sums[position["warehouse"]] = sums.get(position["warehouse"], Decimal(0)) + \
            Decimal(position["value"])
    return {w: assemble.amount_text(sums[w]) for w in sorted(sums)}


def figures(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Plotly figure specs (``{"id", "title", "data", "layout"}``) for the page's charts;
    every y/x value is the report's own decimal string."""
    currency = data["currency"]
    branches = sorted({r["branch"] or "—" for r in data["pnl"]["rows"]})
    days = sorted({r["day"] for r in data["pnl"]["rows"]})

    def per_branch(measure: str, kind: str) -> list[dict[str, Any]]:
        traces = []
        for branch in branches:
            rows = {r["day"]: r[measure] for r in data["pnl"]["rows"]
                    if (r["branch"] or "—") == branch}
            trace = {"type": kind, "name": branch, "x": days,
                     "y": [rows.get(day, "0.00") for day in days]}
            if kind == "scatter":
                trace["mode"] = "lines+markers"
            traces.append(trace)
        return traces

    top = data["top_products"]["rows"]
    buckets = data["ar_aging"]["buckets"]
    per_warehouse = stock_per_warehouse(data["stock"])
    largest = sorted(data["stock"], key=lambda p: (-Decimal(p["value"]), p["sku"],
                                                   p["warehouse"]))[:TOP_POSITIONS_MAX]
    return [
        _figure("revenue", f"Revenue by day and branch ({currency}, net of VAT)",
                per_branch("revenue", "bar"), barmode="stack"),
        _figure("margin", f"Gross margin by day and branch ({currency})",
                per_branch("gross_margin", "scatter")),
        _figure("top-products", f"Top products by revenue ({currency})", [
            {"type": "bar", "name": "revenue", "x": [r["sku"] for r in top],
             "y": [r["revenue"] for r in top]},
            {"type": "bar", "name": "gross margin", "x": [r["sku"] for r in top],
             "y": [r["gross_margin"] for r in top]}], barmode="group"),
        _figure("ageing", f"Receivables by ageing bucket on {data['to']} ({currency})", [
            {"type": "bar", "name": "open", "x": list(buckets), "y": list(buckets.values())}]),
        _figure("stock", f"Stock value per warehouse on {data['to']} ({currency})", [
            {"type": "bar", "name": "value", "x": list(per_warehouse),
             "y": list(per_warehouse.values())}]),
        _figure("stock-positions", f"Largest stock positions on {data['to']} ({currency})", [
            {"type": "bar", "name": "value", "x": [f"{p['sku']} @ {p['warehouse']}" for p in largest],
             "y": [p["value"] for p in largest]}]),
    ]


def _figure(ident: str, title: str, traces: list[dict[str, Any]], **layout: Any) -> dict[str, Any]:
    return {"id": ident, "title": title, "data": traces,
            "layout": {"title": {"text": title}, "height": 360, "margin": {"t": 50},
                       "xaxis": {"type": "category"}, **layout}}


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` can appear)."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} .chart{{max-width:1100px}}
table{{border-collapse:collapse}} td,th{{padding:2px 10px;text-align:right}}</style>
<script>{plotly_js}</script>
</head><body>
<h1>{title}</h1>
<p>P&amp;L {date_from} .. {date_to}: revenue {revenue}, gross margin {margin} {currency};
receivables open on {date_to}: {open_total}; stock value: {stock_value}.</p>
{divs}
<script type="application/json" id="{data_id}">{data_json}</script>
<script type="application/json" id="{figures_id}">{figures_json}</script>
<script>
(function () {{
  var figures = JSON.parse(document.getElementById("{figures_id}").textContent);
  figures.forEach(function (f) {{
    Plotly.newPlot(f.id, f.data, f.layout, {{displayModeBar: false, responsive: true}});
  }});
  document.body.setAttribute("data-charts-drawn", String(figures.length));
}})();
</script>
</body></html>
"""


def render(data: dict[str, Any], title: str = "salesledger report") -> str:
    """The self-contained page (str) for ``data`` from :func:`collect`."""
    from plotly.offline import get_plotlyjs

    figs = figures(data)
    divs = "\n".join(f'<div class="chart" id="{f["id"]}"></div>' for f in figs)
    stock_value = sum((Decimal(p["value"]) for p in data["stock"]), Decimal(0))
    totals = data["pnl"]["totals"]
    return _PAGE.format(
        title=html.escape(title), plotly_js=get_plotlyjs().replace("</script", "<\\/script"),
        date_from=data["from"], date_to=data["to"], currency=html.escape(data["currency"]),
        revenue=totals["revenue"], margin=totals["gross_margin"],
        open_total=data["ar_aging"]["total"], stock_value=assemble.amount_text(stock_value),
        divs=divs, data_id=DATA_ELEMENT_ID, data_json=_script_json(data),
        figures_id=FIGURES_ELEMENT_ID, figures_json=_script_json(figs))
