"""``salesledger reconcile`` after the real pipeline posted documents (sales_test -> Debezium ->
assembly -> posting -> sink -> an isolated store schema; fixtures of tests/pipeline): empty while
the ledger follows the sales database; it names the invoice whose posted line is changed while
the connector is stopped and its slot dropped (the change never arrives), and the payment whose
journal entry the owner removes from the store."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.pipeline.conftest import (  # noqa: F401  (fixtures)
    captured_pipeline,
    pipeline,
    pipeline_factory,
    sales_dsn,
)

pytestmark = pytest.mark.stack
DEADLINE_S = 600.0


def _documents(conn: psycopg.Connection, tag: str) -> dict[str, str]:
    codes = {"branch": f"QB-{tag}", "warehouse": f"QW-{tag}", "customer": f"QC-{tag}",
             "sku": f"QS-{tag}", "receipt": f"QGR-{tag}", "invoice": f"QINV-{tag}",
             "invoice2": f"QINV2-{tag}", "return": f"QRET-{tag}", "payment": f"QPAY-{tag}"}
    c = codes
    with conn.transaction():
        conn.execute("INSERT INTO sales.branches (code, name) VALUES (%s, 'q')", (c["branch"],))
        conn.execute("INSERT INTO sales.warehouses (code, name, branch_code) VALUES (%s, 'q', %s)",
                     (c["warehouse"], c["branch"]))
        conn.execute("INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') "
                     "ON CONFLICT DO NOTHING")
        conn.execute("INSERT INTO sales.customers (code, name, payment_terms_days) "
                     "VALUES (%s, 'q', 30)", (c["customer"],))
        conn.execute("INSERT INTO sales.suppliers (code, name) VALUES (%s, 'q')", (f"QSUP-{tag}",))
        conn.execute("INSERT INTO sales.products (sku, name, unit, vat_rate) "
                     "VALUES (%s, 'q', 'pcs', 18)", (c["sku"],))
    with conn.transaction():
        (gr,) = conn.execute(
            "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, "
            "status) VALUES (%s, '2041-04-01', %s, %s, 'posted') RETURNING goods_receipt_id",
            (c["receipt"], f"QSUP-{tag}", c["warehouse"])).fetchone()
        conn.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, qty, "
                     "unit_cost, vat_rate) VALUES (%s, 1, %s, 40, 4.00, 18)", (gr, c["sku"]))
    for number, incl, qty, price, disc in ((c["invoice"], False, 5, "12.50", "10"),
                                           (c["invoice2"], True, 3, "7.99", "0")):
        with conn.transaction():
            (inv,) = conn.execute(
                "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, "
                "payment_terms_days, prices_include_vat, status) "
                "VALUES (%s, '2041-04-02', %s, %s, 30, %s, 'posted') RETURNING invoice_id",
                (number, c["customer"], c["warehouse"], incl)).fetchone()
            conn.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, "
                         "unit_price, discount_percent, vat_rate) "
                         "VALUES (%s, 1, %s, %s, %s, %s, 18)", (inv, c["sku"], qty, price, disc))
    with conn.transaction():
        (ret,) = conn.execute(
            "INSERT INTO sales.returns (number, date, customer_code, warehouse_code, "
            "against_invoice_number, status) VALUES (%s, '2041-04-05', %s, %s, %s, 'posted') "
            "RETURNING return_id", (c["return"], c["customer"], c["warehouse"],
                                    c["invoice"])).fetchone()
        conn.execute("INSERT INTO sales.return_lines (return_id, line_no, sku, qty) "
                     "VALUES (%s, 1, %s, 2)", (ret, c["sku"]))
    with conn.transaction():
        (pay,) = conn.execute(
            "INSERT INTO sales.payments (number, date, customer_code, method, amount, status) "
            "VALUES (%s, '2041-04-06', %s, 'bank', 20.00, 'posted') RETURNING payment_id",
            (c["payment"], c["customer"])).fetchone()
        conn.execute("INSERT INTO sales.payment_allocations (payment_id, line_no, "
                     "invoice_number, amount) VALUES (%s, 1, %s, 20.00)", (pay, c["invoice"]))
    return codes


def _reconcile(cli, schema: str, customer: str) -> tuple[int, dict]:
    result = cli("reconcile", "--schema", schema, "--from", "2041-04-01", "--to", "2041-04-30",
                 "--customer", customer, "--format", "json", expect=None)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_reconcile_after_the_pipeline_then_planted_differences(
        captured_pipeline, pg_connect, settings, cli) -> None:  # noqa: F811
    from salesledger import connect
    from salesledger.salesdb.capture import drop_slot

    pipeline = captured_pipeline
    pipeline.start(workers=1)
    sales = pg_connect("sales")
    codes = _documents(sales, uuid.uuid4().hex[:8])
    customer = codes["customer"]

    def matched():
        code, report = _reconcile(cli, pipeline.schema, customer)
        posted = report["checked"]["invoices"] == 2 and report["checked"]["payments"] == 1
        return report if code == 0 and posted and report["checked"]["returns"] == 1 else None

    report = pipeline.wait_for("reconcile empty after the pipeline posted", matched, DEADLINE_S)
    assert report["differences"] == []

    # 1. Connector stopped, slot dropped, then a posted invoice line changes: never captured.
    client = connect.ConnectClient(settings.connect_url)
    client.stop(pipeline.connector)
    assert drop_slot(settings.dsn("sales", "cdc"), pipeline.slot, timeout_s=120)
    sales.execute("UPDATE sales.invoice_lines SET qty = 6 WHERE invoice_id = "
                  "(SELECT invoice_id FROM sales.invoices WHERE number = %s)",
                  (codes["invoice2"],))
    code, report = _reconcile(cli, pipeline.schema, customer)
    assert code == 1
    named = {(d["check"], d["document"]) for d in report["differences"]}
    assert named == {(check, codes["invoice2"]) for check in
                     ("invoiced_net", "invoiced_vat", "invoiced_gross", "goods_issued")}

    # 2. The owner removes the payment's journal entry from the store.
    pipeline.stop()
    with psycopg.connect(**settings.conninfo("accounting", "owner"), autocommit=True) as owner:
        with owner.transaction():
            for table in ("journal_lines", "journal_entries"):
                owner.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                    sql.Identifier(pipeline.schema, table),
                    sql.Identifier(f"{table}_append_only")))
            ids = [r[0] for r in owner.execute(sql.SQL(
                "SELECT entry_id FROM {} WHERE document_number = %s").format(
                sql.Identifier(pipeline.schema, "journal_entries")),
                (codes["payment"],)).fetchall()]
            assert ids
            for table in ("journal_lines", "journal_entries"):
                owner.execute(sql.SQL("DELETE FROM {} WHERE entry_id = ANY(%s)").format(
                    sql.Identifier(pipeline.schema, table)), (ids,))
    code, report = _reconcile(cli, pipeline.schema, customer)
    assert code == 1
    documents = {d["document"] for d in report["differences"]}
    assert codes["payment"] in documents and codes["invoice2"] in documents
    assert ("paid", codes["payment"]) in {(d["check"], d["document"])
                                          for d in report["differences"]}
