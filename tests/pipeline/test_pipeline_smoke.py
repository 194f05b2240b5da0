"""CDC-17-style smoke test of the whole pipeline on the real stack: SQL in the sales database ->
Debezium -> assembly (Faust) -> documents topic -> posting (Faust) -> ledger topics -> sink ->
accounting store, compared with the posting engine run on the same documents."""

from __future__ import annotations

from decimal import Decimal

import pytest

from salesledger.streams.documents import DocumentVersionEvent
from tests.pipeline.conftest import unique
from tests.pipeline.helpers import (
    SERDE,
    documents_on_topic,
    entries_as_rows,
    read_topic,
    reference_entries,
    same_amounts,
    store_entries,
)

MASTER_DATA = """
INSERT INTO sales.branches (code, name) VALUES ('PB1', 'Pipeline branch') ON CONFLICT DO NOTHING;
INSERT INTO sales.warehouses (code, name, branch_code) VALUES ('PW1', 'Pipeline warehouse', 'PB1')
  ON CONFLICT DO NOTHING;
INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') ON CONFLICT DO NOTHING;
INSERT INTO sales.customers (code, name, payment_terms_days) VALUES ('PC1', 'Pipeline customer', 30)
  ON CONFLICT DO NOTHING;
INSERT INTO sales.suppliers (code, name) VALUES ('PS1', 'Pipeline supplier') ON CONFLICT DO NOTHING;
INSERT INTO sales.products (sku, name, unit, vat_rate) VALUES ('PSKU1', 'Pipeline widget', 'pcs', 18)
  ON CONFLICT DO NOTHING;
"""


def post_receipt_and_invoice(conn, receipt: str, invoice: str) -> None:
    """A posted goods receipt (10 @ 5.00) and a posted invoice (2 @ 12.50, 18 % VAT)."""
    with conn.transaction():
        gr = conn.execute(
            "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, status) "
            "VALUES (%s, '2026-03-02', 'PS1', 'PW1', 'posted') RETURNING goods_receipt_id",
            (receipt,)).fetchone()[0]
        conn.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, qty, "
                     "unit_cost, vat_rate) VALUES (%s, 1, 'PSKU1', 10, 5.00, 18)", (gr,))
    with conn.transaction():
        inv = conn.execute(
            "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, branch_code, "
            "payment_terms_days, status) VALUES (%s, '2026-03-03', 'PC1', 'PW1', 'PB1', 30, "
            "'posted') RETURNING invoice_id", (invoice,)).fetchone()[0]
        conn.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price, "
                     "vat_rate) VALUES (%s, 1, 'PSKU1', 2, 12.50, 18)", (inv,))


@pytest.mark.stack
def test_CDC_17_sql_to_accounting_store_equals_engine(captured_pipeline, pg_connect, kafka_admin):
    pipeline = captured_pipeline
    sales = pg_connect("sales")
    sales.execute(MASTER_DATA)
    pipeline.env["SALESLEDGER_PIPELINE_METRICS_WINDOW_S"] = "5"
    pipeline.env["SALESLEDGER_PIPELINE_METRICS_FLUSH_S"] = "1"
    pipeline.start(workers=1)
    receipt, invoice = unique("PGR"), unique("PINV")
    post_receipt_and_invoice(sales, receipt, invoice)

    bootstrap = pipeline.settings.kafka_bootstrap

    def ours():
        found = [d for d in documents_on_topic(bootstrap, pipeline.topic("documents"))
                 if isinstance(d, DocumentVersionEvent) and d.document.number in (receipt, invoice)]
        return found if len(found) == 2 else None

    documents = pipeline.wait_for("both documents on the documents topic", ours)
    assert [d.document.number for d in documents] == [receipt, invoice]  # commit order
    invoice_doc = documents[1].document
    assert invoice_doc.lines[0].qty == 2 and str(invoice_doc.lines[0].unit_price) == "12.5000"

    expected = entries_as_rows(reference_entries(documents))
    assert expected, "the engine posts entries for a receipt and an invoice"
    kinds = {e.kind for e in reference_entries(documents)}
    assert {"goods_receipt", "revenue", "cogs"} <= kinds
    stored = pipeline.wait_for(
        "the journal entries in the accounting store",
        lambda: (lambda s: s if len(s) == len(expected) else None)(
            store_entries(pipeline, {receipt, invoice})))
    assert same_amounts(stored, expected), (stored, expected)
    revenue = [(d, c) for e in stored.values() for a, d, c in e if a == "601"]
    assert revenue == [(0, 25)]  # 2 x 12.50 net, exact decimals end to end
    topics = {t for t in kafka_admin.list_topics(timeout=30).topics if t.startswith(pipeline.prefix)}
    assert f"{pipeline.prefix}-posting-ledger-changelog" in topics  # declared by Faust itself

    # the real-time metrics topic: per-window revenue and COGS of this branch and SKU sum to
    # the ledger's (other documents of the shared sales database carry other dimensions)
    def metric_sums():
        sums: dict[str, Decimal] = {}
        for message in read_topic(bootstrap, pipeline.topic("metrics")):
            datum = SERDE.decode(message.value())
            if datum["dimensions"] == {"branch": "PB1", "sku": "PSKU1"}:
                sums[datum["metric"]] = sums.get(datum["metric"], Decimal(0)) + datum["amount_sum"]
        return sums if {"revenue_amount", "cogs_amount"} <= sums.keys() else None

    sums = pipeline.wait_for("revenue and COGS windows on the metrics topic", metric_sums)
    cogs = sum(d - c for e in stored.values() for a, d, c in e if a == "701")
    assert sums["revenue_amount"] == Decimal("25.00") and sums["cogs_amount"] == cogs == Decimal("10.00")
    assert sums["margin_amount"] == Decimal("15.00")
