"""Decoding Debezium envelopes (pure): CDC-01, 02, 03, 05, 07, 21 on hand-written envelopes
built from Debezium's documented JsonConverter format (tests/fixtures/cdc/handmade/).
Envelopes captured from the running Debezium are tested in test_cdc_decode_captured.py."""

from __future__ import annotations

import base64
import io
import json
import struct
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import fastavro
import pytest

from salesledger.streams import cdc
from salesledger.streams.cdc import (
    UNAVAILABLE,
    ChangeEvent,
    ChangeEventDecoder,
    ConnectDecoder,
    Converter,
    ConverterMismatch,
    FloatMoney,
    Heartbeat,
    MalformedEnvelope,
    NaNAmount,
    NullAmount,
    Op,
    Row,
    Tombstone,
    TransactionEvent,
    UnavailableValue,
    Undecodable,
    UnknownLogicalType,
    decode_record,
)
from salesledger.streams.deadletter import DeadLetter, RejectedRecord

HANDMADE = Path(__file__).resolve().parents[1] / "fixtures" / "cdc" / "handmade"


def records(name: str) -> list[dict]:
    return json.loads((HANDMADE / name).read_text())


def raw(record: dict) -> tuple[bytes | None, bytes | None]:
    enc = lambda text: None if text is None else text.encode()  # noqa: E731
    return enc(record["key"]), enc(record["value"])


def decode(record: dict, decoder: ChangeEventDecoder | None = None):
    return (decoder or ChangeEventDecoder()).decode(*raw(record))


# ------------------------------------------------------------------------------------ CDC-01
def test_CDC_01_precise_decimal_is_exact():
    amounts = [decode(r).after.money("amount") for r in records("cdc01_precise_decimal.json")]
    assert amounts == [Decimal("0.10"), Decimal("-1.50"), Decimal("9999999999.99")]
    assert [str(a) for a in amounts] == ["0.10", "-1.50", "9999999999.99"]  # scale kept
    assert all(type(a) is Decimal for a in amounts)


def test_CDC_01_precise_decimal_other_columns_decode():
    event = decode(records("cdc01_precise_decimal.json")[0])
    row = event.after
    assert row.money("qty") == Decimal("1.000") and row.money("unit_price") == Decimal("0.10")
    assert row["line_date"] == date(2026, 11, 30)  # io.debezium.time.Date: days since epoch
    assert row["created_at"] == datetime(2026, 11, 30, 4, 0, 0, 123456)  # MicroTimestamp, naive
    assert row["updated_at"] == datetime(2026, 11, 30, 5, 42, 40, 123456, tzinfo=UTC)
    assert event.op is Op.CREATE and event.before is None
    assert event.source.lsn == 30000000 and event.source.tx_id == 701
    assert event.source.sequence == (29999992, 30000000)
    assert event.source.commit_time == datetime.fromtimestamp(1796011200, tz=UTC)
    assert event.table == "sales.invoice_lines" and not event.source.is_snapshot
    assert event.transaction.id == "701:30000000" and event.transaction.total_order == 1
    assert event.key == {"id": 1}


def test_CDC_01_float_amount_is_refused_not_rounded():
    (record,) = records("cdc01_double_mode.json")
    event = decode(record)
    assert event.after["amount"] == 0.1 and isinstance(event.after["amount"], float)
    with pytest.raises(FloatMoney) as info:
        event.after.money("amount")
    assert info.value.reason == "float_money"


def test_CDC_01_decimal_schema_with_a_json_number_is_refused():
    schema = {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
              "parameters": {"scale": "2"}}
    assert cdc.decode_connect_value(schema, "Cg==") == Decimal("0.10")
    with pytest.raises(FloatMoney):
        cdc.decode_connect_value(schema, 0.1)


def test_CDC_01_unknown_logical_type_fails_loudly():
    (record,) = records("unknown_logical_type.json")
    with pytest.raises(UnknownLogicalType, match="SomeFutureDuration"):
        decode(record)


def test_CDC_01_money_as_exact_text_and_garbage_text():
    row = Row({"a": "12.340", "b": "abc", "c": "NaN", "d": Decimal("Infinity")})
    assert str(row.money("a")) == "12.340"
    with pytest.raises(MalformedEnvelope):
        row.money("b")
    with pytest.raises(NaNAmount):
        row.money("c")
    with pytest.raises(NaNAmount):
        row.money("d")


