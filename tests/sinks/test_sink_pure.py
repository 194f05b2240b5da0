"""Pure parts of the sink: canonical text, decoding, rows of facts (no services)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from salesledger.ledger.model import DocumentRef, ReceivableUpdate, StockMovement
from salesledger.sinks.canonical import entry_sha256, entry_text, normalise_decimal, render_value
from salesledger.sinks.decode import InvalidLedgerRecord, UnexpectedTopic, decode_record, from_datum
from salesledger.sinks.records import HeldEvent, PeriodAction, entry_canonical, rows_of
from salesledger.sinks.settings import SinkSettings
from salesledger.streams.deadletter import RejectedRecord, build_dead_letter
from salesledger.streams.serde import AvroSerde

from sink_factories import make_entry


@pytest.mark.parametrize("value, text", [
    ("10.50", "10.5"), ("10.5000", "10.5"), ("10", "10"), ("0.00", "0"), ("-0", "0"),
    ("1E+2", "100"), ("-11.80", "-11.8"), ("0.0001", "0.0001"), ("120.0", "120"),
])
def test_decimals_are_normalised_to_plain_notation_without_trailing_zeros(value, text):
    assert normalise_decimal(Decimal(value)) == text


def test_canonical_text_escapes_and_refuses_floats_and_timestamps():
    assert render_value("a\tb\nc\\") == "a\\tb\\nc\\\\"
    assert render_value(None) == "\\N"
    assert render_value(dt.date(2026, 1, 5)) == "2026-01-05"
    with pytest.raises(TypeError):
        render_value(1.5)
    with pytest.raises(TypeError):
        render_value(dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
    with pytest.raises(ValueError):
        normalise_decimal(Decimal("NaN"))


def test_entry_text_form():
    head, lines = entry_canonical(make_entry(1, "118.00"))
    text = entry_text(head, lines)
    rows = text.splitlines()
    assert rows[0].split("\t")[:4] == ["entry", head[0], "revenue", "2026-01-05"]
    assert rows[1].split("\t")[2:7] == ["1", "211", "118", "0", "AZN"]
    assert len(rows) == 4 and text.endswith("\n")


def test_entry_hash_ignores_source_trace_but_not_amounts():
    a = make_entry(1)
    moved = dataclasses.replace(a, document=dataclasses.replace(a.document, source=None))
    assert entry_sha256(*entry_canonical(a)) == entry_sha256(*entry_canonical(moved))
    assert entry_sha256(*entry_canonical(a)) != entry_sha256(*entry_canonical(make_entry(1, "236")))


def test_rows_of_an_entry_number_lines_and_register_accounts():
    rows = rows_of(make_entry(1))
    tables = [t for t, _ in rows]
    assert tables.count("journal_entries") == 1 and tables.count("journal_lines") == 3
    assert sorted(r[0] for t, r in rows if t == "accounts") == ["211", "521", "601"]
    assert [r[1] for t, r in rows if t == "journal_lines"] == [1, 2, 3]


def test_receivable_update_ids_are_deterministic_and_advances_go_to_their_table():
    ref = DocumentRef(type="payment", id="9", number="PAY-9", version=1)
    update = ReceivableUpdate(customer="C1", document="PAY-9", accounting_date=dt.date(2026, 1, 1),
                              amount=Decimal("10.00"), currency="AZN", by=ref, kind="payment",
                              is_advance=True)
    (table, row), = rows_of(update)
    assert table == "advances" and rows_of(update) == [(table, row)]
    other = dataclasses.replace(update, amount=Decimal("10.01"))
    assert rows_of(other)[0][1][0] != row[0]


def test_decode_round_trips_every_ledger_topic():
    serde = AvroSerde()
    entry = make_entry(4)
    movement = StockMovement(movement_id="m", kind="issue", accounting_date=dt.date(2026, 1, 2),
                             document=entry.document, sku="S", warehouse="W",
                             qty=Decimal("-1.0000"), value=Decimal("-5.00"), currency="AZN")
    for topic, subject, fact in (("sl.ledger.journal-entries", "journal_entry", entry),
                                 ("sl.ledger.stock-movements.t1", "stock_movement", movement)):
        value = serde.encode(subject, dataclasses.asdict(fact))
        record = decode_record(topic, 2, 7, b"k", value)
        assert record.fact == fact and record.position.offset == 7 and record.value == value
    held = HeldEvent(document_key="invoice:INV-1", status="posted", reason="no_exchange_rate",
                     detail="", version=77, since=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
                     changed_at=dt.datetime(2026, 1, 3, tzinfo=dt.UTC))
    action = PeriodAction(action="lock", through=dt.date(2026, 1, 31), actor="me",
                          at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC), action_id="a-1")
    for topic, subject, fact in (("sl.held", "held_document", held),
                                 ("sl.control", "period_action", action)):
        value = serde.encode(subject, dataclasses.asdict(fact))
        assert decode_record(topic, 0, 1, None, value).fact == fact
    dead = build_dead_letter("undecodable", topic="x", partition=0, offset=1, key=None,
                             value=b"\x00", message="garbage",
                             first_seen=dt.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC))
    record = decode_record("sl.dlq", 0, 3, None, serde.encode("dead_letter", dead.to_avro()))
    assert record.fact == dead


def test_decode_rejects_garbage_wrong_record_and_unknown_topic_with_reasons():
    serde = AvroSerde()
    with pytest.raises(RejectedRecord) as garbage:
        decode_record("sl.ledger.journal-entries", 0, 0, None, b"\x01\x02\x03")
    assert garbage.value.reason in ("undecodable", "converter_mismatch")
    movement_bytes = serde.encode("stock_movement", dataclasses.asdict(StockMovement(
        movement_id="m", kind="issue", accounting_date=dt.date(2026, 1, 2),
        document=make_entry(1).document, sku="S", warehouse="W", qty=Decimal("1"),
        value=Decimal("1"), currency="AZN")))
    with pytest.raises(RejectedRecord, match="expected journal_entry"):
        decode_record("sl.ledger.journal-entries", 0, 0, None, movement_bytes)
    with pytest.raises(UnexpectedTopic):
        decode_record("sl.something-else", 0, 0, None, movement_bytes)
    assert decode_record("sl.ledger.journal-entries", 0, 0, None, None) is None  # tombstone


def test_from_datum_refuses_float_money():
    datum = dataclasses.asdict(make_entry(1))
    datum["lines"][0]["debit"] = 118.0
    with pytest.raises(TypeError, match="not Decimal"):
        from_datum(type(make_entry(1)), datum)
    assert issubclass(InvalidLedgerRecord, RejectedRecord)


def test_sink_settings_refuse_contradictions():
    with pytest.raises(ValueError):
        SinkSettings(batch_linger_ms=50, poll_ms=100)
    with pytest.raises(ValueError):
        SinkSettings(batch_rows_max=0)
    assert SinkSettings(schema_name="x").schema_name == "x"


def test_record_document_id_names_the_causing_document():
    from salesledger.sinks.records import LedgerRecord, Position

    ref = DocumentRef(type="payment", id="9", number="PAY-9", version=1)
    update = ReceivableUpdate(customer="C1", document="INV-1", accounting_date=dt.date(2026, 1, 1),
                              amount=Decimal("-10.00"), currency="AZN", by=ref, kind="payment")
    position = Position("sl.ledger.receivable-updates", 0, 0)
    assert LedgerRecord(position, update).document_id == "payment:PAY-9"
    assert LedgerRecord(position, make_entry(3)).document_id == "invoice:INV-3"
