"""The Debezium connector against the real stack: registration, transaction metadata, and the
field cases whose behaviour comes from PostgreSQL + Debezium themselves (CDC-05, 06, 13).

Every test writes real SQL into the test sales database and reads what Debezium produced.
With ``SALESLEDGER_CAPTURE_FIXTURES=1`` the records are also saved to tests/fixtures/debezium/
(the pure assembly tests replay those).
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal

import psycopg
import pytest

from salesledger.connect import render_connector
from salesledger.streams.assembly import DocumentAssembler, DocumentEvent
from salesledger.streams.cdc import (
    UNAVAILABLE,
    ChangeEvent,
    ChangeEventDecoder,
    Op,
    Tombstone,
    TransactionEvent,
)

from .conftest import Record, save_fixture, unique

pytestmark = pytest.mark.stack

_DECODER = ChangeEventDecoder()
_SAVE = os.environ.get("SALESLEDGER_CAPTURE_FIXTURES") == "1"


def _decode(records: list[Record]) -> list:
    return [_DECODER.decode(r.key_bytes, r.value_bytes) for r in records]


def _xid(record: Record) -> int | None:
    """The PostgreSQL xid of a row event or transaction marker (None for a tombstone).

    Debezium 3.6 gives each row, BEGIN and END its own ``"<xid>:<LSN>"`` id: match by xid."""
    if record.value is None:
        return None
    payload = record.value["payload"]
    if "op" in payload:
        return payload["source"]["txId"]
    return int(payload["id"].split(":", 1)[0])


def _is_end(record: Record) -> bool:
    return bool(record.value) and record.value["payload"].get("status") == "END"


def _xid_writing(records: list[Record], number: str, column: str = "number") -> int | None:
    for r in records:
        if r.value and "op" in r.value["payload"] and (
                r.value["payload"]["after"] or {}).get(column) == number:
            return _xid(r)
    return None


def _transaction_done(number: str, column: str = "number"):
    """A predicate: the transaction that wrote ``number`` has its END and all its rows."""

    def done(records: list[Record]) -> bool:
        xid = _xid_writing(records, number, column)
        ends = [r for r in records if _is_end(r) and _xid(r) == xid]
        rows = [r for r in records if r.value and "op" in r.value["payload"] and _xid(r) == xid]
        return bool(ends) and len(rows) >= ends[0].value["payload"]["event_count"]

    return done


def _of_transactions(records: list[Record], xids: set[int]) -> list[Record]:
    """The rows, BEGIN and END markers of the transactions ``xids``."""
    return [r for r in records if _xid(r) in xids]


def _of_transaction(records: list[Record], number: str) -> list[Record]:
    """The rows, BEGIN and END of the transaction that wrote ``number``."""
    return _of_transactions(records, {_xid_writing(records, number)})


def _assemble(decoded: list) -> list:
    assembler = DocumentAssembler()
    out = []
    for event in decoded:
        if isinstance(event, TransactionEvent):
            out += assembler.on_transaction(event)
        elif isinstance(event, ChangeEvent):
            out += assembler.on_change(event)
    return out


def _insert_invoice(sql, number: str, *, status: str = "posted", comment: str | None = None,
                    lines: int = 2) -> int:
    """One statement (one transaction): the header and ``lines`` lines n = 1..lines with
    qty n, unit price 5.0500, VAT 18 %."""
    rows = sql(
        "WITH inv AS (INSERT INTO sales.invoices (number, date, customer_code, warehouse_code,"
        " payment_terms_days, status, comment) VALUES (%s, '2026-03-02', 'C1', 'W1', 30, %s, %s)"
        " RETURNING invoice_id), lines AS (INSERT INTO sales.invoice_lines (invoice_id, line_no,"
        " sku, qty, unit_price, discount_percent, vat_rate) SELECT inv.invoice_id, g, 'SKU-' || g,"
        " g, 5.0500, 0, 18 FROM inv, generate_series(1, %s) AS g RETURNING 1)"
        " SELECT invoice_id FROM inv, (SELECT count(*) FROM lines) AS l",
        (number, status, comment, lines))
    return rows[0][0]


def test_register_is_idempotent_and_keeps_secrets_out(capture):
    first = capture.client.get_config(capture.name)
    state = capture.register()  # the same config again
    assert state.running and state.task_states == ("RUNNING",)
    assert capture.client.get_config(capture.name) == first
    assert first["database.password"].startswith("${file:")
    assert first["plugin.name"] == "pgoutput" and first["slot.name"] == capture.slot
    assert "sales\\.invoices" in first["table.include.list"].split(",")


def test_invoice_reaches_its_topic_with_transaction_metadata(capture, sql):
    reader = capture.reader("invoices", "invoice_lines")
    number = unique("INV")
    _insert_invoice(sql, number, lines=2)
    records = _of_transaction(reader.until(_transaction_done(number)), number)
    reader.close()
    decoded = _decode(records)
    markers = [e for e in decoded if isinstance(e, TransactionEvent)]
    rows = [e for e in decoded if isinstance(e, ChangeEvent)]
    end = next(m for m in markers if m.status == "END")
    assert end.event_count == 3 == len(rows)
    assert dict(end.data_collections) == {"sales.invoices": 1, "sales.invoice_lines": 2}
    assert sorted(r.transaction.total_order for r in rows) == [1, 2, 3]
    assert {r.source.tx_id for r in rows} == {end.tx_id}
    header = next(r for r in rows if r.source.table == "invoices")
    assert header.op is Op.CREATE and header.after["number"] == number
    lines = sorted((r for r in rows if r.source.table == "invoice_lines"),
                   key=lambda r: r.after["line_no"])
    assert lines[0].after.money("unit_price") == Decimal("5.0500")
    assert lines[1].after.money("qty") == Decimal("2.000")
    if _SAVE:
        save_fixture("invoice_one_transaction", records)

    out = _assemble(decoded)
    assert len(out) == 1 and isinstance(out[0], DocumentEvent)
    document = out[0].document
    assert out[0].key == f"invoice:{number}" and out[0].operation == "created"
    assert [l.qty for l in document.lines] == [Decimal("1.000"), Decimal("2.000")]
    assert document.source.tx_id == header.source.tx_id


def test_CDC_05_unchanged_toast_value_on_a_status_update(capture, sql):
    reader = capture.reader("invoices", "invoice_lines")
    number = unique("INV")
    comment = secrets.token_hex(20_000)  # 40,000 characters, incompressible: stored out of line
    invoice_id = _insert_invoice(sql, number, status="draft", comment=comment, lines=1)
    stored = sql("SELECT pg_column_size(comment) FROM sales.invoices WHERE invoice_id = %s",
                 (invoice_id,))[0][0]
    assert stored > 2032  # above TOAST_TUPLE_THRESHOLD: the value lives in the TOAST table
    sql("UPDATE sales.invoices SET status = 'posted' WHERE invoice_id = %s", (invoice_id,))
    sql("ALTER TABLE sales.invoices REPLICA IDENTITY DEFAULT")
    try:
        sql("UPDATE sales.invoices SET status = 'cancelled' WHERE invoice_id = %s", (invoice_id,))
    finally:
        sql("ALTER TABLE sales.invoices REPLICA IDENTITY FULL")

    def updated_twice(rs: list[Record]) -> bool:
        xids = {_xid(r) for r in rs if r.value and r.value["payload"].get("op") == "u"
                and r.value["payload"]["after"]["invoice_id"] == invoice_id}
        return len(xids) == 2 and len([r for r in rs if _is_end(r) and _xid(r) in xids]) == 2

    records = reader.until(lambda rs: _transaction_done(number)(rs) and updated_twice(rs))
    reader.close()
    xids = {_xid(r) for r in records if r.value and "op" in r.value["payload"]
            and r.value["payload"]["after"]["invoice_id"] == invoice_id}
    records = _of_transactions(records, xids | {_xid_writing(records, number)})
    decoded = _decode(records)
    posted, cancelled = [e for e in decoded if isinstance(e, ChangeEvent) and e.op is Op.UPDATE]
    # What Debezium 3.6 does, measured: under REPLICA IDENTITY FULL PostgreSQL logs the old
    # tuple with its TOASTed values inline, and the event's `after` carries the real text...
    assert posted.after["status"] == "posted" and posted.after["comment"] == comment
    assert posted.before["comment"] == comment
    # ...under REPLICA IDENTITY DEFAULT the unchanged TOASTed column is the placeholder.
    assert cancelled.before is None
    assert cancelled.after["status"] == "cancelled" and cancelled.after["comment"] is UNAVAILABLE
    raw = next(r for r in records if r.value and r.value["payload"].get("op") == "u"
               and r.value["payload"]["after"]["status"] == "cancelled")
    assert raw.value["payload"]["after"]["comment"] == "__debezium_unavailable_value"
    if _SAVE:
        save_fixture("cdc05_toast_status_update", records)

    out = _assemble(decoded)
    assert [e.operation for e in out] == ["created", "cancelled"]
    assert all(e.document.lines[0].qty == Decimal("1.000") for e in out)


def test_CDC_06_payment_without_full_replica_identity(capture, sql):
    reader = capture.reader("payments", "payment_allocations")
    number = unique("PAY")
    sql("ALTER TABLE sales.payments REPLICA IDENTITY DEFAULT")
    try:
        payment_id = sql(
            "INSERT INTO sales.payments (number, date, customer_code, method, amount, status)"
            " VALUES (%s, '2026-03-20', 'C1', 'bank', 100.00, 'posted') RETURNING payment_id",
            (number,))[0][0]
        sql("UPDATE sales.payments SET amount = 80.00 WHERE payment_id = %s", (payment_id,))
        sql("DELETE FROM sales.payments WHERE payment_id = %s", (payment_id,))

        def seen(rs):
            ours = [r for r in rs if r.value and "op" in r.value["payload"]
                    and (r.value["payload"]["after"] or r.value["payload"]["before"] or {})
                    .get("payment_id") == payment_id]
            ends = {_xid(r) for r in rs if _is_end(r)}
            return ([r.value["payload"]["op"] for r in ours] == ["c", "u", "d"]
                    and {_xid(r) for r in ours} <= ends and any(r.value is None for r in rs))

        records = reader.until(seen)
    finally:
        sql("ALTER TABLE sales.payments REPLICA IDENTITY FULL")
    reader.close()
    def about_payment(r: Record) -> bool:
        if r.value is None:
            return r.key["payload"]["payment_id"] == payment_id
        payload = r.value["payload"]
        return "op" in payload and (payload["after"] or payload["before"])["payment_id"] == payment_id

    xids = {_xid(r) for r in records if r.value and about_payment(r)}
    ours = [r for r in records if about_payment(r) or (_is_end(r) and _xid(r) in xids)]
    decoded = _decode(ours)
    create, update, delete = [e for e in decoded if isinstance(e, ChangeEvent)]
    assert update.before is None and update.after.money("amount") == Decimal("80.00")
    assert delete.after is None and delete.before["payment_id"] == payment_id
    # Measured on Debezium 3.6: the key-only before-image is padded with each column's default
    # or zero value ('' / 0.00 / 1970-01-01 / DEFAULT 'draft'), so it LOOKS like data while the
    # row held 80.00 and 'posted': nothing may read a delete's before-image beyond its key.
    assert delete.before["amount"] == Decimal("0.00") and delete.before["number"] == ""
    assert delete.before["status"] == "draft"
    assert any(isinstance(e, Tombstone) for e in decoded)  # tombstones.on.delete
    if _SAVE:
        save_fixture("cdc06_payment_identity_default", ours)

    out = _assemble(decoded)
    assert [(e.operation, e.document.amount) for e in out] == [
        ("created", Decimal("100.00")), ("changed", Decimal("80.00")), ("deleted", Decimal("80.00"))]


def test_CDC_13_column_added_mid_stream(capture, sql):
    reader = capture.reader("invoices", "invoice_lines")
    before_alter = unique("INV")
    _insert_invoice(sql, before_alter, lines=1)
    reader.until(_transaction_done(before_alter))
    after_alter = unique("INV")
    sql("ALTER TABLE sales.invoice_lines ADD COLUMN IF NOT EXISTS note text")
    try:
        invoice_id = _insert_invoice(sql, after_alter, lines=1)
        sql("UPDATE sales.invoice_lines SET note = 'added mid-stream' WHERE invoice_id = %s",
            (invoice_id,))
        records = reader.until(lambda rs: any(
            r.value and (r.value["payload"].get("after") or {}).get("note") == "added mid-stream"
            for r in rs) and _transaction_done(after_alter)(rs))
    finally:
        sql("ALTER TABLE sales.invoice_lines DROP COLUMN IF EXISTS note")
    reader.close()
    xids = {_xid_writing(records, before_alter), _xid_writing(records, after_alter)} | {
        _xid(r) for r in records if r.value and (r.value["payload"].get("after") or {}).get("note")}
    records = _of_transactions(records, xids)
    decoded = _decode(records)  # old and new shapes decode
    lines = [e for e in decoded if isinstance(e, ChangeEvent) and e.source.table == "invoice_lines"]
    assert "note" not in lines[0].after
    noted = [e for e in lines if "note" in e.after]
    assert noted and noted[-1].after["note"] == "added mid-stream"
    schema = next(r.value["schema"] for r in records if r.value
                  and (r.value["payload"].get("after") or {}).get("note") == "added mid-stream")
    after_fields = next(f for f in schema["fields"] if f["field"] == "after")["fields"]
    assert next(f for f in after_fields if f["field"] == "note")["optional"] is True
    if _SAVE:
        save_fixture("cdc13_column_added", records)

    out = _assemble(decoded)
    keys = [e.key for e in out if isinstance(e, DocumentEvent)]
    assert f"invoice:{before_alter}" in keys and f"invoice:{after_alter}" in keys
    state = capture.client.status(capture.name)
    assert state.running  # nothing stopped


def test_rendered_config_matches_the_registered_one(capture):
    registered = capture.client.get_config(capture.name)
    assert registered["decimal.handling.mode"] == "precise"
    assert registered["provide.transaction.metadata"] == "true"
    assert registered["event.processing.failure.handling.mode"] == "fail"
    assert registered["publication.autocreate.mode"] == "disabled"
    assert registered["heartbeat.action.query"].startswith("INSERT INTO sales.cdc_heartbeat")
    _, rendered = render_connector(capture.values())
    assert {k: v for k, v in registered.items() if k != "name"} == {
        k: v for k, v in rendered.items() if k != "name"}


def test_CDC_11_header_three_lines_and_a_payment_in_one_transaction(capture, sql):
    reader = capture.reader("invoices", "invoice_lines", "payments")
    number, payment = unique("INV"), unique("PAY")
    with psycopg.connect(capture.settings.dsn("sales", "owner")) as conn:
        invoice_id = _insert_invoice(lambda q, p: conn.execute(q, p).fetchall(), number, lines=3)
        conn.execute("INSERT INTO sales.payments (number, date, customer_code, method, amount,"
                     " status) VALUES (%s, '2026-03-02', 'C1', 'cash', 18.77, 'posted')", (payment,))
    records = _of_transaction(reader.until(_transaction_done(number)), number)
    reader.close()
    decoded = _decode(records)
    end = next(e for e in decoded if isinstance(e, TransactionEvent) and e.status == "END")
    assert end.event_count == 5
    assert dict(end.data_collections) == {"sales.invoices": 1, "sales.invoice_lines": 3,
                                          "sales.payments": 1}
    rows = [e for e in decoded if isinstance(e, ChangeEvent)]
    assembler = DocumentAssembler()
    assert [d for e in rows for d in assembler.on_change(e)] == []  # all rows, no END yet
    out = assembler.on_transaction(end)
    assert [e.key for e in out] == [f"invoice:{number}", f"payment:{payment}"]
    assert len(out[0].document.lines) == 3 and out[0].document.id == str(invoice_id)
    assert out[1].document.amount == Decimal("18.77") and out[1].version[1] == 5