# ------------------------------------------------------------------------------------ CDC-02
def test_CDC_02_variable_scale_rows_each_exact():
    amounts = [decode(r).after.money("amount") for r in records("cdc02_variable_scale.json")]
    assert [str(a) for a in amounts] == ["1.5", "1.50", "100"]
    assert decode(records("cdc02_variable_scale.json")[0]).after["method"] == "cash"  # Enum


def test_CDC_02_fixed_scale_reading_of_a_variable_scale_value_fails_loudly():
    # A VariableScaleDecimal whose struct lost its scale is not decoded as anything.
    schema = {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "fields": [
        {"type": "int32", "field": "scale"}, {"type": "bytes", "field": "value"}]}
    with pytest.raises(MalformedEnvelope):
        cdc.decode_connect_value(schema, {"value": "Dw=="})
    # Without the logical name, the struct stays a struct: money() refuses it, never drops.
    plain = dict(schema, name="some.Struct")
    row = Row({"amount": cdc.decode_connect_value(plain, {"scale": 1, "value": "Dw=="})})
    with pytest.raises(MalformedEnvelope):
        row.money("amount")


def test_CDC_02_negative_and_large_variable_scale():
    schema = {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "fields": [
        {"type": "int32", "field": "scale"}, {"type": "bytes", "field": "value"}]}
    big = -(10**30) - 7
    payload = {"scale": 5, "value": base64.b64encode(big.to_bytes(14, "big", signed=True)).decode()}
    assert cdc.decode_connect_value(schema, payload) == Decimal(big).scaleb(-5)


# ------------------------------------------------------------------------------------ CDC-03
def test_CDC_03_nan_and_null_amounts_raise_typed_errors():
    nan_payment, null_price = (decode(r) for r in records("cdc03_nan_and_null.json"))
    with pytest.raises(NullAmount) as info:
        nan_payment.after.money("amount")
    assert info.value.reason == "null_amount"
    with pytest.raises(NullAmount):
        null_price.after.money("unit_price")
    assert null_price.after.money("amount") == Decimal("5.00")  # the row itself decodes


def test_CDC_03_processor_loop_dead_letters_and_keeps_running():
    """The shape of the processor: decode, read the amount, dead-letter a RejectedRecord and go
    on. Neither null amount posts a zero; the valid rows after them are processed."""
    stream = (records("cdc01_precise_decimal.json")[:1] + records("cdc03_nan_and_null.json")
              + records("cdc02_variable_scale.json"))
    decoder, posted, dead = ChangeEventDecoder(), [], []
    for r in stream:
        key, value = raw(r)
        event = decode_record(decoder, topic=r["topic"], partition=r["partition"],
                              offset=r["offset"], key=key, value=value)
        try:
            assert isinstance(event, ChangeEvent)
            row = event.after
            posted.append(row.money("amount") if "unit_price" not in row
                          else (row.money("unit_price"), row.money("amount")))
        except RejectedRecord as error:
            dead.append(cdc.build_dead_letter(error, topic=r["topic"], partition=r["partition"],
                                              offset=r["offset"], key=key, value=value))
    assert [d.reason for d in dead] == ["null_amount", "null_amount"]
    assert [d.source_topic for d in dead] == ["sales.sales.payments", "sales.sales.invoice_lines"]
    assert dead[0].value == raw(records("cdc03_nan_and_null.json")[0])[1]  # bytes untouched
    assert posted == [(Decimal("0.10"), Decimal("0.10")), Decimal("1.5"), Decimal("1.50"),
                      Decimal("100")]
    assert Decimal(0) not in posted


# ------------------------------------------------------------------------------------ CDC-05
def test_CDC_05_placeholder_is_an_unavailable_sentinel_not_data():
    (record,) = records("cdc05_unavailable_toast.json")
    event = decode(record)
    row = event.after
    assert row["note"] is UNAVAILABLE and row.is_unavailable("note")
    assert row.unavailable_fields == frozenset({"note"})
    assert row.money("amount") == Decimal("12.34")  # amounts do not depend on it
    with pytest.raises(UnavailableValue) as info:
        row.value("note")
    assert info.value.reason == "unavailable_value"
    assert UNAVAILABLE != cdc.UNAVAILABLE_PLACEHOLDER and UNAVAILABLE != ""
    for use in (bool, str, int, len, lambda v: f"{v}", lambda v: v + "x", lambda v: v < 1):
        with pytest.raises(TypeError):
            use(UNAVAILABLE)


