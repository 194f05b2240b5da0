"""Golden cases G01, G04, G06 (chart az-nas) through the real pipeline: each step becomes one
transaction of SQL in the sales database; Debezium -> assembly -> posting -> sink; the
accounting store must hold exactly the golden journal for the case's documents.

Numbers, SKUs, customers and warehouses get a per-run tag (the sales database is shared and
numbers are unique there). The golden ``given.stock`` becomes a posted goods receipt at the
given unit cost (VAT 0) dated the day before the first step: the same FIFO layer; its own entry
is not part of the golden journal and is left out of the comparison."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"
CASES = ("G01", "G04", "G06")


def _case(case_id: str) -> dict:
    path = next(GOLDEN.glob(f"{case_id}-*.yaml"))
    case = yaml.safe_load(path.read_text())
    if "cases" in case:  # G04: one case per chart; take az-nas
        variant = next(c for c in case["cases"] if c["chart"] == "az-nas")
        case = {**case, **variant, "then": {**case.get("then", {}), **variant["expect"]}}
    assert case.get("chart", "az-nas") == "az-nas"
    return case


class Tagger:
    """Maps golden codes to run-unique ones (``INV-1`` -> ``INV-1-<tag>``)."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]

    def __call__(self, code: str) -> str:
        return f"{code}-{self.tag}"


def _insert_step(conn, kind: str, doc: dict, t: Tagger) -> None:
    with conn.transaction():
        if kind == "invoice":
            row = conn.execute(
                "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, "
                "payment_terms_days, prices_include_vat, status) VALUES (%s, %s, %s, %s, %s, %s, "
                "'posted') RETURNING invoice_id",
                (t(doc["number"]), doc["date"], t(doc["customer"]), t(doc["warehouse"]),
                 doc.get("payment_terms_days", 0), doc.get("prices_include_vat", False)))
            parent = row.fetchone()[0]
            for n, line in enumerate(doc["lines"], 1):
                conn.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, "
                             "unit_price, discount_percent, vat_rate) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                             (parent, n, t(line["sku"]), Decimal(str(line["qty"])),
                              Decimal(line["unit_price"]), Decimal(str(line.get("discount_percent", 0))),
                              Decimal(str(line["vat_rate"]))))
        elif kind == "payment":
            parent = conn.execute(
                "INSERT INTO sales.payments (number, date, customer_code, method, amount, status) "
                "VALUES (%s, %s, %s, %s, %s, 'posted') RETURNING payment_id",
                (t(doc["number"]), doc["date"], t(doc["customer"]), doc["method"],
                 Decimal(doc["amount"]))).fetchone()[0]
            for n, alloc in enumerate(doc.get("allocations") or [], 1):
                conn.execute("INSERT INTO sales.payment_allocations (payment_id, line_no, "
                             "invoice_number, amount) VALUES (%s, %s, %s, %s)",
                             (parent, n, t(alloc["document"]), Decimal(alloc["amount"])))
        elif kind == "goods_receipt":
            parent = conn.execute(
                "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, "
                "status) VALUES (%s, %s, %s, %s, 'posted') RETURNING goods_receipt_id",
                (t(doc["number"]), doc["date"], doc["supplier"], t(doc["warehouse"]))).fetchone()[0]
            for n, line in enumerate(doc["lines"], 1):
                conn.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, "
                             "sku, qty, unit_cost, vat_rate) VALUES (%s, %s, %s, %s, %s, %s)",
                             (parent, n, t(line["sku"]), Decimal(str(line["qty"])),
                              Decimal(line["unit_cost"]), Decimal(str(line.get("vat_rate", 0)))))
        elif kind == "return":
            parent = conn.execute(
                "INSERT INTO sales.returns (number, date, customer_code, warehouse_code, "
                "against_invoice_number, status) VALUES (%s, %s, %s, %s, %s, 'posted') "
                "RETURNING return_id",
                (t(doc["number"]), doc["date"], t(doc["customer"]), t(doc["warehouse"]),
                 t(doc["against"]))).fetchone()[0]
            for n, line in enumerate(doc["lines"], 1):
                conn.execute("INSERT INTO sales.return_lines (return_id, line_no, sku, qty, "
                             "invoice_line_no) VALUES (%s, %s, %s, %s, %s)",
                             (parent, n, t(line["sku"]), Decimal(str(line["qty"])), line.get("line")))
        else:
            raise AssertionError(f"step kind {kind!r} not driven by SQL in this test")


