"""Helpers of the pipeline tests: reading topics, the reference engine run, the store's entries."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from salesledger.ledger import engine
from salesledger.ledger.charts import load_chart
from salesledger.ledger.model import JournalEntry, PeriodLock, Release
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import LedgerState
from salesledger.streams.documents import (
    DocumentVersionEvent,
    ExchangeRateEvent,
    PeriodActionEvent,
    decode_documents_record,
)
from salesledger.config import get_settings
from salesledger.streams.serde import AvroSerde
from salesledger.streams.state_store import unlocked

#: Encodes single-object (the simulation); decodes both framings (the workers' topics carry
#: Confluent framing when the registry runs: ids resolved through it, once each).
SERDE = AvroSerde(registry_url=get_settings().registry_url)


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> list[Any]:
    """Every message of partition 0..n of ``topic`` up to its current end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    out = []
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + 120
        while ends:
            assert time.monotonic() < deadline, f"reading {topic} stalled"
            for message in consumer.consume(500, timeout=1.0):
                if message.error():
                    continue
                out.append(message)
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
    finally:
        consumer.close()
    return out


def documents_on_topic(bootstrap: str, topic: str) -> list[DocumentVersionEvent | PeriodActionEvent]:
    """The decodable records of the documents topic, in order."""
    items = []
    for message in read_topic(bootstrap, topic):
        try:
            item = decode_documents_record(SERDE, message.value())
        except Exception:
            continue
        if item is not None:
            items.append(item)
    return items


def reference_entries(items: list[DocumentVersionEvent | PeriodActionEvent],
                      chart_name: str = "az-nas") -> list[JournalEntry]:
    """The reference model: the same records through the engine from an empty state."""
    settings, chart = LedgerSettings(), load_chart(chart_name)
    state, entries = LedgerState(), []

    def collect(result) -> None:
        entries.extend(result.entries)
        for sub in result.also:
            collect(sub)

    for item in items:
        if isinstance(item, PeriodActionEvent):
            if item.action == "lock":
                state, result = engine.lock_period(state, PeriodLock(through=item.through))
            elif item.action == "unlock":
                state, result = unlocked(state), None
            else:
                state, result = engine.release(state, Release(document_key=item.document_key),
                                               settings, chart)
        elif isinstance(item, ExchangeRateEvent):  # assembly rule 8: a sales.currency_rates row
            state, result = engine.set_rate(state, item.rate, settings, chart)
        else:
            state, result = engine.try_post(state, item.document, settings, chart)
        if result is not None and result.status not in ("duplicate", "ignored", "error"):
            collect(result)
    return entries


def store_entries(pipeline, document_numbers: set[str] | None = None) -> dict[str, list[tuple]]:
    """entry_id -> [(account, debit, credit)] from the accounting store (lines in order)."""
    rows = pipeline.query(
        "SELECT e.entry_id, e.document_number, l.account, l.debit, l.credit "
        "FROM journal_entries e JOIN journal_lines l USING (entry_id) ORDER BY e.entry_id, l.line_no")
    out: dict[str, list[tuple]] = {}
    for entry_id, number, account, debit, credit in rows:
        if document_numbers is None or number in document_numbers:
            out.setdefault(entry_id, []).append((account, Decimal(debit), Decimal(credit)))
    return out


def entries_as_rows(entries: list[JournalEntry]) -> dict[str, list[tuple]]:
    """The same shape as :func:`store_entries` from engine entries."""
    return {e.entry_id: [(l.account, l.debit, l.credit) for l in e.lines] for e in entries}


def same_amounts(a: dict[str, list[tuple]], b: dict[str, list[tuple]]) -> bool:
    """Equal entry ids and per entry equal (account, debit, credit) amounts (scale ignored)."""
    norm = lambda rows: sorted((acc, d.normalize(), c.normalize()) for acc, d, c in rows)  # noqa: E731
    return a.keys() == b.keys() and all(norm(a[k]) == norm(b[k]) for k in a)


# --------------------------------------------------------------------------- a simulation