def test_CDC_05_resolve_from_previous_image():
    (record,) = records("cdc05_unavailable_toast.json")
    row = decode(record).after
    previous = {"note": "a long note " * 1000}
    resolved = row.resolve_unavailable(previous)
    assert resolved["note"] == previous["note"] and not resolved.unavailable_fields
    with pytest.raises(UnavailableValue):
        row.resolve_unavailable(None)
    with pytest.raises(UnavailableValue):
        row.resolve_unavailable({"note": UNAVAILABLE})


def test_CDC_05_unavailable_bytes_and_decimal_placeholders():
    placeholder_b64 = base64.b64encode(cdc.UNAVAILABLE_PLACEHOLDER.encode()).decode()
    assert cdc.decode_connect_value({"type": "bytes"}, placeholder_b64) is UNAVAILABLE
    dec = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
           "parameters": {"scale": "2"}}
    assert cdc.decode_connect_value(dec, placeholder_b64) is UNAVAILABLE
    arr = {"type": "array", "items": {"type": "int32"}}
    assert cdc.decode_connect_value(arr, [cdc.UNAVAILABLE_PLACEHOLDER]) is UNAVAILABLE


# ------------------------------------------------------------------------------------ CDC-07
def _apply(state: dict, event) -> dict:
    """A tiny keyed state fold: what a processor keeps per row."""
    if isinstance(event, Tombstone):
        return state
    out = dict(state)
    if event.op is Op.DELETE:
        out.pop(event.before["id"], None)
    else:
        out[event.after["id"]] = event.after
    return out


def test_CDC_07_delete_then_tombstone_is_skipped_without_error():
    delete, tombstone = records("cdc07_delete_tombstone.json")
    event = decode(delete)
    assert event.op is Op.DELETE and event.after is None
    assert event.before.money("amount") == Decimal("7.00") and event.row is event.before
    skipped = decode(tombstone)
    assert skipped == Tombstone(key={"id": 7})
    start = {7: event.before}
    with_tombstone = _apply(_apply(start, event), skipped)
    without_tombstone = _apply(start, event)
    assert with_tombstone == without_tombstone == {}


def test_CDC_07_tombstone_never_becomes_a_dead_letter():
    _, tombstone = records("cdc07_delete_tombstone.json")
    key, value = raw(tombstone)
    out = decode_record(ChangeEventDecoder(), topic="t", partition=0, offset=1, key=key, value=value)
    assert isinstance(out, Tombstone)


# ------------------------------------------------------------------------------------ CDC-21
def _confluent_avro_envelope() -> tuple[bytes, dict]:
    """An envelope as Confluent's AvroConverter writes it: connect.name annotations."""
    value = {"type": "record", "name": "Value", "namespace": "sales.sales.payments", "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": ["null", {
            "type": "bytes", "scale": 2, "precision": 12, "connect.version": 1,
            "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
            "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"}],
         "default": None},
        {"name": "paid_on", "type": ["null", {"type": "int", "connect.version": 1,
                                              "connect.name": "io.debezium.time.Date"}],
         "default": None}]}
    source = {"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
              "fields": [{"name": "connector", "type": "string"}, {"name": "name", "type": "string"},
                         {"name": "ts_ms", "type": "long"}, {"name": "db", "type": "string"},
                         {"name": "schema", "type": "string"}, {"name": "table", "type": "string"},
                         {"name": "txId", "type": ["null", "long"]},
                         {"name": "lsn", "type": ["null", "long"]}],
              "connect.name": "io.debezium.connector.postgresql.Source"}
    envelope = {"type": "record", "name": "Envelope", "namespace": "sales.sales.payments",
                "fields": [{"name": "before", "type": ["null", value], "default": None},
                           {"name": "after", "type": ["null", "Value"], "default": None},
                           {"name": "source", "type": source},
                           {"name": "op", "type": "string"},
                           {"name": "ts_ms", "type": ["null", "long"], "default": None}],
                "connect.name": "sales.sales.payments.Envelope"}
    datum = {"before": None, "after": {"id": 5, "amount": Decimal("80.00"), "paid_on": 20000},
             "source": {"connector": "postgresql", "name": "sales", "ts_ms": 1, "db": "sales",
                        "schema": "sales", "table": "payments", "txId": 9, "lsn": 42},
             "op": "c", "ts_ms": 2}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(envelope), datum)
    return b"\x00" + struct.pack(">I", 17) + body.getvalue(), envelope


