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
    PeriodActionEvent,
    decode_documents_record,
)
from salesledger.streams.serde import AvroSerde
from salesledger.streams.state_store import unlocked

SERDE = AvroSerde()


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
