"""CDC-01/02/03/05/07 on envelopes captured from the running Debezium 3.6 (PostgreSQL
connector, JsonConverter with schemas, decimal.handling.mode=precise) by
test_cdc_decode_stack.py: pure, runs without the stack on the saved fixture."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from salesledger.streams.cdc import (
    UNAVAILABLE,
    ChangeEvent,
    ChangeEventDecoder,
    FloatMoney,
    NullAmount,
    Op,
    Tombstone,
    TransactionEvent,
    UnavailableValue,
)

CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "cdc" / "captured" / "scratch_decimals.jsonl"


def load(path: Path = CAPTURED) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _decode(lines: list[dict]):
    decoder = ChangeEventDecoder()
    enc = lambda text: None if text is None else text.encode()  # noqa: E731
    return [decoder.decode(enc(x["key"]), enc(x["value"])) for x in lines]


def check_scratch_capture(lines: list[dict], *, table: str | None = None) -> None:
    """The assertions on the scratch table's records (used live and on the fixture)."""
    decoded = _decode(lines)
    changes = [d for d in decoded if isinstance(d, ChangeEvent)]
    tombstones = [d for d in decoded if isinstance(d, Tombstone)]
    transactions = [d for d in decoded if isinstance(d, TransactionEvent)]
    table = table or changes[0].source.table
    assert [(c.op, c.row["id"]) for c in changes] == [
        (Op.CREATE, 1), (Op.CREATE, 2), (Op.CREATE, 3), (Op.CREATE, 4), (Op.CREATE, 5),
        (Op.CREATE, 6), (Op.UPDATE, 6), (Op.DELETE, 2)]
    by_id = {c.after["id"]: c.after for c in changes if c.op is Op.CREATE}

    # CDC-01: NUMERIC(12,2) exact, scale kept; a double precision column is refused as money
    assert [str(by_id[i].money("amount")) for i in (1, 2, 3)] == ["0.10", "-1.50", "9999999999.99"]
    with pytest.raises(FloatMoney):
        by_id[1].money("price_f")
    # CDC-02: plain NUMERIC, per-row scale. Measured: Debezium 3.6 strips trailing zeros of an
    # unconstrained NUMERIC (1.50 arrives as {scale: 1, value: 15}); the value stays exact, its
    # written scale does not, so money columns must be NUMERIC(p,s) (the sales schema's are).
    plain = [by_id[i].money("plain") for i in (1, 2, 3)]
    assert plain == [Decimal("1.5"), Decimal("1.50"), Decimal("100")]
    assert [str(v) for v in plain] == ["1.5", "1.5", "100"]
    # CDC-03: 'NaN' and NULL both arrive as null: typed error, never zero
    for i, column in ((4, "amount"), (4, "plain"), (5, "amount"), (5, "plain")):
        with pytest.raises(NullAmount):
            by_id[i].money(column)
    # other logical types of the first row
    row = by_id[1]
    assert row["doc_date"] == date(2026, 11, 30)
    assert row["created_at"] == datetime(2026, 11, 30, 4, 0, 0, 123456)
    assert row["updated_at"] == datetime(2026, 11, 30, 4, 0, 0, 500000, tzinfo=UTC)
    assert row["uid"] == "6f1c1c1e-8e0b-5b7a-9a53-5a1e5d1e6e01"
    assert json.loads(row["doc"]) == {"a": 1}

    # CDC-05: status-only update under REPLICA IDENTITY DEFAULT: the long note is not sent
    update = changes[6]
    assert update.before is None and update.after["status"] == "posted"
    assert update.after["note"] is UNAVAILABLE and update.after.unavailable_fields == {"note"}
    assert update.after.money("amount") == Decimal("6.00")
    with pytest.raises(UnavailableValue):
        update.after.value("note")
    assert update.after.resolve_unavailable(by_id[6])["note"] == by_id[6]["note"]
    assert len(by_id[6]["note"]) == 600 * 32

    # CDC-07: the delete carries the key in before; the tombstone follows and is skipped
    delete = changes[7]
    assert delete.after is None and delete.before["id"] == 2 and delete.key == {"id": 2}
    assert tombstones == [Tombstone(key={"id": 2})]
    assert isinstance(decoded[decoded.index(tombstones[0]) - 1], ChangeEvent)

    # positions and transaction metadata
    # Measured: a row event's transaction.id ("<xid>:<lsn>") need not equal its END's id; the
    # xid part matches. Match by TransactionRef.tx_id.
    ends = {t.tx_id: t for t in transactions if t.status == "END"}
    assert len(ends) == 8 and {t.status for t in transactions} == {"BEGIN", "END"}
    for change in changes:
        assert change.source.table == table and change.source.schema == "sales"
        assert isinstance(change.source.lsn, int) and isinstance(change.source.tx_id, int)
        assert change.transaction is not None and change.transaction.tx_id in ends
        end = ends[change.transaction.tx_id]
        assert end.event_count == 1 and end.data_collections == ((f"sales.{table}", 1),)
        assert end.tx_id == change.source.tx_id
    lsns = [c.source.lsn for c in changes]
    assert lsns == sorted(lsns)


def test_CDC_01_02_03_05_07_captured_from_real_debezium():
    check_scratch_capture(load())


def test_CDC_01_captured_decimal_schema_is_connect_decimal():
    first = json.loads(load()[0]["value"])
    after = next(f for f in first["schema"]["fields"] if f["field"] == "after")
    amount = next(f for f in after["fields"] if f["field"] == "amount")
    plain = next(f for f in after["fields"] if f["field"] == "plain")
    assert amount["name"] == "org.apache.kafka.connect.data.Decimal"
    assert amount["parameters"]["scale"] == "2"
    assert plain["name"] == "io.debezium.data.VariableScaleDecimal"


def test_CDC_21_converter_mismatch_on_captured_records():
    """Real JsonConverter output decodes; the same record re-framed as another converter
    would write it is refused as a converter mismatch; the real tombstone is skipped."""
    from salesledger.streams.cdc import ConverterMismatch, Converter, Undecodable

    lines = load()
    first = lines[0]
    tombstone = next(x for x in lines if x["value"] is None and x["key"] is not None)
    decoder = ChangeEventDecoder()
    key, value = first["key"].encode(), first["value"].encode()
    assert decoder.decode(key, value).after.money("amount") == Decimal("0.10")  # (b)
    plain_value = json.dumps(json.loads(value)["payload"]).encode()  # schemas.enable=false
    with pytest.raises(ConverterMismatch, match="plain JSON"):  # (c)
        decoder.decode(key, plain_value)
    with pytest.raises(ConverterMismatch, match="Confluent-framed Avro"):  # (a)
        decoder.decode(key, b"\x00\x00\x00\x00\x2a" + value[:20])
    assert isinstance(decoder.decode(tombstone["key"].encode(), None), Tombstone)  # (d)
    with pytest.raises(Undecodable):  # (e)
        decoder.decode(key, value[:3])
    keys_plain = ChangeEventDecoder(key_converter=Converter.JSON)
    with pytest.raises(ConverterMismatch, match="schema/payload envelope"):
        keys_plain.decode(key, value)  # the real key carries a schema
