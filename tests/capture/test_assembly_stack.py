"""Document assembly on what the running Debezium produced from real SQL: every document kind
and every operation (insert, edit, cancel, delete after posting; draft -> posted; header and
lines in separate transactions). The initial snapshot is in test_assembly_snapshot_stack.py.
"""

from __future__ import annotations

import os
from decimal import Decimal

import psycopg
import pytest

from salesledger.ledger.model import GoodsReceipt, Invoice, Payment, SalesReturn, WriteOff
from salesledger.streams.assembly import DocumentAssembler, DocumentEvent
from salesledger.streams.cdc import ChangeEvent, ChangeEventDecoder, TransactionEvent

from .conftest import Record, save_fixture, unique

pytestmark = pytest.mark.stack

_DECODER = ChangeEventDecoder()
_SAVE = os.environ.get("SALESLEDGER_CAPTURE_FIXTURES") == "1"
DOCUMENT_TABLES = ["invoices", "invoice_lines", "payments", "payment_allocations", "returns",
                   "return_lines", "goods_receipts", "goods_receipt_lines", "stock_write_offs",
                   "stock_write_off_lines"]


class Source:
    """Runs each call as one transaction of the sales program and remembers its xid."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.xids: list[int] = []

    def tx(self, *statements: tuple[str, tuple]) -> list:
        """Run ``(sql, params)`` statements in one transaction; return the last one's rows."""
        with psycopg.connect(self.dsn) as conn:
            rows: list = []
            for statement, params in statements:
                cursor = conn.execute(statement, params)
                rows = cursor.fetchall() if cursor.description else []
            self.xids.append(int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]))
        return rows


def _xid(record: Record) -> int | None:
    if record.value is None:
        return None
    payload = record.value["payload"]
    return payload["source"]["txId"] if "op" in payload else int(payload["id"].split(":")[0])


def _complete(xids: set[int]):
    """Predicate: every transaction of ``xids`` has its END and all its document rows."""

    def done(records: list[Record]) -> bool:
        ends = {_xid(r): r.value["payload"] for r in records
                if r.value and r.value["payload"].get("status") == "END"}
        if not xids <= ends.keys():
            return False
        rows: dict[int, int] = {}
        for r in records:
            if r.value and "op" in r.value["payload"]:
                rows[_xid(r)] = rows.get(_xid(r), 0) + 1
        return all(rows.get(x, 0) >= ends[x]["event_count"] for x in xids)

    return done


def _assemble(records: list[Record], assembler: DocumentAssembler) -> list:
    out = []
    for record in records:
        event = _DECODER.decode(record.key_bytes, record.value_bytes)
        if isinstance(event, TransactionEvent):
            out += assembler.on_transaction(event)
        elif isinstance(event, ChangeEvent):
            out += assembler.on_change(event)
    return out


INSERT_INVOICE = ("INSERT INTO sales.invoices (number, date, customer_code, warehouse_code,"
                  " payment_terms_days, prices_include_vat, status) VALUES"
                  " (%s, '2026-03-02', 'C1', 'W1', 30, false, %s) RETURNING invoice_id")
INSERT_INVOICE_LINE = ("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price,"
                       " discount_percent, vat_rate) VALUES (%s, %s, %s, %s, %s, %s, 18)")


