"""One report in four forms: a rich table, JSON, CSV and XLSX (openpyxl).

JSON is the report's contract as assembled (amounts are decimal strings). CSV and XLSX carry the
same figures flattened to one table (:func:`flatten`): CSV keeps the decimal strings; XLSX
writes amounts as numeric cells from the ``Decimal`` (format ``0.00``) and everything else as
text, so a spreadsheet sums them while the figures stay those of the JSON.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

#: Columns holding money or quantities (numeric cells in XLSX).
NUMERIC_COLUMNS = frozenset({"debit", "credit", "balance", "open", "total", "advances", "qty",
                             "value", "revenue", "returns", "discounts", "cogs", "gross_margin",
                             "source", "ledger"})

Table = tuple[list[str], list[list[Any]]]


def flatten(kind: str, report: Any) -> Table:
    """``(headers, rows)`` of a report of ``kind`` (trial-balance, ar-aging, stock, pnl,
    journal, reconcile); totals come as last rows labelled ``TOTAL``.

    Raises ``ValueError`` for an unknown kind."""
    if kind == "trial-balance":
        headers = ["account", "name", "debit", "credit", "balance"]
        rows = [[a[h] for h in headers] for a in report["accounts"]]
        rows.append(["TOTAL", "", report["total_debit"], report["total_credit"], ""])
        return headers, rows
    if kind == "ar-aging":
        headers = ["customer", "document", "due", "open", "days_past_due", "bucket"]
        rows = []
        for c in report["customers"]:
            rows += [[c["customer"]] + [d[h] for h in headers[1:]] for d in c["documents"]]
            rows.append([c["customer"], "TOTAL", "", c["total"], "", f"advances {c['advances']}"])
        rows += [["", "TOTAL", "", report["buckets"][b], "", b] for b in report["buckets"]]
        rows.append(["", "TOTAL", "", report["total"], "", f"advances {report['advances']}"])
        return headers, rows
    if kind == "stock":
        headers = ["sku", "warehouse", "qty", "value"]
        return headers, [[p[h] for h in headers] for p in report]
    if kind == "pnl":
        headers = list(report["by"]) + ["revenue", "returns", "discounts", "cogs", "gross_margin"]
        rows = [[r[h] for h in headers] for r in report["rows"]]
        rows.append(["TOTAL"] + [""] * (len(report["by"]) - 1)
                    + [report["totals"][h] for h in headers[len(report["by"]):]])
        return headers, rows
    if kind == "journal":
        headers = ["date", "kind", "entry_id", "version", "line_no", "account", "name", "debit",
                   "credit", "branch", "warehouse", "customer", "sku", "open_item", "advance",
                   "source_lsn"]
        rows = []
        for e in report["entries"]:
            for line in e["lines"]:
                rows.append([e["date"], e["kind"], e["entry_id"], e["version"]]
                            + [line[h] for h in headers[4:15]] + [e["source"]["lsn"]])
        return headers, rows
    if kind == "reconcile":
        headers = ["check", "day", "branch", "customer", "document", "source", "ledger"]
        return headers, [[d[h] for h in headers] for d in report["differences"]]
    raise ValueError(f"unknown report kind {kind!r}")


def to_json(report: Any) -> str:
    """The report as JSON text (it holds only strings, ints and None: no float anywhere)."""
    return json.dumps(report, ensure_ascii=False, indent=2)


def to_csv(table: Table) -> str:
    """The flattened report as CSV text (header row first)."""
    headers, rows = table
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue()


def write_xlsx(table: Table, path: Path, title: str) -> None:
    """The flattened report as an XLSX workbook at ``path`` (one sheet named ``title``)."""
    from openpyxl import Workbook

    headers, rows = table
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title[:31]
    sheet.append(headers)
    numeric = [h in NUMERIC_COLUMNS for h in headers]
    for row in rows:
        sheet.append([_cell(v, is_numeric) for v, is_numeric in zip(row, numeric)])
    for column in sheet.iter_cols(min_row=2):
        for cell in column:
            if isinstance(cell.value, Decimal):
                cell.number_format = "0.00##"
    workbook.save(path)


def _cell(value: Any, numeric: bool) -> Any:
    if numeric and isinstance(value, str) and value:
        try:
            return Decimal(value)
        except ArithmeticError:
            return value
    return value


#: Columns a terminal table shows (CSV/XLSX keep them all); None: every column.
_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "journal": ("date", "kind", "version", "account", "debit", "credit", "customer", "sku",
                "open_item"),
}


def rich_table(kind: str, report: Any, title: str):
    """A :class:`rich.table.Table` of the flattened report (amount columns right-aligned;
    long values fold instead of being cut)."""
    from rich.table import Table as RichTable

    headers, rows = flatten(kind, report)
    shown = [i for i, h in enumerate(headers) if h in _TABLE_COLUMNS.get(kind, headers)]
    table = RichTable(title=title)
    for i in shown:
        table.add_column(headers[i], overflow="fold",
                         justify="right" if headers[i] in NUMERIC_COLUMNS else "left")
    if kind == "stock":  # the JSON/CSV contract has no total row; the screen shows Σ value
        total = sum((Decimal(row[headers.index("value")]) for row in rows), Decimal("0"))
        rows = rows + [["TOTAL", "", "", str(total)]]
    for row in rows:
        table.add_row(*["" if row[i] is None else str(row[i]) for i in shown],
                      style="bold" if "TOTAL" in row[:2] else None)
    return table