def simulate(documents_n: int, seed: int = 7) -> list[bytes]:
    """A seeded stream of encoded document events (receipts, invoices, payments, invoice edits)
    for the documents topic, versions strictly increasing in stream order."""
    import dataclasses
    import datetime as dt
    import random

    from salesledger.ledger.model import (
        GoodsReceipt, Invoice, InvoiceLine, Payment, ReceiptLine, SourcePosition,
    )
    from salesledger.streams.assembly import DocumentEvent
    from salesledger.streams.documents import DOCUMENT_SUBJECT, document_datum

    rng = random.Random(seed)
    skus = [f"SKU{i}" for i in range(8)]
    customers = [f"C{i}" for i in range(30)]
    t0 = dt.datetime(2026, 4, 1, 8, 0, tzinfo=dt.UTC)
    out, invoices = [], []
    for i in range(documents_n):
        lsn = 1_000_000 + i * 100
        at = t0 + dt.timedelta(seconds=7 * i)
        day = at.date()
        roll = rng.random()
        # Stock stays ample: no document is held for stock, because the engine retries held
        # documents in the order of its held map (immutables.Map: hash order, which depends
        # on PYTHONHASHSEED) -- a reference run in another process could differ.
        if i % 12 == 0 or roll < 0.08:
            doc = GoodsReceipt(id=f"GR{i}", number=f"GR-{i}", date=day, currency="AZN",
                               supplier="S1", warehouse="W1", lines=tuple(
                                   ReceiptLine(sku=sku, qty=Decimal(rng.randint(20, 60)),
                                               unit_cost=Decimal(rng.randint(300, 900)) / 100,
                                               vat_rate=Decimal(18))
                                   for sku in rng.sample(skus, 3)))
            operation = "created"
        elif roll < 0.25 and invoices:
            number, customer = rng.choice(invoices)
            doc = Payment(id=f"P{i}", number=f"PAY-{i}", date=day, currency="AZN",
                          customer=customer, method=rng.choice(["bank", "cash"]),
                          amount=Decimal(rng.randint(500, 5000)) / 100)
            operation = "created"
        elif roll < 0.30 and invoices:
            number, customer = rng.choice(invoices[-5:])
            doc = Invoice(id=number, number=number, date=day, currency="AZN", customer=customer,
                          warehouse="W1", branch="B1", payment_terms_days=14, lines=(
                              InvoiceLine(line_no=1, sku=rng.choice(skus), qty=Decimal(1),
                                          unit_price=Decimal(rng.randint(1000, 2000)) / 100,
                                          vat_rate=Decimal(18)),))
            operation = "changed"
        else:
            number, customer = f"INV-{i}", rng.choice(customers)
            doc = Invoice(id=number, number=number, date=day, currency="AZN", customer=customer,
                          warehouse="W1", branch=rng.choice(["B1", "B2"]), payment_terms_days=14,
                          lines=tuple(InvoiceLine(line_no=n + 1, sku=sku, qty=Decimal(rng.randint(1, 3)),
                                                  unit_price=Decimal(rng.randint(1000, 2500)) / 100,
                                                  vat_rate=Decimal(18))
                                      for n, sku in enumerate(rng.sample(skus, rng.randint(1, 3)))))
            invoices.append((number, customer))
            operation = "created"
        source = SourcePosition(lsn=lsn, tx_id=5000 + i, commit_time=at)
        doc = dataclasses.replace(doc, version=lsn, source=source)
        event = DocumentEvent(key=doc.key, operation=operation, version=(lsn, 1), document=doc,
                              source=source)
        out.append(SERDE.encode(DOCUMENT_SUBJECT, document_datum(event)))
    return out


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Produce ``values`` in order (idempotent producer, acks=all)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})
    for value in values:
        producer.produce(topic, key=b"k", value=value)
        producer.poll(0)
    assert producer.flush(60) == 0


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """End offset minus the group's committed offset on partition 0 (None: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return None if committed < 0 else high - committed
    finally:
        consumer.close()
