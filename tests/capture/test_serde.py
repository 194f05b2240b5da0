"""The Avro serde (pure): framing, CDC-04 (decimal precision on the way out), CDC-22 (older
writer, newer reader), exact decimal round trips (hypothesis)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import io
import json
import struct
from decimal import Decimal
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesledger.ledger import model as m
from salesledger.resources import resource_path
from salesledger.streams.cdc import UNAVAILABLE, ConverterMismatch, Undecodable
from salesledger.streams.serde import (
    SINGLE_OBJECT_MAGIC,
    AvroSerde,
    DecimalOutOfRange,
    SchemaCatalog,
    SchemaVersion,
    UnknownSchema,
    check_decimal,
    fingerprint64,
    quantize_amount,
)

SERDE = AvroSerde(SchemaCatalog.from_directory())
UTC = dt.UTC


def entry(*, debit=Decimal("11.80"), vat=Decimal("1.80"), rate=None) -> m.JournalEntry:
    ref = m.DocumentRef(type="invoice", id="17", number="INV-17", version=3,
                        source=m.SourcePosition(lsn=30000000, tx_id=701,
                                                commit_time=dt.datetime(2026, 1, 2, 9, tzinfo=UTC)))
    return m.JournalEntry(
        entry_id=m.entry_id_for("invoice", "17", 3, "sale.revenue"), rule="sale.revenue",
        kind="revenue", accounting_date=dt.date(2026, 1, 2), document=ref,
        lines=(m.JournalLine(account="211", debit=debit, credit=Decimal("0"), currency="AZN",
                             customer="C1", open_item="INV-17"),
               m.JournalLine(account="601", debit=Decimal("0"), credit=debit - vat, currency="AZN"),
               m.JournalLine(account="521", debit=Decimal("0"), credit=vat, currency="AZN")),
        exchange_rate=rate, original_currency="USD" if rate else None)


def test_fingerprint_is_the_avro_specification_value():
    # Avro's share/test/data/schema-tests.txt: CRC-64-AVRO of "null" is 7195948357588979594.
    assert fingerprint64("null") == 7195948357588979594


def test_single_object_encoding_frame():
    data = SERDE.encode("journal_entry", dataclasses.asdict(entry()))
    writer = SERDE.catalog.latest("journal_entry")
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert struct.unpack("<Q", data[2:10])[0] == writer.fingerprint
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer.parsed, None)
    assert body["entry_id"] == entry().entry_id


def test_journal_entry_round_trip_exact():
    original = entry(rate=Decimal("1.700000"))
    decoded = SERDE.decode(SERDE.encode("salesledger.JournalEntry", dataclasses.asdict(original)),
                           "journal_entry")
    assert [(ln["account"], ln["debit"], ln["credit"]) for ln in decoded["lines"]] == [
        ("211", Decimal("11.80"), Decimal("0.00")), ("601", Decimal("0.00"), Decimal("10.00")),
        ("521", Decimal("0.00"), Decimal("1.80"))]
    assert decoded["exchange_rate"] == Decimal("1.700000")
    assert decoded["document"]["source"]["commit_time"] == dt.datetime(2026, 1, 2, 9, tzinfo=UTC)
    assert decoded["accounting_date"] == dt.date(2026, 1, 2)


def test_decode_refuses_other_formats_and_unknown_fingerprints():
    data = SERDE.encode("journal_entry", dataclasses.asdict(entry()))
    with pytest.raises(UnknownSchema) as info:
        SERDE.decode(SINGLE_OBJECT_MAGIC + b"\x00" * 8 + data[10:])
    assert info.value.reason == "unknown_schema"
    with pytest.raises(UnknownSchema, match="no registry"):
        SERDE.decode(b"\x00\x00\x00\x00\x07" + data[10:])
    with pytest.raises(ConverterMismatch, match="JSON"):
        SERDE.decode(b'{"schema": {}, "payload": {}}')
    with pytest.raises(Undecodable):
        SERDE.decode(b"\x8f\x01\xfe")
    with pytest.raises(ConverterMismatch, match="expected dead_letter"):
        SERDE.decode(data, "dead_letter")
    with pytest.raises(Undecodable):
        SERDE.decode(data[:14])  # truncated body
    assert SERDE.decode(None) is None


def test_model_output_records_encode():
    ref = entry().document
    movement = m.StockMovement(movement_id="mv1", kind="issue", accounting_date=dt.date(2026, 1, 2),
                               document=ref, sku="SKU-1", warehouse="W1", qty=Decimal("-2.5"),
                               value=Decimal("-7.13"), currency="AZN")
    update = m.ReceivableUpdate(customer="C1", document="INV-17", accounting_date=dt.date(2026, 1, 2),
                                amount=Decimal("11.8"), currency="AZN", by=ref, kind="revenue",
                                due_date=dt.date(2026, 2, 1))
    mv = SERDE.decode(SERDE.encode("stock_movement", dataclasses.asdict(movement)))
    assert mv["qty"] == Decimal("-2.5000") and str(mv["value"]) == "-7.13"
    ru = SERDE.decode(SERDE.encode("receivable_update", dataclasses.asdict(update)))
    assert str(ru["amount"]) == "11.80" and ru["is_advance"] is False


def test_sales_document_event_round_trip():
    datum = {
        "document_type": "invoice", "document_id": "17", "number": "INV-17",
        "operation": "created", "version": {"commit_lsn": 30000008, "event_index": 4},
        "source": {"lsn": 30000000, "tx_id": 701, "commit_time": dt.datetime(2026, 1, 2, tzinfo=UTC)},
        "status": "active", "date": dt.date(2026, 1, 2), "currency": "AZN", "branch": "B1",
        "entered_at": None,
        "body": {"customer": "C1", "warehouse": "W1", "payment_terms_days": 30,
                 "prices_include_vat": False,
                 "lines": [{"line_no": 1, "sku": "SKU-1", "qty": Decimal("1.5"),
                            "unit_price": Decimal("10.1234"), "vat_rate": Decimal("18"),
                            "discount_percent": Decimal("0")}]},
    }
    out = SERDE.decode(SERDE.encode("sales_document", datum))
    line = out["body"]["lines"][0]
    assert line["qty"] == Decimal("1.5000") and line["unit_price"] == Decimal("10.1234")
    assert out["body"]["payment_terms_days"] == 30 and out["version"]["event_index"] == 4
    payment = dict(datum, document_type="payment", body={
        "customer": "C1", "method": "vat_deposit", "amount": Decimal("5.00"),
        "allocations": [{"document": "INV-17", "amount": Decimal("5")}]})
    assert SERDE.decode(SERDE.encode("sales_document", payment))["body"]["allocations"][0][
        "amount"] == Decimal("5.00")
    deleted = dict(datum, operation="deleted", status="deleted", body=None)
    assert SERDE.decode(SERDE.encode("sales_document", deleted))["body"] is None
    bad = copy.deepcopy(datum)
    bad["body"]["lines"][0]["unit_price"] = Decimal("10.12345")
    with pytest.raises(DecimalOutOfRange, match=r"body.lines\[0\].unit_price"):
        SERDE.encode("sales_document", bad)


# ------------------------------------------------------------------------------------ CDC-04
def test_CDC_04_extra_fractional_digit_is_refused_before_producing():
    with pytest.raises(DecimalOutOfRange, match="more than 2 fractional digits") as info:
        SERDE.encode("journal_entry", dataclasses.asdict(entry(debit=Decimal("0.105"),
                                                                vat=Decimal("0"))))
    assert info.value.reason == "decimal_out_of_range"
    # quantising explicitly with the documented rule (ROUND_HALF_UP to 0.01) is the way through
    fixed = quantize_amount(Decimal("0.105"))
    assert fixed == Decimal("0.11")
    data = SERDE.encode("journal_entry", dataclasses.asdict(entry(debit=fixed, vat=Decimal("0"))))
    assert SERDE.decode(data)["lines"][0]["debit"] == Decimal("0.11")


def test_CDC_04_too_many_integer_digits_is_refused_where_fastavro_is_not():
    too_big = Decimal("12345678901234567")  # 17 integer digits; decimal(18,2) holds 16
    as_dict = dataclasses.asdict(entry(debit=too_big, vat=Decimal("0")))
    with pytest.raises(DecimalOutOfRange, match="needs 19 digits"):
        SERDE.encode("journal_entry", as_dict)
    # fastavro alone accepts it (it counts the digits before scaling): we must check ourselves.
    writer = SERDE.catalog.latest("journal_entry")
    fastavro.schemaless_writer(io.BytesIO(), writer.parsed, as_dict)
    largest = Decimal("9999999999999999.99")
    assert check_decimal(largest, 18, 2) == largest
    with pytest.raises(DecimalOutOfRange):
        check_decimal(largest + Decimal("0.01"), 18, 2)


def test_CDC_04_non_decimal_and_non_finite_amounts_are_refused():
    for bad in (0.1, 1, Decimal("NaN"), Decimal("Infinity"), "1.00", UNAVAILABLE):
        with pytest.raises(DecimalOutOfRange):
            check_decimal(bad, 18, 2)
    assert str(check_decimal(Decimal("0.100"), 18, 2)) == "0.10"  # exact: trailing zero only
    assert str(check_decimal(Decimal("1E+2"), 18, 2)) == "100.00"
    assert str(check_decimal(Decimal("0E+5"), 18, 2)) == "0.00"
    assert str(check_decimal(Decimal("-0.000"), 18, 2)) == "-0.00"
    for extreme in (Decimal("1E+100"), Decimal("1E-100"), Decimal("1E+999999999")):
        with pytest.raises(DecimalOutOfRange):
            check_decimal(extreme, 18, 2)


def test_CDC_04_quantize_rounding_rule():
    assert quantize_amount(Decimal("2.675")) == Decimal("2.68")  # half up, not half even
    assert quantize_amount(Decimal("-2.675")) == Decimal("-2.68")
    assert quantize_amount(Decimal("1.23456"), scale=4) == Decimal("1.2346")


# ------------------------------------------------------------------------------------ CDC-22
def _evolved_catalog(tmp_path: Path) -> SchemaCatalog:
    """journal_entry v1 as shipped, and a v2 that adds fields with defaults."""
    v1 = json.loads((resource_path("schemas") / "journal_entry.v1.avsc").read_text())
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "memo", "type": "string", "default": "", "doc": "Free text."})
    v2["fields"].append({"name": "fx_gain", "type": {"type": "bytes", "logicalType": "decimal",
                                                     "precision": 18, "scale": 2},
                         "default": "\u0000", "doc": "Exchange difference, scale 2."})
    line = v2["fields"][5]["type"]["items"]
    assert line["name"] == "JournalLine"
    line["fields"].append({"name": "project", "type": ["null", "string"], "default": None})
    (tmp_path / "journal_entry.v1.avsc").write_text(json.dumps(v1))
    (tmp_path / "journal_entry.v2.avsc").write_text(json.dumps(v2))
    return SchemaCatalog.from_directory(tmp_path)


def test_CDC_22_old_writer_new_reader_defaults_and_exact_amounts(tmp_path):
    catalog = _evolved_catalog(tmp_path)
    serde = AvroSerde(catalog)
    v1, v2 = catalog.versions("journal_entry")
    old_bytes = serde.encode_with(v1, dataclasses.asdict(entry(debit=Decimal("0.10"),
                                                               vat=Decimal("0.02"))))
    assert struct.unpack("<Q", old_bytes[2:10])[0] == v1.fingerprint != v2.fingerprint
    decoded = serde.decode(old_bytes, "journal_entry")
    assert decoded["memo"] == "" and decoded["fx_gain"] == Decimal("0.00")
    assert [ln["project"] for ln in decoded["lines"]] == [None, None, None]
    assert [(ln["debit"], ln["credit"]) for ln in decoded["lines"]] == [
        (Decimal("0.10"), Decimal("0.00")), (Decimal("0.00"), Decimal("0.08")),
        (Decimal("0.00"), Decimal("0.02"))]
    new_bytes = serde.encode("journal_entry", {**decoded, "memo": "late", "fx_gain": Decimal("1.5")})
    assert struct.unpack("<Q", new_bytes[2:10])[0] == v2.fingerprint
    assert serde.decode(new_bytes)["fx_gain"] == Decimal("1.50")


def test_CDC_22_confluent_framing_with_a_registry(tmp_path):
    class DictRegistry:  # the RegistryClient protocol over a dict (ids as a registry assigns)
        def __init__(self):
            self.schemas: dict[int, dict] = {}

        def register(self, subject, schema):
            for sid, known in self.schemas.items():
                if fingerprint64(known) == fingerprint64(schema):
                    return sid
            self.schemas[len(self.schemas) + 1] = dict(schema)
            return len(self.schemas)

        def schema_by_id(self, schema_id):
            return self.schemas[schema_id]

    catalog = _evolved_catalog(tmp_path)
    serde = AvroSerde(catalog, registry=DictRegistry())
    v1, _ = catalog.versions("journal_entry")
    data = serde.encode_with(v1, dataclasses.asdict(entry()))
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == 1
    assert serde.decode(data)["memo"] == ""
    with pytest.raises(UnknownSchema):
        serde.decode(b"\x00" + struct.pack(">I", 9) + data[5:])


# ------------------------------------------------------------------------------ properties
money = st.decimals(min_value=Decimal("-9999999999999999.99"),
                    max_value=Decimal("9999999999999999.99"), places=2,
                    allow_nan=False, allow_infinity=False)
quantity = st.decimals(min_value=Decimal("-99999999999999.9999"),
                       max_value=Decimal("99999999999999.9999"), places=4,
                       allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(debit=money, vat=money, rate=st.none() | st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("999999999999.999999"), places=6))
def test_property_journal_amounts_round_trip_exactly(debit, vat, rate):
    record = dataclasses.asdict(entry(debit=debit, vat=vat, rate=rate))
    record["lines"][1]["credit"] = debit  # keep every amount within range
    decoded = SERDE.decode(SERDE.encode("journal_entry", record))
    assert decoded["lines"][0]["debit"] == debit and decoded["lines"][2]["credit"] == vat
    assert decoded["lines"][0]["debit"].as_tuple().exponent == -2
    assert decoded["exchange_rate"] == rate


@settings(max_examples=300, deadline=None)
@given(qty=quantity, value=money)
def test_property_stock_quantities_round_trip_exactly(qty, value):
    movement = m.StockMovement(movement_id="x", kind="issue", accounting_date=dt.date(2026, 1, 1),
                               document=entry().document, sku="S", warehouse="W", qty=qty,
                               value=value, currency="AZN")
    decoded = SERDE.decode(SERDE.encode("stock_movement", dataclasses.asdict(movement)))
    assert (decoded["qty"], decoded["value"]) == (qty, value)


@settings(max_examples=300, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e20"),
                   max_value=Decimal("1e20")))
def test_property_check_decimal_accepts_exactly_what_fits(value):
    fits = value == quantize_amount(value) and abs(value) < Decimal("1e16")
    if fits:
        assert check_decimal(value, 18, 2) == value
    else:
        with pytest.raises(DecimalOutOfRange):
            check_decimal(value, 18, 2)


def test_schema_version_from_schema_copies_input():
    schema = {"type": "record", "name": "X", "namespace": "salesledger", "fields": []}
    version = SchemaVersion.from_schema("x", 1, schema)
    schema["fields"].append({"name": "y", "type": "int"})
    assert version.schema["fields"] == [] and version.full_name == "salesledger.X"


def test_serde_for_registry_url_chooses_the_framing():
    assert AvroSerde.for_registry_url(None).registry is None
    assert AvroSerde.for_registry_url("").registry is None
    with_registry = AvroSerde.for_registry_url("http://127.0.0.1:1/apis/ccompat/v7")
    assert with_registry.registry.base_url == "http://127.0.0.1:1/apis/ccompat/v7"
    # a registry-configured reader still reads single-object records (no registry call)
    data = SERDE.encode("journal_entry", dataclasses.asdict(entry()))
    assert with_registry.decode(data)["entry_id"] == entry().entry_id


# ------------------------------------------------------------------------------ for_settings
class CountingRegistry:
    """The RegistryClient protocol over a dict, counting calls (ids as a registry assigns)."""

    def __init__(self):
        self.schemas: dict[int, dict] = {}
        self.calls = {"register": 0, "schema_by_id": 0}

    def register(self, subject, schema):
        self.calls["register"] += 1
        for sid, known in self.schemas.items():
            if fingerprint64(known) == fingerprint64(schema):
                return sid
        self.schemas[len(self.schemas) + 1] = dict(schema)
        return len(self.schemas)

    def schema_by_id(self, schema_id):
        self.calls["schema_by_id"] += 1
        return self.schemas[schema_id]


def test_one_serde_decodes_both_framings_and_talks_to_the_registry_once_per_version():
    registry = CountingRegistry()
    confluent = AvroSerde(registry=registry)
    confluent.register_catalog()
    registered = registry.calls["register"]
    assert registered == len(confluent.catalog.subjects)  # the latest version of each
    datum = dataclasses.asdict(entry())
    framed = [confluent.encode("journal_entry", datum) for _ in range(50)]
    single = SERDE.encode("journal_entry", datum)
    assert all(f[:1] == b"\x00" and f[5:] == single[10:] for f in framed)  # same Avro body
    assert registry.schemas[struct.unpack(">I", framed[0][1:5])[0]]["name"] == "JournalEntry"
    for data in (*framed, single):
        assert confluent.decode(data, "journal_entry") == SERDE.decode(single)
    assert registry.calls == {"register": registered, "schema_by_id": 0}  # all from the cache
    # another process's reader: one lookup per id, then the cache
    reader = AvroSerde(registry=registry)
    for data in framed:
        assert reader.decode(data)["entry_id"] == entry().entry_id
    assert registry.calls["schema_by_id"] == 1


def test_unknown_schema_id_is_an_unknown_schema_decode_error():
    serde = AvroSerde(registry=CountingRegistry())
    data = serde.encode("journal_entry", dataclasses.asdict(entry()))
    bogus = b"\x00" + struct.pack(">I", 4242) + data[5:]
    with pytest.raises(UnknownSchema, match="unknown schema id 4242") as info:
        serde.decode(bogus)
    assert info.value.reason == "unknown_schema"  # a RejectedRecord: dead-lettered (CDC-14)


def test_CDC_14_unknown_schema_id_on_the_documents_topic_is_dead_lettered():
    from tests.pipeline.test_posting_step import LoggedTable, encoded, processor, receipt

    serde = AvroSerde(registry=CountingRegistry())
    posting = processor(LoggedTable())
    posting.serde = serde
    good = serde.encode("sales_document", SERDE.decode(encoded(receipt("GR-U1", "1", "2.00"), 100)))
    bogus = b"\x00" + struct.pack(">I", 999) + good[5:]
    out = posting.process(0, b"goods_receipt:GR-U0", bogus)
    assert [(o.topic, dict(o.headers).get("dlq.reason")) for o in out] == [
        ("dlq", b"unknown_schema")]
    out = posting.process(1, b"goods_receipt:GR-U1", good)
    assert "dlq" not in {o.topic for o in out} and any(o.topic == "ledger.journal-entries"
                                                       for o in out)


def _settings(mode: str, port: int):
    from salesledger.config import Settings

    return Settings(profile="test", serde=mode, registry_port=port)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_for_settings_single_object_never_contacts_the_registry():
    serde = AvroSerde.for_settings(_settings("single-object", _closed_port()))
    assert serde.framing == "single-object" and serde.registry is None
    assert serde.encode("journal_entry", dataclasses.asdict(entry()))[:2] == SINGLE_OBJECT_MAGIC


def test_for_settings_registry_down_at_start_fails_loudly_in_registry_mode():
    from salesledger.streams.serde import RegistryUnavailable

    with pytest.raises(RegistryUnavailable, match="SALESLEDGER_SERDE=registry"):
        AvroSerde.for_settings(_settings("registry", _closed_port()))


def test_for_settings_registry_down_at_start_falls_back_in_auto_mode(caplog):
    from salesledger.streams.serde import RegistryUnavailable

    port = _closed_port()
    with caplog.at_level("WARNING"):
        serde = AvroSerde.for_settings(_settings("auto", port))
    assert serde.framing == "single-object" and "falls back" in caplog.text
    data = serde.encode("journal_entry", dataclasses.asdict(entry()))
    assert data[:2] == SINGLE_OBJECT_MAGIC and serde.decode(data)["entry_id"] == entry().entry_id
    # a Confluent-framed record still needs the registry: an operating error, not a dead letter
    with pytest.raises(RegistryUnavailable):
        serde.decode(b"\x00" + struct.pack(">I", 1) + data[10:])
    assert AvroSerde.for_settings(_settings("auto", port)) is serde  # one per process


def test_check_decimal_fast_path_keeps_the_value_and_the_slow_path_rescales():
    exact = Decimal("12.50")
    assert check_decimal(exact, 18, 2) is exact
    assert str(check_decimal(Decimal("12.5"), 18, 2)) == "12.50"
    assert str(check_decimal(Decimal("-0.100"), 18, 2)) == "-0.10"
    with pytest.raises(DecimalOutOfRange):
        check_decimal(Decimal("1E+17"), 18, 2)  # 20 digits at scale 2
