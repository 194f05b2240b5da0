"""The posting step without Kafka: state table writes, crash at every write, re-delivery,
dead letters (pure; the stack tests drive the same code through Faust)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
from decimal import Decimal

import pytest

from salesledger.ledger.charts import load_chart
from salesledger.ledger.model import (
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    Payment,
    ReceiptLine,
    SourcePosition,
)
from salesledger.ledger.settings import LedgerSettings
from salesledger.streams.assembly import DocumentEvent
from salesledger.streams.deadletter import HEADER_REASON, HEADER_SOURCE_OFFSET
from salesledger.streams.documents import (
    ACTION_SUBJECT,
    DOCUMENT_SUBJECT,
    PeriodActionEvent,
    decode_documents_record,
    document_datum,
)
from salesledger.streams.metrics_window import MinuteAggregator
from salesledger.streams.posting import JOURNAL_TOPIC, PostingProcessor
from salesledger.streams.serde import AvroSerde
from salesledger.streams.state_store import APPLIED_KEY, LedgerStore, TornState

SERDE = AvroSerde()
CHART = load_chart("az-nas")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


class LoggedTable(dict):
    """A dict that records every write, like a changelog topic (None = tombstone)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, bytes | None]] = []

    def __setitem__(self, key, value) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def pop(self, key, default=None):
        if key in self:
            self.log.append((key, None))
        return super().pop(key, default)


def replay(log: list[tuple[str, bytes | None]]) -> LoggedTable:
    """What Faust recovers from a changelog prefix: the latest value per key."""
    table = LoggedTable()
    for key, value in log:
        if value is None:
            dict.pop(table, key, None)
        else:
            dict.__setitem__(table, key, value)
    return table