def _insert_master_data(conn, case: dict, t: Tagger) -> None:
    """The case's customers and products (tagged; unit pcs, VAT rate of its invoice lines):
    assembly validates documents against master data (salesledger.streams.validation)."""
    docs = [doc for step in case["when"] for doc in step.values() if isinstance(doc, dict)]
    stock = (case.get("given") or {}).get("stock") or []
    rates = {line["sku"]: Decimal(str(line.get("vat_rate", 18)))
             for doc in docs for line in doc.get("lines") or [] if "unit_price" in line}
    skus = {line["sku"] for doc in docs for line in doc.get("lines") or []} | {
        layer["sku"] for layer in stock}
    with conn.transaction():
        conn.execute("INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') "
                     "ON CONFLICT DO NOTHING")
        for customer in {doc["customer"] for doc in docs if doc.get("customer")}:
            conn.execute("INSERT INTO sales.customers (code, name) VALUES (%s, %s)",
                         (t(customer), customer))
        for sku in sorted(skus):
            conn.execute("INSERT INTO sales.products (sku, name, unit, vat_rate) "
                         "VALUES (%s, %s, 'pcs', %s)", (t(sku), sku, rates.get(sku, Decimal(18))))


def _run_case(conn, case: dict, t: Tagger) -> set[str]:
    steps = [next(iter(step.items())) for step in case["when"]]
    first = min(dt.date.fromisoformat(str(doc["date"])) for _, doc in steps)
    stock = (case.get("given") or {}).get("stock") or []
    for n, layer in enumerate(stock):
        _insert_step(conn, "goods_receipt", {
            "number": f"OPEN{n}", "date": first - dt.timedelta(days=1), "supplier": "OPENING",
            "warehouse": layer["warehouse"],
            "lines": [{"sku": layer["sku"], "qty": layer["qty"], "unit_cost": layer["unit_cost"],
                       "vat_rate": 0}]}, t)
    for kind, doc in steps:
        _insert_step(conn, kind, doc, t)
    return {t(doc["number"]) for _, doc in steps}


def _expected(case: dict, t: Tagger) -> Counter:
    out = Counter()
    for entry in case["then"]["journal"]:
        lines = tuple(sorted((line["account"], Decimal(str(line.get("debit", "0"))).normalize(),
                              Decimal(str(line.get("credit", "0"))).normalize())
                             for line in entry["lines"]))
        out[(entry["kind"], t(entry["document"]), lines)] += 1
    return out


def _stored(pipeline, numbers: set[str]) -> Counter:
    rows = pipeline.query(
        "SELECT e.entry_id, e.kind, e.document_number, l.account, l.debit, l.credit "
        "FROM journal_entries e JOIN journal_lines l USING (entry_id) "
        "WHERE e.document_number = ANY(%s) ORDER BY e.entry_id, l.line_no", (sorted(numbers),))
    entries: dict[str, tuple] = {}
    for entry_id, kind, number, account, debit, credit in rows:
        head, lines = entries.get(entry_id, ((kind, number), []))
        lines.append((account, Decimal(debit).normalize(), Decimal(credit).normalize()))
        entries[entry_id] = (head, lines)
    return Counter((kind, number, tuple(sorted(lines))) for (kind, number), lines in entries.values())


@pytest.mark.stack
def test_golden_G01_G04_G06_through_the_real_pipeline(captured_pipeline, pg_connect):
    pipeline = captured_pipeline
    sales = pg_connect("sales")
    cases = [(case_id, _case(case_id), Tagger()) for case_id in CASES]
    for _, case, tagger in cases:
        _insert_master_data(sales, case, tagger)
    pipeline.start(workers=1)
    runs = []
    for case_id, case, tagger in cases:
        numbers = _run_case(sales, case, tagger)
        runs.append((case_id, numbers, _expected(case, tagger)))
    for case_id, numbers, expected in runs:
        total = sum(expected.values())
        stored = pipeline.wait_for(f"{case_id}: {total} entries in the store", lambda: (
            lambda s: s if sum(s.values()) >= total else None)(_stored(pipeline, numbers)))
        assert stored == expected, f"{case_id}:\nstored   {stored}\nexpected {expected}"
