"""Golden cases through the real pipeline, compared with the golden runner entry for entry.

Cases G01, G04, G06, G08 (edit after posting), G09 (cancel, and delete: both variants) and G12
(unallocated payment, oldest first) run on one pipeline with chart az-nas; G04's ru-1c run on a
second pipeline started with ``SALESLEDGER_PIPELINE_CHART=ru-1c`` (the chart is a setting of the
pipeline), side by side. Each step becomes one transaction of SQL in the sales database —
inserts, and for ``edit`` / ``cancel`` / ``delete`` a real UPDATE / DELETE, so Debezium captures
them as such; Debezium -> assembly -> posting -> sink.

Expected: the entries of ``salesledger golden run``'s engine run
(:func:`salesledger.ledger.golden.run_steps`) for the case's documents, exactly — kind,
document, accounting date and every line (account, debit, credit), as a multiset; the runner
itself must pass the case's ``then`` (so the reference is the golden one).

Numbers, SKUs, customers and warehouses get a per-run tag (the sales database is shared and
numbers are unique there); the runner runs on the tagged case. The golden ``given.stock``
becomes a posted goods receipt at the given unit cost (VAT 0) dated the day before the first
step: the same FIFO layer as the runner's ``opening_balance``; neither entry is compared.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from salesledger.ledger import golden
from salesledger.ledger.charts import load_chart
from salesledger.ledger.model import JournalEntry
from tests.pipeline.conftest import attach_connector

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"
#: (case id, chart): every run of the case under that chart (G09: its two variants).
AZ_RUNS = (("G01", "az-nas"), ("G04", "az-nas"), ("G06", "az-nas"), ("G08", "az-nas"),
           ("G09", "az-nas"), ("G12", "az-nas"))
RU_RUNS = (("G04", "ru-1c"),)
#: Header table, primary key and line table of each document kind the steps name.
_TABLES = {"invoice": ("sales.invoices", "invoice_id", "sales.invoice_lines"),
           "payment": ("sales.payments", "payment_id", "sales.payment_allocations"),
           "return": ("sales.returns", "return_id", "sales.return_lines"),
           "goods_receipt": ("sales.goods_receipts", "goods_receipt_id",
                             "sales.goods_receipt_lines")}


class Tagger:
    """Maps golden codes to run-unique ones (``INV-1`` -> ``INV-1-<tag>``)."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]

    def __call__(self, code: str) -> str:
        return f"{code}-{self.tag}"


class GoldenRun:
    """One run (chart, variant) of a case: tagged ``given`` and ``steps``, the runner's
    entries for the case's documents (``expected``), and the document kinds by number."""

    def __init__(self, case_id: str, label: str, chart: str, settings: dict | None,
                 given: dict, steps: list, then: dict) -> None:
        self.name = f"{case_id} {label}"
        self.t = Tagger()
        untagged = golden.run_steps(given, steps, golden.make_settings(settings),
                                    load_chart(chart))
        assert golden.compare(then, untagged) == [], f"{self.name}: the runner fails the case"
        self.given = _tag_given(given, self.t)
        self.steps = [_tag_step(step, self.t) for step in steps]
        out = golden.run_steps(self.given, self.steps, golden.make_settings(settings),
                               load_chart(chart))
        self.numbers = {doc["number"] for step in self.steps for doc in step.values()
                        if "number" in doc}
        self.expected = _counted(e for e in out.entries if e.document.number in self.numbers
                                 and e.kind != "opening_balance")
        assert self.expected, f"{self.name}: the runner posts nothing"


def _runs(selection) -> list[GoldenRun]:
    out = []
    for case_id, chart in selection:
        case = yaml.safe_load(next(GOLDEN.glob(f"{case_id}-*.yaml")).read_text())
        for label, run_chart, settings, steps, then in golden.runs_of(case):
            if run_chart == chart:
                out.append(GoldenRun(case_id, label, chart, settings, case.get("given") or {},
                                     steps, then))
    assert len(out) >= len(selection)
    return out


# ---- tagging -------------------------------------------------------------------------------


def _tag_given(given: dict, t: Tagger) -> dict:
    given = copy.deepcopy(given)
    for layer in given.get("stock") or []:
        layer["sku"], layer["warehouse"] = t(layer["sku"]), t(layer["warehouse"])
    return given


def _tag_step(step: dict, t: Tagger) -> dict:
    (kind, body), = copy.deepcopy(step).items()
    for key in ("number", "customer", "warehouse", "against", "document"):
        if key in body:
            body[key] = t(str(body[key]))
    for line in body.get("lines") or []:
        line["sku"] = t(line["sku"])
    for alloc in body.get("allocations") or []:
        alloc["document"] = t(alloc["document"])
    return {kind: body}


# ---- SQL -----------------------------------------------------------------------------------