def _cdc21_inputs() -> dict[str, bytes | None]:
    avro, _ = _confluent_avro_envelope()
    _, json_with_schema = raw(records("cdc01_precise_decimal.json")[0])
    plain = json.dumps(json.loads(json_with_schema)["payload"]).encode()
    return {"a": avro, "b": json_with_schema, "c": plain, "d": None, "e": b"\x8f\x01\xfe"}


def test_CDC_21_json_schema_value_decoder_against_each_format():
    inputs, decoder = _cdc21_inputs(), ChangeEventDecoder()
    key = b'{"schema":null,"payload":{"id":1}}'
    with pytest.raises(ConverterMismatch, match="converter mismatch.*Confluent-framed Avro.*id 17"):
        decoder.decode(key, inputs["a"])
    assert decoder.decode(key, inputs["b"]).after.money("amount") == Decimal("0.10")
    with pytest.raises(ConverterMismatch, match="plain JSON without a schema"):
        decoder.decode(key, inputs["c"])
    assert isinstance(decoder.decode(key, inputs["d"]), Tombstone)
    with pytest.raises(Undecodable, match="3 bytes that are neither JSON nor framed Avro"):
        decoder.decode(key, inputs["e"])


def test_CDC_21_routing_decoded_skipped_or_dead_lettered():
    inputs, decoder = _cdc21_inputs(), ChangeEventDecoder()
    outcome = {}
    for name, value in inputs.items():
        out = decode_record(decoder, topic="sales.sales.invoice_lines", partition=2, offset=40,
                            key=None, value=value)
        outcome[name] = out.reason if isinstance(out, DeadLetter) else type(out).__name__
        if isinstance(out, DeadLetter):
            assert out.value == value and out.source_partition == 2 and out.source_offset == 40
            assert "converter mismatch" in out.message or out.reason == "undecodable"
    assert outcome == {"a": "converter_mismatch", "b": "ChangeEvent", "c": "converter_mismatch",
                       "d": "Tombstone", "e": "undecodable"}


def test_CDC_21_key_and_value_decoders_are_configured_separately():
    _, value = raw(records("cdc01_precise_decimal.json")[0])
    plain_key = b'{"id": 1}'
    mixed = ChangeEventDecoder(key_converter=Converter.JSON, value_converter=Converter.JSON_SCHEMA)
    assert mixed.decode(plain_key, value).key == {"id": 1}
    with pytest.raises(ConverterMismatch, match="plain JSON"):
        ChangeEventDecoder().decode(plain_key, value)  # default key side expects schemas
    enveloped_key = b'{"schema":{"type":"struct","fields":[{"type":"int64","field":"id"}]},' \
                    b'"payload":{"id":1}}'
    with pytest.raises(ConverterMismatch, match="schema/payload envelope"):
        mixed.decode(enveloped_key, value)
    with pytest.raises(ValueError, match="must carry schemas"):
        ChangeEventDecoder(value_converter=Converter.JSON)


def test_CDC_21_avro_confluent_decoder_decodes_and_refuses_json():
    inputs = _cdc21_inputs()
    avro, schema = _confluent_avro_envelope()
    lookup = {17: schema}.__getitem__
    decoder = ChangeEventDecoder(key_converter=Converter.JSON,
                                 value_converter=Converter.AVRO_CONFLUENT, schema_lookup=lookup)
    event = decoder.decode(None, avro)
    assert event.after.money("amount") == Decimal("80.00")
    assert event.after["paid_on"] == date(1970, 1, 1) + timedelta(days=20000)
    assert event.source.lsn == 42 and event.op is Op.CREATE
    with pytest.raises(ConverterMismatch, match="JSON with a schema/payload envelope"):
        decoder.decode(None, inputs["b"])
    unknown = b"\x00" + struct.pack(">I", 99) + avro[5:]
    with pytest.raises(RejectedRecord) as info:
        decoder.decode(None, unknown)
    assert info.value.reason == "unknown_schema"
    assert isinstance(decoder.decode(None, None), Tombstone)


def test_CDC_21_value_side_connect_decoder_alone():
    values = ConnectDecoder(Converter.JSON_SCHEMA)
    assert values.decode(None) is None and values.decode(b"null") is None
    with pytest.raises(MalformedEnvelope):
        values.decode(b'{"schema":{"no":"type"},"payload":1}')


