"""Document assembly on envelopes the running Debezium 3.6 produced from real SQL.

The files in tests/fixtures/debezium/ were written by test_connector_stack.py with
``SALESLEDGER_CAPTURE_FIXTURES=1``: every record (topic, key text, value text) of the
transactions a test wrote, in the order one consumer polled them from the CDC topics and the
transaction topic.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from salesledger.streams.assembly import DocumentAssembler, DocumentEvent
from salesledger.streams.cdc import (
    UNAVAILABLE,
    ChangeEvent,
    ChangeEventDecoder,
    Op,
    Tombstone,
    TransactionEvent,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
_DECODER = ChangeEventDecoder()


def load(name: str) -> list:
    """Decoded events of a captured fixture, in capture order."""
    events = []
    for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
        record = json.loads(line)
        key = record["key"].encode() if record["key"] is not None else None
        value = record["value"].encode() if record["value"] is not None else None
        events.append(_DECODER.decode(key, value))
    return events


def assemble(events: list, assembler: DocumentAssembler | None = None) -> list:
    assembler = assembler or DocumentAssembler()
    out = []
    for event in events:
        if isinstance(event, TransactionEvent):
            out += assembler.on_transaction(event)
        elif isinstance(event, ChangeEvent):
            out += assembler.on_change(event)
        else:
            assert isinstance(event, Tombstone)  # CDC-07: skipped, never an error
    return out


def markers_first(events: list) -> list:
    """The same events with the transaction topic read ahead of the row topics."""
    return ([e for e in events if isinstance(e, TransactionEvent)]
            + [e for e in events if not isinstance(e, TransactionEvent)])


def rows_first(events: list) -> list:
    """The same events with the row topics read ahead of the transaction topic."""
    return ([e for e in events if not isinstance(e, TransactionEvent)]
            + [e for e in events if isinstance(e, TransactionEvent)])


@pytest.mark.parametrize("order", [lambda e: e, markers_first, rows_first])
def test_CDC_11_captured_invoice_is_one_document_whatever_the_topic_interleaving(order):
    events = load("invoice_one_transaction")
    end = next(e for e in events if isinstance(e, TransactionEvent) and e.status == "END")
    out = assemble(order(events))
    assert len(out) == 1 and isinstance(out[0], DocumentEvent)
    event = out[0]
    document = event.document
    assert event.operation == "created" and event.key == f"invoice:{document.number}"
    assert event.version[0] == int(end.id.split(":")[1]) == document.version
    assert event.transaction_id == end.id and document.source.tx_id == end.tx_id
    assert [(l.line_no, l.sku, l.qty, l.unit_price, l.vat_rate) for l in document.lines] == [
        (1, "SKU-1", Decimal("1.000"), Decimal("5.0500"), Decimal("18.00")),
        (2, "SKU-2", Decimal("2.000"), Decimal("5.0500"), Decimal("18.00")),
    ]
    assert document.customer == "C1" and document.payment_terms_days == 30
    assert document.currency == "AZN" and str(document.date) == "2026-03-02"


def test_CDC_11_captured_rows_without_their_end_emit_nothing():
    events = [e for e in load("invoice_one_transaction")
              if not (isinstance(e, TransactionEvent) and e.status == "END")]
    assembler = DocumentAssembler()
    assert assemble(events, assembler) == []
    assert assembler.pending_transactions == 1


def test_CDC_09_captured_transaction_delivered_twice_emits_once():
    events = load("invoice_one_transaction")
    assembler = DocumentAssembler()
    assert len(assemble(events, assembler)) == 1
    assert assemble(events, assembler) == []


def test_CDC_05_captured_toast_placeholder_is_never_data():
    events = load("cdc05_toast_status_update")
    updates = [e for e in events if isinstance(e, ChangeEvent) and e.op is Op.UPDATE]
    assert updates[-1].after.is_unavailable("comment")  # REPLICA IDENTITY DEFAULT update
    assembler = DocumentAssembler()
    out = assemble(events, assembler)
    assert [e.operation for e in out] == ["created", "cancelled"]
    assert out[1].document.status == "cancelled"
    kept = [s.header for s in assembler._docs.values()]
    assert all(h["comment"] is not UNAVAILABLE and len(h["comment"]) == 40_000 for h in kept)


def test_CDC_06_captured_payment_update_and_delete_without_before_image():
    events = load("cdc06_payment_identity_default")
    out = assemble(events)
    assert [(e.operation, e.document.amount, e.document.status) for e in out] == [
        ("created", Decimal("100.00"), "active"),
        ("changed", Decimal("80.00"), "active"),
        # from the kept state, never from the padded key-only before-image (amount 0.00)
        ("deleted", Decimal("80.00"), "deleted"),
    ]
    assert out[0].version < out[1].version < out[2].version


def test_CDC_07_captured_delete_with_or_without_its_tombstone():
    events = load("cdc06_payment_identity_default")
    assert any(isinstance(e, Tombstone) for e in events)
    without = [e for e in events if not isinstance(e, Tombstone)]
    strip = [(e.key, e.operation, e.version) for e in assemble(events)]
    assert strip == [(e.key, e.operation, e.version) for e in assemble(without)]


def test_CDC_13_captured_events_before_and_after_add_column_both_assemble():
    events = load("cdc13_column_added")
    lines = [e for e in events if isinstance(e, ChangeEvent) and e.source.table == "invoice_lines"]
    assert "note" not in lines[0].after and "note" in lines[-1].after
    out = assemble(events)
    created = [e for e in out if e.operation == "created"]
    assert len(created) == 2
    assert all(len(e.document.lines) == 1 for e in created)


_ALL_KINDS = [
    ("goods_receipt", "created"), ("invoice", "created"), ("payment", "created"),
    ("payment", "changed"), ("return", "created"), ("write_off", "created"),
    ("invoice", "changed"), ("payment", "cancelled"), ("write_off", "deleted"),
    ("invoice", "created"),
]


@pytest.mark.parametrize("order", [lambda e: e, markers_first, rows_first])
def test_captured_every_kind_and_operation_in_commit_order(order):
    out = assemble(order(load("all_kinds")))
    assert [(e.key.split(":")[0], e.operation) for e in out] == _ALL_KINDS
    assert [e.version for e in out] == sorted(e.version for e in out)
    assert len({e.key for e in out}) == 6
    by_op = {(e.key.split(":")[0], e.operation): e.document for e in out}
    assert by_op[("payment", "cancelled")].status == "cancelled"
    assert by_op[("write_off", "deleted")].status == "deleted"
    assert by_op[("invoice", "changed")].lines[0].qty == Decimal("3.000")


def test_captured_draft_goods_receipt_is_emitted_once_posted():
    events = load("all_kinds")
    receipt_rows = [e for e in events if isinstance(e, ChangeEvent)
                    and e.source.table.startswith("goods_receipt")]
    assert {e.source.tx_id for e in receipt_rows} and len({e.source.tx_id for e in receipt_rows}) == 3
    out = [e for e in assemble(events) if e.key.startswith("goods_receipt:")]
    assert [(e.operation, len(e.document.lines)) for e in out] == [("created", 2)]
    assert out[0].version[0] > min(e.source.lsn for e in receipt_rows)


def test_captured_snapshot_rows_emit_without_a_transaction():
    events = load("snapshot_write_off")
    assert all(isinstance(e, ChangeEvent) and e.op is Op.READ and e.transaction is None
               for e in events)
    assembler = DocumentAssembler()
    out = assemble(events, assembler) + assembler.flush_snapshot()
    assert [(e.operation, e.snapshot, len(e.document.lines)) for e in out] == [("created", True, 2)]