def _insert_master_data(conn, run: GoldenRun) -> None:
    """The run's customers and products (unit pcs, VAT rate of its invoice lines): assembly
    validates documents against master data (salesledger.streams.validation)."""
    docs = [doc for step in run.steps for doc in step.values()]
    stock = run.given.get("stock") or []
    rates = {line["sku"]: Decimal(str(line.get("vat_rate", 18)))
             for doc in docs for line in doc.get("lines") or [] if "unit_price" in line}
    skus = {line["sku"] for doc in docs for line in doc.get("lines") or []} | {
        layer["sku"] for layer in stock}
    with conn.transaction():
        conn.execute("INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') "
                     "ON CONFLICT DO NOTHING")
        for customer in sorted({doc["customer"] for doc in docs if doc.get("customer")}):
            conn.execute("INSERT INTO sales.customers (code, name) VALUES (%s, %s)",
                         (customer, customer))
        for sku in sorted(skus):
            conn.execute("INSERT INTO sales.products (sku, name, unit, vat_rate) "
                         "VALUES (%s, %s, 'pcs', %s)", (sku, sku, rates.get(sku, Decimal(18))))


def _insert_document(conn, kind: str, doc: dict) -> None:
    if kind == "invoice":
        parent = conn.execute(
            "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, "
            "payment_terms_days, prices_include_vat, status) VALUES (%s, %s, %s, %s, %s, %s, "
            "'posted') RETURNING invoice_id",
            (doc["number"], doc["date"], doc["customer"], doc["warehouse"],
             doc.get("payment_terms_days", 0), doc.get("prices_include_vat", False))
        ).fetchone()[0]
        _put_invoice_lines(conn, parent, doc["lines"])
    elif kind == "payment":
        parent = conn.execute(
            "INSERT INTO sales.payments (number, date, customer_code, method, amount, status) "
            "VALUES (%s, %s, %s, %s, %s, 'posted') RETURNING payment_id",
            (doc["number"], doc["date"], doc["customer"], doc["method"], Decimal(doc["amount"]))
        ).fetchone()[0]
        for n, alloc in enumerate(doc.get("allocations") or [], 1):
            conn.execute("INSERT INTO sales.payment_allocations (payment_id, line_no, "
                         "invoice_number, amount) VALUES (%s, %s, %s, %s)",
                         (parent, n, alloc["document"], Decimal(alloc["amount"])))
    elif kind == "goods_receipt":
        parent = conn.execute(
            "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, "
            "status) VALUES (%s, %s, %s, %s, 'posted') RETURNING goods_receipt_id",
            (doc["number"], doc["date"], doc["supplier"], doc["warehouse"])).fetchone()[0]
        for n, line in enumerate(doc["lines"], 1):
            conn.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, "
                         "sku, qty, unit_cost, vat_rate) VALUES (%s, %s, %s, %s, %s, %s)",
                         (parent, n, line["sku"], Decimal(str(line["qty"])),
                          Decimal(line["unit_cost"]), Decimal(str(line.get("vat_rate", 0)))))
    elif kind == "return":
        parent = conn.execute(
            "INSERT INTO sales.returns (number, date, customer_code, warehouse_code, "
            "against_invoice_number, status) VALUES (%s, %s, %s, %s, %s, 'posted') "
            "RETURNING return_id",
            (doc["number"], doc["date"], doc["customer"], doc["warehouse"], doc["against"])
        ).fetchone()[0]
        for n, line in enumerate(doc["lines"], 1):
            conn.execute("INSERT INTO sales.return_lines (return_id, line_no, sku, qty, "
                         "invoice_line_no) VALUES (%s, %s, %s, %s, %s)",
                         (parent, n, line["sku"], Decimal(str(line["qty"])), line.get("line")))
    else:
        raise AssertionError(f"step kind {kind!r} not driven by SQL in this test")


def _put_invoice_lines(conn, invoice_id: int, lines: list[dict]) -> None:
    """Make the invoice's lines ``lines`` (line_no 1..n): UPDATE the existing ones, INSERT
    the new ones, DELETE those beyond."""
    for n, line in enumerate(lines, 1):
        values = (line["sku"], Decimal(str(line["qty"])), Decimal(line["unit_price"]),
                  Decimal(str(line.get("discount_percent", 0))), Decimal(str(line["vat_rate"])))
        updated = conn.execute(
            "UPDATE sales.invoice_lines SET sku = %s, qty = %s, unit_price = %s, "
            "discount_percent = %s, vat_rate = %s WHERE invoice_id = %s AND line_no = %s",
            (*values, invoice_id, n)).rowcount
        if not updated:
            conn.execute("INSERT INTO sales.invoice_lines (sku, qty, unit_price, "
                         "discount_percent, vat_rate, invoice_id, line_no) "
                         "VALUES (%s, %s, %s, %s, %s, %s, %s)", (*values, invoice_id, n))
    conn.execute("DELETE FROM sales.invoice_lines WHERE invoice_id = %s AND line_no > %s",
                 (invoice_id, len(lines)))


