"""Exchange rates from CDC into the engine, through the real pipeline (assembly rule 8).

SQL on the sales database: an invoice in USD whose day has no USD rate is held by the posting
stage (``no_exchange_rate``; USD itself is known, so validation lets it through); INSERTing the
rate row (17.025 AZN per 10 USD: ``rate / nominal`` = 1.7025) makes Debezium capture it, the
assembler emits it on the documents topic in commit order, the posting stage applies it with
``set_rate`` and the held invoice posts — entries equal to the engine's (golden runner) with the
same rate, each figure converted to AZN and rounded ROUND_HALF_UP; ``ledger check`` is clean.

The invoice's date is drawn from decades ahead so that no USD rate another test may have left
in the shared sales database falls within ``rate_max_age_days`` of it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest

from salesledger.ledger import golden
from salesledger.ledger.charts import load_chart
from tests.pipeline.test_pipeline_golden import Tagger, _counted, _stored

RATE, NOMINAL = Decimal("17.025"), 10  # AZN per 10 USD


def _runner_entries(numbers: dict[str, str], sku: str, warehouse: str, customer: str,
                    day: dt.date) -> Counter:
    """The engine's entries for the invoice when the rate is set after it (held, then posted)."""
    steps = [
        {"goods_receipt": {"number": numbers["receipt"], "date": day - dt.timedelta(days=1),
                           "supplier": "S1", "warehouse": warehouse,
                           "lines": [{"sku": sku, "qty": 10, "unit_cost": "6.00"}]}},
        {"invoice": {"number": numbers["invoice"], "date": day, "customer": customer,
                     "warehouse": warehouse, "payment_terms_days": 30, "currency": "USD",
                     "lines": [{"sku": sku, "qty": 4, "unit_price": "12.50",
                                "vat_rate": "18"}]}},
        {"rate": {"currency": "USD", "date": day, "rate": str(RATE / NOMINAL)}},
    ]
    out = golden.run_steps({}, steps, golden.make_settings(None), load_chart("az-nas"))
    return _counted(e for e in out.entries if e.document.number == numbers["invoice"])


@pytest.mark.stack
def test_a_usd_invoice_held_for_its_rate_posts_when_the_rate_row_is_inserted(
        captured_pipeline, pg_connect):
    pipeline, t = captured_pipeline, Tagger()
    day = dt.date(2040, 1, 1) + dt.timedelta(days=random.randrange(20_000))
    sku, warehouse, customer = t("FX-SKU"), t("FX-W"), t("FX-C")
    numbers = {"receipt": t("FX-GR"), "invoice": t("FX-INV")}
    sales = pg_connect("sales")
    with sales.transaction():  # master data, and USD known (a rate far outside the window)
        sales.execute("INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') "
                      "ON CONFLICT DO NOTHING")
        sales.execute("INSERT INTO sales.customers (code, name) VALUES (%s, %s)",
                      (customer, customer))
        sales.execute("INSERT INTO sales.products (sku, name, unit, vat_rate) "
                      "VALUES (%s, %s, 'pcs', 18)", (sku, sku))
        sales.execute("INSERT INTO sales.currency_rates (currency, date, rate) VALUES "
                      "('USD', %s, 1.5) ON CONFLICT DO NOTHING", (day - dt.timedelta(days=60),))
    pipeline.start(workers=1)
    with sales.transaction():
        receipt = sales.execute(
            "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, "
            "status) VALUES (%s, %s, 'S1', %s, 'posted') RETURNING goods_receipt_id",
            (numbers["receipt"], day - dt.timedelta(days=1), warehouse)).fetchone()[0]
        sales.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, "
                      "qty, unit_cost, vat_rate) VALUES (%s, 1, %s, 10, 6.00, 0)", (receipt, sku))
    with sales.transaction():
        invoice = sales.execute(
            "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, currency, "
            "payment_terms_days, status) VALUES (%s, %s, %s, %s, 'USD', 30, 'posted') "
            "RETURNING invoice_id", (numbers["invoice"], day, customer, warehouse)).fetchone()[0]
        sales.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, "
                      "unit_price, vat_rate) VALUES (%s, 1, %s, 4, 12.50, 18)", (invoice, sku))
    key = f"invoice:{numbers['invoice']}"
    held = pipeline.wait_for("the USD invoice held", lambda: pipeline.query(
        "SELECT reason FROM held_documents WHERE document_key = %s AND action = 'held'", (key,)))
    assert held == [("no_exchange_rate",)]
    assert _stored(pipeline, {numbers["invoice"]}) == Counter()

    with sales.transaction():
        sales.execute("INSERT INTO sales.currency_rates (currency, date, rate, nominal) "
                      "VALUES ('USD', %s, %s, %s)", (day, RATE, NOMINAL))
    expected = _runner_entries(numbers, sku, warehouse, customer, day)
    stored = pipeline.wait_for("the USD invoice posted", lambda: (
        lambda s: s if sum(s.values()) >= 2 else None)(_stored(pipeline, {numbers["invoice"]})))
    assert stored == expected
    revenue = pipeline.query(
        "SELECT l.account, l.debit, l.credit, l.currency, e.exchange_rate, e.original_currency "
        "FROM journal_entries e JOIN journal_lines l USING (entry_id) "
        "WHERE e.document_number = %s AND e.kind = 'revenue' ORDER BY l.account",
        (numbers["invoice"],))
    # 4 x 12.50 = 50.00 USD net, 9.00 USD VAT; at 1.7025: 85.125 -> 85.13, 15.3225 -> 15.32
    assert [(a, d.normalize(), c.normalize(), cur) for a, d, c, cur, _, _ in revenue] == [
        ("211", Decimal("100.45"), 0, "AZN"), ("521", 0, Decimal("15.32"), "AZN"),
        ("601", 0, Decimal("85.13"), "AZN")]
    assert {(rate, currency) for *_, rate, currency in revenue} == {(Decimal("1.7025"), "USD")}
    assert pipeline.wait_for("the held queue says posted", lambda: pipeline.query(
        "SELECT action FROM held_documents WHERE document_key = %s AND action = 'posted'",
        (key,)))
    check = subprocess.run([sys.executable, "-m", "salesledger", "ledger", "check", "--format",
                            "json", "--schema", pipeline.schema], capture_output=True, text=True,
                           env=pipeline.env, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["unbalanced"] == 0 and report["duplicates"] == 0 and report["entries"] >= 3
