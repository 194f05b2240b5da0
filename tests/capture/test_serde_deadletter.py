"""Dead-letter records (pure): CDC-14 poison pill between valid records; the record, its Avro
encoding and its Kafka headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from salesledger.streams.cdc import ChangeEvent, ChangeEventDecoder, MalformedEnvelope, decode_record
from salesledger.streams.deadletter import (
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    DeadLetter,
    RejectedRecord,
    build_dead_letter,
)
from salesledger.streams.serde import AvroSerde, SchemaCatalog

HANDMADE = Path(__file__).resolve().parents[1] / "fixtures" / "cdc" / "handmade"
SERDE = AvroSerde(SchemaCatalog.from_directory())


def _records():
    return json.loads((HANDMADE / "cdc01_precise_decimal.json").read_text())


def test_CDC_14_poison_pill_between_two_valid_records():
    first, middle, last = _records()
    poison = json.loads(middle["value"])
    poison["payload"]["after"]["amount"] = "abc"
    stream = [(first, first["value"].encode()), (middle, json.dumps(poison).encode()),
              (last, last["value"].encode())]
    decoder, events, dead = ChangeEventDecoder(), [], []
    for offset, (record, value) in enumerate(stream, start=100):
        out = decode_record(decoder, topic=record["topic"], partition=3, offset=offset,
                            key=record["key"].encode(), value=value)
        (events if isinstance(out, ChangeEvent) else dead).append(out)
    assert [e.after.money("amount") for e in events] == [_dec("0.10"), _dec("9999999999.99")]
    (letter,) = dead
    assert letter.reason == "malformed_envelope" and "not base64" in letter.message
    assert dict(letter.headers()) == {
        HEADER_SOURCE_TOPIC: b"sales.sales.invoice_lines", HEADER_SOURCE_PARTITION: b"3",
        HEADER_SOURCE_OFFSET: b"101", HEADER_REASON: b"malformed_envelope"}
    assert letter.value == stream[1][1] and letter.key == middle["key"].encode()
    assert letter.record_key == b"sales.sales.invoice_lines/3/101"


def test_CDC_14_unknown_schema_id_on_our_own_topic_is_a_typed_rejection():
    data = b"\x00\x00\x00\x03\xe7" + b"\x02\x04"
    with pytest.raises(RejectedRecord) as info:
        SERDE.decode(data, "sales_document")
    letter = build_dead_letter(info.value, topic="salesledger.documents", partition=0, offset=5,
                               key=b"invoice:INV-1", value=data, document_id="invoice:INV-1")
    assert letter.reason == "unknown_schema" and letter.record_key == b"invoice:INV-1"
    assert ("dlq.document.id", b"invoice:INV-1") in letter.headers()


def test_dead_letter_avro_round_trip():
    seen = datetime(2026, 11, 30, 5, 42, 40, 123000, tzinfo=UTC)
    letter = build_dead_letter(MalformedEnvelope("bad", document_id="invoice:7"),
                               topic="t", partition=1, offset=2, key=None, value=b"\xff\x00",
                               first_seen=seen)
    data = SERDE.encode("dead_letter", letter.to_avro())
    back = DeadLetter.from_avro(SERDE.decode(data, "dead_letter"))
    assert back == letter
    assert back.error_type == "MalformedEnvelope" and back.document_id == "invoice:7"


def test_dead_letter_from_bare_reason_and_bounds():
    letter = build_dead_letter("unknown_sku", message="SKU-9 " * 1000, topic="t", partition=0,
                               offset=0, key=None, value=None)
    assert letter.reason == "unknown_sku" and len(letter.message) == 2000
    assert letter.first_seen.tzinfo is not None and letter.error_type == ""
    with pytest.raises(AssertionError):
        build_dead_letter("Not A Code", topic="t", partition=0, offset=0, key=None, value=None)
    with pytest.raises(AssertionError):
        build_dead_letter(ValueError("bug"), topic="t", partition=0, offset=0,  # type: ignore[arg-type]
                          key=None, value=None)


def test_rejected_record_reason_override():
    error = RejectedRecord("x", reason="vat_rate_not_allowed", document_id="invoice:1")
    assert error.reason == "vat_rate_not_allowed" and str(error) == "vat_rate_not_allowed: x"
    assert RejectedRecord("y").reason == "rejected"


def _dec(text):
    from decimal import Decimal

    return Decimal(text)