def encoded(document, lsn: int, minute: int = 0) -> bytes:
    source = SourcePosition(lsn=lsn, tx_id=lsn // 10, commit_time=T0 + dt.timedelta(minutes=minute))
    document = dataclasses.replace(document, version=lsn, source=source)
    event = DocumentEvent(key=document.key, operation="created", version=(lsn, 1),
                          document=document, source=source)
    return SERDE.encode(DOCUMENT_SUBJECT, document_datum(event))


def receipt(number: str, qty: str, cost: str) -> GoodsReceipt:
    return GoodsReceipt(id=number, number=number, date=dt.date(2026, 3, 2), currency="AZN",
                        supplier="S1", warehouse="W1",
                        lines=(ReceiptLine(sku="SKU1", qty=Decimal(qty), unit_cost=Decimal(cost),
                                           vat_rate=Decimal("18")),))


def invoice(number: str, qty: str, price: str, customer: str = "C1") -> Invoice:
    return Invoice(id=number, number=number, date=dt.date(2026, 3, 3), currency="AZN",
                   customer=customer, warehouse="W1", branch="B1", payment_terms_days=30,
                   lines=(InvoiceLine(line_no=1, sku="SKU1", qty=Decimal(qty),
                                      unit_price=Decimal(price), vat_rate=Decimal("18")),))


def payment(number: str, amount: str) -> Payment:
    return Payment(id=number, number=number, date=dt.date(2026, 3, 4), currency="AZN",
                   customer="C1", method="bank", amount=Decimal(amount))


def stream() -> list[bytes]:
    """A small ledger: receipts, invoices (FIFO across two layers), a payment, a lock."""
    lock = SERDE.encode(ACTION_SUBJECT, PeriodActionEvent(
        action="lock", through=dt.date(2026, 3, 1), actor="test", at=T0).datum())
    return [encoded(receipt("GR-1", "10", "5.00"), 100), encoded(receipt("GR-2", "10", "6.00"), 200),
            encoded(invoice("INV-1", "4", "12.50"), 300, 1), lock,
            encoded(invoice("INV-2", "12", "12.00", "C2"), 400, 2),
            encoded(payment("PAY-1", "20.00"), 500, 3), encoded(invoice("INV-3", "2", "9.99"), 600, 3)]


def processor(table) -> PostingProcessor:
    p = PostingProcessor(LedgerStore(table), LedgerSettings(), CHART, source_topic="t.documents",
                         serde=SERDE, aggregator=MinuteAggregator(CHART, "AZN"))
    p.start()
    return p


def journal(outputs) -> dict[bytes, bytes]:
    """entry bytes by (key + value) identity: what the sink would store (dedup by content)."""
    return {o.value: o.key for o in outputs if o.topic == JOURNAL_TOPIC}


def test_records_round_trip_through_the_documents_codec():
    doc = decode_documents_record(SERDE, stream()[2])
    assert doc.key == "invoice:INV-1" and doc.version == (300, 1)
    assert doc.document.lines[0].unit_price == Decimal("12.5000")
    assert doc.document.source.commit_time == T0 + dt.timedelta(minutes=1)
    action = decode_documents_record(SERDE, stream()[3])
    assert action.action == "lock" and action.through == dt.date(2026, 3, 1)


def test_CDC_16_crash_at_every_state_write_loses_and_duplicates_nothing():
    clean_table = LoggedTable()
    clean = processor(clean_table)
    records = stream()
    clean_out = [o for seq, value in enumerate(records) for o in clean.process(seq, b"k", value)]
    assert len(journal(clean_out)) >= 7
    for cut in range(len(clean_table.log) + 1):
        recovered = processor(replay(clean_table.log[:cut]))
        # Faust restarts at a committed offset at or below what the store applied: worst case 0.
        out = [o for seq, value in enumerate(records) for o in recovered.process(seq, b"k", value)]
        assert journal(out) == journal(clean_out), f"cut after write {cut}"
        assert recovered.state == clean.state, f"cut after write {cut}"


def test_CDC_09_redelivered_record_re_emits_exactly_and_new_offset_is_a_duplicate():
    p = processor({})
    records = stream()
    first = [p.process(seq, b"k", value) for seq, value in enumerate(records)]
    again = p.process(2, b"k", records[2])
    assert again == first[2] and journal(again)
    state = p.state
    resent = p.process(len(records), b"k", records[2])  # same version at a new offset
    assert journal(resent) == journal(first[2]) and p.state is state
    assert p.stats.by_status.get("duplicate") == 1


def test_CDC_14_undecodable_and_engine_errors_become_dead_letters_and_later_documents_post():
    p = processor({})
    bad_invoice = invoice("INV-BAD", "-1", "10.00")
    outs = [p.process(0, b"x", b"\x00\x01garbage"),
            p.process(1, b"k", encoded(bad_invoice, 100)),
            p.process(2, b"k", encoded(receipt("GR-1", "10", "5.00"), 200))]
    dead = [o for o in outs[0] + outs[1] if o.topic == "dlq"]
    assert len(dead) == 2
    headers = [dict(o.headers) for o in dead]
    assert headers[0][HEADER_SOURCE_OFFSET] == b"0" and headers[1][HEADER_SOURCE_OFFSET] == b"1"
    assert headers[1][HEADER_REASON] == b"invalid_document"
    assert dead[1].key == b"invoice:INV-BAD"
    assert journal(outs[2]), "the next document posts"


def test_period_lock_holds_a_late_document_and_release_posts_it():
    p = processor({})
    lock = SERDE.encode(ACTION_SUBJECT, PeriodActionEvent(
        action="lock", through=dt.date(2026, 3, 31), actor="auditor", at=T0).datum())
    release = SERDE.encode(ACTION_SUBJECT, PeriodActionEvent(
        action="release", document_key="invoice:INV-1", actor="chief", at=T0).datum())
    p.process(0, b"k", encoded(receipt("GR-1", "10", "5.00"), 100))
    outs = p.process(1, b"period", lock)
    assert [o.topic for o in outs] == ["control"]
    held = p.process(2, b"k", encoded(invoice("INV-1", "1", "10.00"), 200))
    assert not journal(held) and [o.topic for o in held] == ["held"]
    assert SERDE.decode(held[0].value)["status"] == "held"
    released = p.process(3, b"invoice:INV-1", release)
    assert journal(released)
    statuses = [SERDE.decode(o.value) for o in released if o.topic == "held"]
    assert statuses and statuses[0]["status"] == "released" and statuses[0]["changed_by"] == "chief"


def test_an_edit_back_before_golive_reverses_the_posting_and_is_a_before_golive_dead_letter():
    p = PostingProcessor(LedgerStore({}), LedgerSettings(golive_date=dt.date(2026, 3, 2)), CHART,
                         source_topic="t.documents", serde=SERDE)
    p.start()
    p.process(0, b"k", encoded(receipt("GR-1", "10", "5.00"), 100))  # dated on go-live: refused
    p.process(1, b"k", encoded(dataclasses.replace(receipt("GR-2", "10", "5.00"), date=dt.date(2026, 3, 3)), 200))
    posted = p.process(2, b"k", encoded(invoice("INV-1", "4", "12.50"), 300))
    assert len(journal(posted)) == 2  # revenue, cogs
    moved = p.process(3, b"k", encoded(dataclasses.replace(invoice("INV-1", "4", "12.50"),
                                                            date=dt.date(2026, 3, 1)), 400))
    entries = [SERDE.decode(o.value) for o in moved if o.topic == JOURNAL_TOPIC]
    assert [e["kind"] for e in entries] == ["reversal", "reversal"]
    assert {e["accounting_date"] for e in entries} == {dt.date(2026, 3, 3)}  # where the entries were
    dead = [o for o in moved if o.topic == "dlq"]
    assert len(dead) == 1 and dict(dead[0].headers)[HEADER_REASON] == b"before_golive"
    assert dead[0].key == b"invoice:INV-1" and dict(dead[0].headers)[HEADER_SOURCE_OFFSET] == b"3"
    assert p.state.stock[("SKU1", "W1")].qty == Decimal("10") and not p.state.documents["invoice:INV-1"].posted


def test_store_refuses_a_table_with_two_unfinished_steps():
    table = LoggedTable()
    p = processor(table)
    for seq, value in enumerate(stream()[:3]):
        p.process(seq, b"k", value)
    table[APPLIED_KEY] = pickle.dumps(0)  # marker moved back: steps 1 and 2 look unfinished
    with pytest.raises(TornState):
        LedgerStore(table).load()


def test_metric_windows_sum_to_the_revenue_and_cogs_posted():
    p = processor({})
    outputs = [o for seq, value in enumerate(stream()) for o in p.process(seq, b"k", value)]
    datums = p.aggregator.flush(everything=True)
    sums: dict[str, Decimal] = {}
    for d in datums:
        sums[d["metric"]] = sums.get(d["metric"], Decimal(0)) + d["amount_sum"]
        SERDE.encode("metric_aggregate", d)
    entries = [SERDE.decode(o.value) for o in outputs if o.topic == JOURNAL_TOPIC]
    revenue = sum(line["credit"] - line["debit"] for e in entries for line in e["lines"]
                  if line["account"] == CHART.account("revenue"))
    cogs = sum(line["debit"] - line["credit"] for e in entries for line in e["lines"]
               if line["account"] == CHART.account("cost_of_sales"))
    assert sums["revenue_amount"] == revenue > 0
    assert sums["cogs_amount"] == cogs > 0
    assert sums["margin_amount"] == revenue - cogs
    assert {d["window_start"].minute for d in datums if d["metric"] == "revenue_amount"} == {1, 2, 3}


def test_three_thousand_held_documents_keep_every_changelog_value_small_and_post_in_queue_order():
    """Held documents have one key each (one ``held`` value reached the broker's 1 MiB limit at
    ~1,300 documents); a release posting a thousand of them splits its kept outputs."""
    table = LoggedTable()
    p = processor(table)
    count = 3_000
    for n in range(count):
        held = p.process(n, b"k", encoded(invoice(f"INV-{n:05d}", "1", "10.00"), 100 + n, n // 60))
        assert [o.topic for o in held] == ["held"], n
    assert len(p.state.held) == count
    value_bytes_max = 320 * 1024  # the broker refuses more than 1 MiB (message.max.bytes)
    assert max(len(value) for _, value in table.log if value is not None) < 16 * 1024
    table = replay(table.log)
    restarted = processor(table)  # a restart rebuilds the queue from the changelog
    assert restarted.state == p.state and len(restarted.state.held) == count
    posted: list[bytes] = []
    for batch in range(3):  # the engine retries at most HELD_RETRY_MAX (1,000) per receipt
        outs = restarted.process(count + batch, b"k",
                                 encoded(receipt(f"GR-{batch}", "1000", "5.00"), 10_000 + batch, 100))
        posted += [o.key for o in outs if o.topic == JOURNAL_TOPIC and o.key.startswith(b"invoice:")]
    assert not restarted.state.held
    assert list(dict.fromkeys(posted)) == [f"invoice:INV-{n:05d}".encode() for n in range(count)]
    assert max(len(value) for _, value in table.log if value is not None) < value_bytes_max
    assert sum(key.startswith(f"out:{count}+") for key in table) >= 3  # split outputs
    again = processor(replay(table.log))  # the release steps' outputs survive a restart
    assert again.process(count + 1, b"k", b"") == restarted.store.outputs_of(count + 1)


def test_a_table_with_the_held_queue_as_one_value_is_converted_to_one_key_per_document():
    table = LoggedTable()
    p = processor(table)
    for n in range(3):
        p.process(n, b"k", encoded(invoice(f"INV-{n}", "1", "10.00"), 100 + n))
    legacy = LoggedTable()  # the layout before per-document keys: the queue under "held"
    for key, value in table.items():
        if not key.startswith("held:"):
            dict.__setitem__(legacy, key, value)
    undo = pickle.dumps(dict(p.state.held))
    dict.__setitem__(legacy, "held", pickle.dumps((2, undo, pickle.dumps({}))))
    before = dict(legacy)
    converted = processor(legacy)
    assert converted.state == p.state and "held" not in legacy
    assert sorted(k for k in legacy if k.startswith("held:")) == ["held:invoice:INV-0",
                                                                   "held:invoice:INV-1",
                                                                   "held:invoice:INV-2"]
    crashed = replay([*before.items(), *legacy.log[:1]])  # a crash mid-conversion
    assert processor(crashed).state == p.state and "held" not in crashed
    out = converted.process(3, b"k", encoded(receipt("GR-1", "3", "5.00"), 500, 5))
    assert len({o.key for o in out if o.topic == JOURNAL_TOPIC}) == 4 and not converted.state.held


def test_a_record_beyond_the_next_offset_is_refused_and_the_skipped_ones_post_after_it():
    p = processor({})
    records = stream()
    p.process(0, b"k", records[0])
    assert p.next_seq == 1
    with pytest.raises(AssertionError, match="skips"):
        p.process(3, b"k", records[3])  # offsets 1-2 never came: the agent seeks back to 1
    assert p.next_seq == 1 and p.store.applied == 0
    out = [o for seq in range(1, len(records)) for o in p.process(seq, b"k", records[seq])]
    clean = processor({})
    clean_steps = [clean.process(seq, b"k", value) for seq, value in enumerate(records)]
    assert journal(out) == journal([o for step in clean_steps[1:] for o in step])
    assert p.state == clean.state


def test_a_step_too_large_for_a_kafka_message_is_a_dead_letter_and_writes_no_state(monkeypatch):
    from salesledger.streams import state_store

    table = LoggedTable()
    p = processor(table)
    p.process(0, b"k", encoded(receipt("GR-1", "10", "5.00"), 100))
    writes = len(table.log)
    monkeypatch.setattr(state_store, "VALUE_BYTES_MAX", 1_000)  # the receipt's record is larger
    state = p.state
    out = p.process(1, b"k", encoded(dataclasses.replace(receipt("GR-2", "10", "6.00"), lines=tuple(
        ReceiptLine(sku=f"SKU{n}", qty=Decimal(1), unit_cost=Decimal(1)) for n in range(40))), 200))
    assert [o.topic for o in out] == ["dlq"] and p.state is state
    assert dict(out[0].headers)[HEADER_REASON] == b"state_too_large"
    assert {key for key, _ in table.log[writes:]} == {"out:1", APPLIED_KEY}