# ------------------------------------------------------------------- envelope kinds, errors
def test_transaction_metadata_events():
    begin, end, empty_end = (decode(r) for r in records("transaction_metadata.json"))
    assert begin == TransactionEvent(status="BEGIN", id="770:30007000", ts_ms=1796011900000)
    assert end.status == "END" and end.event_count == 4 and end.tx_id == 770
    assert end.data_collections == (("sales.invoices", 1), ("sales.invoice_lines", 3))
    assert empty_end.event_count == 0 and empty_end.data_collections == ()


def test_heartbeat_and_snapshot_read():
    (hb,) = records("heartbeat.json")
    assert decode(hb) == Heartbeat(ts_ms=1796012000000, server_name="sales")
    (snap,) = records("snapshot_read.json")
    event = decode(snap)
    assert event.op is Op.READ and event.source.is_snapshot and event.transaction is None


def test_malformed_envelopes_are_typed():
    (record,) = records("snapshot_read.json")
    value = json.loads(record["value"])
    value["payload"]["op"] = "x"
    with pytest.raises(MalformedEnvelope, match="unknown op"):
        ChangeEventDecoder().decode(None, json.dumps(value).encode())
    value["payload"]["op"] = "c"
    value["payload"]["after"] = None
    with pytest.raises(MalformedEnvelope, match="without an after image"):
        ChangeEventDecoder().decode(None, json.dumps(value).encode())
    value = json.loads(record["value"])
    value["payload"]["after"]["amount"] = "abc"  # CDC-14 poison: not base64 of a decimal
    with pytest.raises(MalformedEnvelope, match="not base64"):
        ChangeEventDecoder().decode(None, json.dumps(value).encode())
    value = json.loads(record["value"])
    value["payload"]["after"]["id"] = "seven"
    with pytest.raises(MalformedEnvelope, match="expected int64"):
        ChangeEventDecoder().decode(None, json.dumps(value).encode())


def test_time_logical_types():
    def dv(name, kind, value):
        return cdc.decode_connect_value({"type": kind, "name": name}, value)

    assert dv("io.debezium.time.MicroTime", "int64", 3_723_000_001) == time(1, 2, 3, 1)
    assert dv("io.debezium.time.Time", "int32", 3_723_000) == time(1, 2, 3)
    assert dv("io.debezium.time.NanoTimestamp", "int64", 1_500) == datetime(1970, 1, 1, 0, 0, 0, 1)
    assert dv("io.debezium.time.Timestamp", "int64", -1000) == datetime(1969, 12, 31, 23, 59, 59)
    assert dv("org.apache.kafka.connect.data.Date", "int32", -1) == date(1969, 12, 31)
    assert dv("io.debezium.time.MicroDuration", "int64", 90_000_000) == timedelta(seconds=90)
    zoned = dv("io.debezium.time.ZonedTimestamp", "string", "2026-03-01T10:00:00+04:00")
    assert zoned.utcoffset() == timedelta(hours=4)
    assert dv("io.debezium.data.Uuid", "string", "a-b") == "a-b"


def test_compiled_fast_path_equals_full_parse():
    """Compact JsonConverter bytes take the cached split path; the same record pretty-printed
    takes the full parse; both decode to the same event."""
    decoder = ChangeEventDecoder()
    for name in ("cdc01_precise_decimal.json", "cdc05_unavailable_toast.json",
                 "transaction_metadata.json", "cdc07_delete_tombstone.json"):
        for record in records(name):
            key, value = raw(record)
            if value is None:
                continue
            pretty = json.dumps(json.loads(value), indent=1).encode()
            assert decoder.decode(key, value) == decoder.decode(key, pretty)
    # a schema whose text contains the split marker inside a string still decodes right
    tricky = {"schema": {"type": "struct", "name": "x.Value", "doc": ',"payload":{',
                         "fields": [{"type": "string", "optional": True, "field": "note",
                                     "default": ',"payload":'}]},
              "payload": {"note": "a"}}
    data = json.dumps(tricky, separators=(",", ":")).encode()
    assert ConnectDecoder(Converter.JSON_SCHEMA).decode(data).payload == {"note": "a"}
    tricky["schema"]["fields"][0]["parameters"] = {"a": "1", "payload": "2"}  # unescaped marker
    data = json.dumps(tricky, separators=(",", ":")).encode()
    assert b',"payload":"2"' in data
    assert ConnectDecoder(Converter.JSON_SCHEMA).decode(data).payload == {"note": "a"}
