"""Document assembly rules on hand-built decoded events (the captured-envelope tests are in
test_assembly_captured.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from salesledger.ledger.model import Invoice, Payment
from salesledger.streams.assembly import (
    AssemblyOverflow,
    DocumentAssembler,
    DocumentEvent,
    DocumentRejected,
    commit_lsn_of,
)
from salesledger.streams.cdc import (
    UNAVAILABLE,
    ChangeEvent,
    Op,
    Row,
    SourceInfo,
    TransactionEvent,
    TransactionRef,
)

_TS = 1_764_480_000_000


class Tx:
    """Builds the row events and END marker of one source transaction the way Debezium 3.6
    writes them (seen on the real stack): each row's transaction id is ``<xid>:<its own LSN>``,
    BEGIN's is the first row's, END's is ``<xid>:<commit LSN>``; ``source.sequence`` is
    ``[previous transaction's commit LSN, own LSN]``."""

    def __init__(self, xid: int, lsn: int, *, previous_commit: int | None = None,
                 first_row_lsn: int | None = None):
        self.id = f"{xid}:{lsn}"
        self.xid, self.lsn, self.previous_commit = xid, lsn, previous_commit
        self.first_row_lsn = first_row_lsn if first_row_lsn is not None else lsn - 100
        self.events: list[ChangeEvent] = []
        self.counts: dict[str, int] = {}

    def row(self, table: str, op: str, after=None, before=None) -> "Tx":
        self.counts[table] = self.counts.get(table, 0) + 1
        row_lsn = self.first_row_lsn + 8 * len(self.events)
        self.events.append(ChangeEvent(
            op=Op(op), before=None if before is None else Row(before),
            after=None if after is None else Row(after),
            source=SourceInfo(connector="postgresql", name="t.cdc", db="sales_test",
                              schema="sales", table=table, ts_ms=_TS, lsn=row_lsn,
                              tx_id=self.xid, sequence=(self.previous_commit, row_lsn)),
            transaction=TransactionRef(id=f"{self.xid}:{row_lsn}", total_order=len(self.events) + 1,
                                       data_collection_order=self.counts[table]),
            ts_ms=_TS))
        return self

    def end(self) -> TransactionEvent:
        return TransactionEvent(status="END", id=self.id, ts_ms=_TS, event_count=len(self.events),
                                data_collections=tuple((f"sales.{t}", n) for t, n in self.counts.items()))

    def begin(self) -> TransactionEvent:
        return TransactionEvent(status="BEGIN", id=f"{self.xid}:{self.first_row_lsn}", ts_ms=_TS)


def header(invoice_id=1, number="INV-1", status="posted", **extra):
    row = {"invoice_id": invoice_id, "number": number, "date": dt.date(2026, 3, 2),
           "customer_code": "C1", "warehouse_code": "W1", "branch_code": None, "currency": "AZN",
           "prices_include_vat": False, "payment_terms_days": 30, "status": status,
           "comment": None, "created_at": None, "updated_at": None}
    row.update(extra)
    return row


def line(line_id, invoice_id=1, line_no=1, sku="A", qty="10", price="5.00"):
    return {"invoice_line_id": line_id, "invoice_id": invoice_id, "line_no": line_no, "sku": sku,
            "description": None, "unit": None, "qty": Decimal(qty), "unit_price": Decimal(price),
            "discount_percent": Decimal("0.00"), "vat_rate": Decimal("18.00")}


def feed(assembler: DocumentAssembler, tx: Tx, *, end_first=False) -> list:
    out = []
    if end_first:
        out += assembler.on_transaction(tx.begin())
        out += assembler.on_transaction(tx.end())
    for event in tx.events:
        out += assembler.on_change(event)
    if not end_first:
        out += assembler.on_transaction(tx.end())
    return out


def test_CDC_11_invoice_emitted_only_when_its_transaction_is_complete():
    a = DocumentAssembler()
    tx = (Tx(10, 1000).row("invoices", "c", header())
          .row("invoice_lines", "c", line(1, line_no=1))
          .row("invoice_lines", "c", line(2, line_no=2, sku="B"))
          .row("invoice_lines", "c", line(3, line_no=3, sku="C"))
          .row("payments", "c", {"payment_id": 7, "number": "PAY-1", "date": dt.date(2026, 3, 2),
                                  "customer_code": "C1", "branch_code": None, "method": "bank",
                                  "currency": "AZN", "amount": Decimal("59.00"), "status": "posted",
                                  "created_at": None, "updated_at": None}))
    assert a.on_transaction(tx.begin()) == []
    for event in tx.events:
        assert a.on_change(event) == []  # no END yet: nothing leaves
    out = a.on_transaction(tx.end())
    assert [e.key for e in out] == ["invoice:INV-1", "payment:PAY-1"]
    invoice = out[0].document
    assert isinstance(invoice, Invoice) and len(invoice.lines) == 3
    assert [l.sku for l in invoice.lines] == ["A", "B", "C"]
    assert invoice.lines[0].unit_price == Decimal("5.00") and invoice.version == 1000
    assert out[0].operation == "created" and out[0].version == (1000, 4)
    assert out[1].version == (1000, 5) and isinstance(out[1].document, Payment)


def test_CDC_11_end_before_rows_waits_for_every_row():
    a = DocumentAssembler()
    tx = Tx(11, 2000).row("invoices", "c", header()).row("invoice_lines", "c", line(1))
    assert a.on_transaction(tx.end()) == []
    assert a.on_change(tx.events[1]) == []
    out = a.on_change(tx.events[0])
    assert [e.operation for e in out] == ["created"]
    assert a.pending_transactions == 0


def test_CDC_11_end_with_zero_events_is_ignored():
    a = DocumentAssembler()
    empty = TransactionEvent(status="END", id="12:3000", ts_ms=_TS, event_count=0)
    assert a.on_transaction(empty) == []
    tx = Tx(13, 3100).row("invoices", "c", header()).row("invoice_lines", "c", line(1))
    assert [e.key for e in feed(a, tx)] == ["invoice:INV-1"]


def test_CDC_11_later_transaction_waits_for_the_earlier_one():
    a = DocumentAssembler()
    first = Tx(20, 5000).row("invoices", "c", header()).row("invoice_lines", "c", line(1))
    second = Tx(21, 5100).row("invoices", "c", header(2, "INV-2")).row("invoice_lines", "c", line(2, 2))
    a.on_transaction(first.end())
    a.on_transaction(second.end())
    assert a.on_change(second.events[0]) == [] and a.on_change(second.events[1]) == []
    a.on_change(first.events[0])
    out = a.on_change(first.events[1])
    assert [e.key for e in out] == ["invoice:INV-1", "invoice:INV-2"]  # commit order


def test_CDC_11_interleaved_transactions_follow_commit_order_not_row_lsn():
    # T1 writes first but commits after T2 (seen on the real stack): its rows have lower LSNs.
    a = DocumentAssembler()
    t1 = Tx(1578, 238_073_304, first_row_lsn=238_072_696).row("invoices", "c", header()).row(
        "invoice_lines", "c", line(1))
    t2 = Tx(1579, 238_073_112, first_row_lsn=238_072_928).row(
        "invoices", "c", header(2, "INV-2")).row("invoice_lines", "c", line(2, 2))
    for event in t1.events + t2.events:
        assert a.on_change(event) == []
    out = a.on_transaction(t2.end()) + a.on_transaction(t1.end())
    assert [(e.key, e.version[0]) for e in out] == [("invoice:INV-2", 238_073_112),
                                                    ("invoice:INV-1", 238_073_304)]


def test_transactions_without_document_rows_do_not_block():
    a = DocumentAssembler()
    heartbeat = TransactionEvent(status="END", id="500:4000", ts_ms=_TS, event_count=1,
                                 data_collections=(("sales.cdc_heartbeat", 1),))
    assert a.on_transaction(heartbeat) == []
    tx = Tx(501, 4100, previous_commit=4000).row("invoices", "c", header()).row(
        "invoice_lines", "c", line(1)).row("customers", "c", {"customer_id": 1, "code": "C1"})
    out = feed(a, tx)  # the customer row is announced by END but not a document table
    assert [e.key for e in out] == ["invoice:INV-1"] and a.pending_transactions == 0


def test_CDC_09_rows_resent_after_a_restart_are_dropped():
    a = DocumentAssembler()
    t1 = Tx(600, 5000, previous_commit=4900).row("invoices", "c", header()).row(
        "invoice_lines", "c", line(1))
    t2 = Tx(601, 5100, previous_commit=5000).row("invoice_lines", "u", line(1, qty="3"))
    assert len(feed(a, t1)) == 1 and len(feed(a, t2)) == 1
    fresh = DocumentAssembler(applied_xids_max=1)  # xid memory too short to help
    feed(fresh, t1), feed(fresh, t2)
    assert fresh.on_change(t1.events[0]) == []  # sequence[0] 4900 < frontier 5100: dropped
    assert fresh.pending_transactions == 0


def test_header_and_lines_in_separate_transactions_give_one_document():
    a = DocumentAssembler()
    assert feed(a, Tx(30, 6000).row("invoices", "c", header())) == []  # posted, no line yet
    out = feed(a, Tx(31, 6100).row("invoice_lines", "c", line(1)).row("invoice_lines", "c", line(2, line_no=2)))
    assert len(out) == 1 and out[0].operation == "created"
    assert len(out[0].document.lines) == 2 and out[0].version[0] == 6100


def test_draft_is_never_emitted_and_posting_is_the_first_version():
    a = DocumentAssembler()
    assert feed(a, Tx(40, 7000).row("invoices", "c", header(status="draft"))
                .row("invoice_lines", "c", line(1))) == []
    assert feed(a, Tx(41, 7100).row("invoice_lines", "u", line(1, qty="4"))) == []
    out = feed(a, Tx(42, 7200).row("invoices", "u", header(status="posted")))
    assert [e.operation for e in out] == ["created"]
    assert out[0].document.lines[0].qty == Decimal("4")


def test_edit_cancel_and_delete_after_posting():
    a = DocumentAssembler()
    feed(a, Tx(50, 8000).row("invoices", "c", header()).row("invoice_lines", "c", line(1)))
    out = feed(a, Tx(51, 8100).row("invoice_lines", "u", line(1, qty="4"), line(1)))
    assert [e.operation for e in out] == ["changed"] and out[0].document.lines[0].qty == 4
    assert feed(a, Tx(52, 8200).row("invoices", "u", header(comment="x"), header())) == []
    out = feed(a, Tx(53, 8300).row("invoices", "u", header(status="cancelled"), header()))
    assert [e.operation for e in out] == ["cancelled"] and out[0].document.status == "cancelled"
    out = feed(a, Tx(54, 8400).row("invoice_lines", "d", None, line(1)).row("invoices", "d", None, header(status="cancelled")))
    assert [e.operation for e in out] == ["deleted"] and out[0].document.status == "deleted"
    assert out[0].document.lines[0].qty == 4  # the last emitted content


def test_delete_of_a_posted_document_with_key_only_before_image():
    a = DocumentAssembler()
    feed(a, Tx(60, 9000).row("invoices", "c", header()).row("invoice_lines", "c", line(1)))
    key_only_line = {k: None for k in line(1)} | {"invoice_line_id": 1}
    key_only_header = {k: None for k in header()} | {"invoice_id": 1}
    out = feed(a, Tx(61, 9100).row("invoice_lines", "d", None, key_only_line)
               .row("invoices", "d", None, key_only_header))
    assert [(e.key, e.operation) for e in out] == [("invoice:INV-1", "deleted")]


def test_CDC_06_update_without_before_image_uses_kept_state():
    a = DocumentAssembler()
    pay = {"payment_id": 7, "number": "PAY-1", "date": dt.date(2026, 3, 2), "customer_code": "C1",
           "branch_code": None, "method": "bank", "currency": "AZN", "amount": Decimal("100.00"),
           "status": "posted", "created_at": None, "updated_at": None}
    feed(a, Tx(70, 10_000).row("payments", "c", pay))
    out = feed(a, Tx(71, 10_100).row("payments", "u", pay | {"amount": Decimal("80.00")}, None))
    assert out[0].operation == "changed" and out[0].document.amount == Decimal("80.00")


def test_CDC_05_unavailable_toast_value_keeps_the_known_value():
    a = DocumentAssembler()
    feed(a, Tx(80, 11_000).row("invoices", "c", header(status="draft", comment="x" * 10))
         .row("invoice_lines", "c", line(1)))
    out = feed(a, Tx(81, 11_100).row("invoices", "u", header(comment=UNAVAILABLE)))
    assert [e.operation for e in out] == ["created"]
    state = a._docs[("invoice", 1)].header
    assert state["comment"] == "x" * 10


def test_duplicate_delivery_is_dropped():
    a = DocumentAssembler()
    tx = Tx(90, 12_000).row("invoices", "c", header()).row("invoice_lines", "c", line(1))
    a.on_change(tx.events[0])
    a.on_change(tx.events[0])  # same event twice while buffered
    a.on_change(tx.events[1])
    out = a.on_transaction(tx.end())
    assert len(out) == 1
    assert feed(a, tx) == []  # the whole transaction again after it was applied


def test_snapshot_rows_do_not_wait_for_a_transaction():
    a = DocumentAssembler()

    def snap(table, row, flag="true"):
        return ChangeEvent(op=Op.READ, before=None, after=Row(row),
                           source=SourceInfo(connector="postgresql", name="t", db="d", schema="sales",
                                             table=table, ts_ms=_TS, snapshot=flag, lsn=500, tx_id=3),
                           transaction=None, ts_ms=_TS)

    assert a.on_change(snap("invoices", header(), "first")) == []
    out = a.on_change(snap("invoice_lines", line(1), "last"))
    assert [(e.key, e.operation, e.snapshot) for e in out] == [("invoice:INV-1", "created", True)]
    assert out[0].version == (500, 2) and out[0].transaction_id is None


def test_null_amount_is_rejected_not_zero():
    a = DocumentAssembler()
    bad = line(1) | {"unit_price": None}
    out = feed(a, Tx(95, 13_000).row("invoices", "c", header()).row("invoice_lines", "c", bad))
    assert len(out) == 1 and isinstance(out[0], DocumentRejected)
    assert out[0].error.reason == "null_amount" and out[0].key == "invoice:INV-1"


def test_bounded_buffers():
    a = DocumentAssembler(pending_transactions_max=1)
    a.on_transaction(Tx(1, 100).row("invoices", "c", header()).end())
    with pytest.raises(AssemblyOverflow):
        a.on_transaction(Tx(2, 200).row("invoices", "c", header()).end())


def test_commit_lsn_of_transaction_id():
    assert commit_lsn_of("571:53195829") == 53195829
    with pytest.raises(ValueError):
        commit_lsn_of("571")


def test_document_event_carries_source_position():
    a = DocumentAssembler()
    out = feed(a, Tx(99, 14_000).row("invoices", "c", header()).row("invoice_lines", "c", line(1)))
    event = out[0]
    assert isinstance(event, DocumentEvent)
    assert event.source.lsn == 14_000 and event.source.tx_id == 99
    assert event.source.commit_time == dt.datetime.fromtimestamp(_TS / 1000, tz=dt.UTC)
    assert event.transaction_id == "99:14000"


def test_renumbered_document_ends_under_its_old_key_and_starts_under_the_new():
    a = DocumentAssembler()
    feed(a, Tx(700, 20_000).row("invoices", "c", header()).row("invoice_lines", "c", line(1)))
    out = feed(a, Tx(701, 20_100).row("invoices", "u", header(number="INV-1b"), header()))
    assert [(e.key, e.operation, e.document.status) for e in out] == [
        ("invoice:INV-1", "deleted", "deleted"), ("invoice:INV-1b", "created", "active")]
    assert out[1].document.lines[0].sku == "A"