def _change_document(conn, kind: str, body: dict, kinds: dict[str, str]) -> None:
    """``edit`` / ``cancel`` / ``delete`` of a posted document as the sales program does it."""
    doc_kind = kinds[body["document"]]
    table, pk, _ = _TABLES[doc_kind]
    if kind == "cancel":
        changed = conn.execute(f"UPDATE {table} SET status = 'cancelled', updated_at = now() "
                               "WHERE number = %s", (body["document"],)).rowcount
    elif kind == "delete":  # the lines go with it (ON DELETE CASCADE)
        changed = conn.execute(f"DELETE FROM {table} WHERE number = %s",
                               (body["document"],)).rowcount
    else:
        assert kind == "edit" and doc_kind == "invoice", f"{kind} of {doc_kind}: not driven"
        row = conn.execute(f"UPDATE {table} SET updated_at = now() WHERE number = %s "
                           f"RETURNING {pk}", (body["document"],)).fetchone()
        changed = row is not None
        _put_invoice_lines(conn, row[0], body["lines"])
    assert changed, f"{kind} {body['document']}: no such document in the sales database"


def _drive(conn, run: GoldenRun) -> None:
    """Every step of ``run`` as one SQL transaction each (stock first, see the module)."""
    first = min(dt.date.fromisoformat(str(doc["date"])) for step in run.steps
                for doc in step.values() if "date" in doc)
    for n, layer in enumerate(run.given.get("stock") or []):
        with conn.transaction():
            _insert_document(conn, "goods_receipt", {
                "number": run.t(f"OPEN{n}"), "date": first - dt.timedelta(days=1),
                "supplier": "OPENING", "warehouse": layer["warehouse"],
                "lines": [{"sku": layer["sku"], "qty": layer["qty"],
                           "unit_cost": layer["unit_cost"], "vat_rate": 0}]})
    kinds: dict[str, str] = {}
    for step in run.steps:
        (kind, body), = step.items()
        with conn.transaction():
            if kind in ("edit", "cancel", "delete"):
                _change_document(conn, kind, body, kinds)
            else:
                _insert_document(conn, kind, body)
                kinds[body["number"]] = kind


# ---- comparing -----------------------------------------------------------------------------


def _lines(lines) -> tuple:
    return tuple(sorted((account, Decimal(debit).normalize(), Decimal(credit).normalize())
                        for account, debit, credit in lines))


def _counted(entries) -> Counter:
    return Counter((e.kind, e.document.number, e.accounting_date,
                    _lines((l.account, l.debit, l.credit) for l in e.lines))
                   for e in entries if isinstance(e, JournalEntry))


def _stored(pipeline, numbers: set[str]) -> Counter:
    rows = pipeline.query(
        "SELECT e.entry_id, e.kind, e.document_number, e.accounting_date, l.account, l.debit, "
        "l.credit FROM journal_entries e JOIN journal_lines l USING (entry_id) "
        "WHERE e.document_number = ANY(%s) ORDER BY e.entry_id, l.line_no", (sorted(numbers),))
    entries: dict[str, tuple] = {}
    for entry_id, kind, number, day, account, debit, credit in rows:
        head, lines = entries.setdefault(entry_id, ((kind, number, day), []))
        lines.append((account, debit, credit))
    return Counter((*head, _lines(lines)) for head, lines in entries.values())


def _await_same(pipeline, run: GoldenRun) -> None:
    total = sum(run.expected.values())
    stored = pipeline.wait_for(f"{run.name}: {total} entries in the store", lambda: (
        lambda s: s if sum(s.values()) >= total else None)(_stored(pipeline, run.numbers)))
    assert stored == run.expected, (f"{run.name}:\nonly stored   {stored - run.expected}\n"
                                    f"only expected {run.expected - stored}")


@pytest.mark.stack
def test_golden_cases_through_the_real_pipeline_equal_the_runner(pipeline_factory, sales_dsn,
                                                                  pg_connect):
    az = attach_connector(pipeline_factory(), sales_dsn)
    ru = attach_connector(pipeline_factory(), sales_dsn)
    ru.env["SALESLEDGER_PIPELINE_CHART"] = "ru-1c"
    plan = [(az, run) for run in _runs(AZ_RUNS)] + [(ru, run) for run in _runs(RU_RUNS)]
    assert len(plan) == len(AZ_RUNS) + len(RU_RUNS) + 1  # G09: cancel and delete
    sales = pg_connect("sales")
    for _, run in plan:
        _insert_master_data(sales, run)
    az.start(workers=1)
    ru.start(workers=1)
    for _, run in plan:
        _drive(sales, run)
    for pipeline, run in plan:
        _await_same(pipeline, run)
    for pipeline, run in plan:  # nothing more arrived for a case checked earlier
        assert _stored(pipeline, run.numbers) == run.expected, run.name
    for pipeline in (az, ru):
        unbalanced = pipeline.query(
            "SELECT entry_id FROM journal_lines GROUP BY entry_id "
            "HAVING sum(debit) <> sum(credit)")
        assert unbalanced == []