def test_every_document_kind_and_operation_from_real_sql(capture, sales_dsn):
    reader = capture.reader(*DOCUMENT_TABLES)
    src = Source(sales_dsn)
    inv, inv2, pay, ret, gr, wo = (unique(p) for p in ("INV", "INV", "PAY", "RET", "GR", "WO"))

    # goods receipt: draft header, lines in a second transaction, posted in a third
    gr_id = src.tx(("INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code,"
                    " status) VALUES (%s, '2026-03-01', 'S1', 'W1', 'draft')"
                    " RETURNING goods_receipt_id", (gr,)))[0][0]
    src.tx(("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, qty, unit_cost,"
            " vat_rate) VALUES (%s, 1, 'A', 10, 3.6000, 18), (%s, 2, 'B', 2.5, 0.1000, 18)",
            (gr_id, gr_id)))
    src.tx(("UPDATE sales.goods_receipts SET status = 'posted' WHERE goods_receipt_id = %s", (gr_id,)))
    # invoice: header and lines in one transaction, posted
    with psycopg.connect(sales_dsn) as conn:
        inv_id = conn.execute(INSERT_INVOICE, (inv, "posted")).fetchone()[0]
        conn.execute(INSERT_INVOICE_LINE, (inv_id, 1, "A", 4, Decimal("5.00"), Decimal("0")))
        conn.execute(INSERT_INVOICE_LINE, (inv_id, 2, "B", 1, Decimal("10.10"), Decimal("5.00")))
        src.xids.append(int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]))
    # payment with an allocation, one transaction
    pay_id = src.tx(
        ("INSERT INTO sales.payments (number, date, customer_code, method, amount, status) VALUES"
         " (%s, '2026-03-05', 'C1', 'bank', 30.00, 'posted') RETURNING payment_id", (pay,)))[0][0]
    src.tx(("INSERT INTO sales.payment_allocations (payment_id, line_no, invoice_number, amount)"
            " VALUES (%s, 1, %s, 30.00)", (pay_id, inv)))
    # return against the invoice's line 1; write-off
    src.tx(("WITH r AS (INSERT INTO sales.returns (number, date, customer_code, warehouse_code,"
            " against_invoice_number, status) VALUES (%s, '2026-03-06', 'C1', 'W1', %s, 'posted')"
            " RETURNING return_id) INSERT INTO sales.return_lines (return_id, line_no, sku, qty,"
            " invoice_line_no) SELECT return_id, 1, 'A', 1, 1 FROM r", (ret, inv)))
    wo_id = src.tx(("WITH w AS (INSERT INTO sales.stock_write_offs (number, date, warehouse_code,"
                    " reason, status) VALUES (%s, '2026-03-07', 'W1', 'damaged', 'posted')"
                    " RETURNING stock_write_off_id) INSERT INTO sales.stock_write_off_lines"
                    " (stock_write_off_id, line_no, sku, qty) SELECT stock_write_off_id, 1, 'B', 0.5"
                    " FROM w RETURNING stock_write_off_id", (wo,)))[0][0]
    # after posting: edit the invoice, cancel the payment, delete the write-off
    src.tx(("UPDATE sales.invoice_lines SET qty = 3 WHERE invoice_id = %s AND line_no = 1", (inv_id,)))
    src.tx(("UPDATE sales.payments SET status = 'cancelled' WHERE payment_id = %s", (pay_id,)))
    src.tx(("DELETE FROM sales.stock_write_offs WHERE stock_write_off_id = %s", (wo_id,)))
    # a posted header whose lines come in the next transaction
    inv2_id = src.tx((INSERT_INVOICE, (inv2, "posted")))[0][0]
    src.tx((INSERT_INVOICE_LINE, (inv2_id, 1, "A", 1, Decimal("7.00"), Decimal("0"))))

    xids = set(src.xids)
    records = [r for r in reader.until(_complete(xids)) if _xid(r) in xids]
    reader.close()
    if _SAVE:
        save_fixture("all_kinds", records)
    out = _assemble(records, DocumentAssembler())
    assert all(isinstance(e, DocumentEvent) for e in out), out
    assert [(e.key, e.operation) for e in out] == [
        (f"goods_receipt:{gr}", "created"),
        (f"invoice:{inv}", "created"),
        (f"payment:{pay}", "created"),
        (f"payment:{pay}", "changed"),     # the allocation came in its own transaction
        (f"return:{ret}", "created"),
        (f"write_off:{wo}", "created"),
        (f"invoice:{inv}", "changed"),
        (f"payment:{pay}", "cancelled"),
        (f"write_off:{wo}", "deleted"),
        (f"invoice:{inv2}", "created"),
    ]
    docs = {(e.key, e.operation): e.document for e in out}
    receipt = docs[(f"goods_receipt:{gr}", "created")]
    assert isinstance(receipt, GoodsReceipt) and receipt.supplier == "S1"
    assert [(l.sku, l.qty, l.unit_cost) for l in receipt.lines] == [
        ("A", Decimal("10.000"), Decimal("3.6000")), ("B", Decimal("2.500"), Decimal("0.1000"))]
    invoice = docs[(f"invoice:{inv}", "created")]
    assert isinstance(invoice, Invoice)
    assert [(l.qty, l.unit_price, l.discount_percent) for l in invoice.lines] == [
        (Decimal("4.000"), Decimal("5.0000"), Decimal("0.00")),
        (Decimal("1.000"), Decimal("10.1000"), Decimal("5.00"))]
    assert docs[(f"invoice:{inv}", "changed")].lines[0].qty == Decimal("3.000")
    payment = docs[(f"payment:{pay}", "changed")]
    assert isinstance(payment, Payment) and payment.allocations[0].document == inv
    assert payment.allocations[0].amount == Decimal("30.00") and payment.method == "bank"
    sales_return = docs[(f"return:{ret}", "created")]
    assert isinstance(sales_return, SalesReturn) and sales_return.against == inv
    assert sales_return.lines[0].line == 1 and sales_return.lines[0].qty == Decimal("1.000")
    write_off = docs[(f"write_off:{wo}", "deleted")]
    assert isinstance(write_off, WriteOff) and write_off.status == "deleted"
    assert write_off.reason == "damaged" and write_off.lines[0].qty == Decimal("0.500")
    versions = [e.version for e in out]
    assert versions == sorted(versions)  # source commit order
