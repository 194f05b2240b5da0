"""Audit replay: rebuild the ledger into a fresh schema from Kafka, then compare hashes.

Two independent rebuilds of the accounting store (``salesledger replay --into SCHEMA``):

- :func:`replay_from_beginning` — the **ledger topics** (journal entries, stock movements,
  receivable updates, held, control, dead letters: the sink's topics) read from offset 0 to
  their end as of the start, decoded by the sink's own decoder and written by the sink's own
  :class:`~salesledger.sinks.writer.LedgerWriter` into ``SCHEMA``. Proves the store equals
  what the posting stage published.
- :func:`replay_from_documents` — the **documents topic** (assembled document versions and
  period actions, in their one total order) read from offset 0 and put through the posting
  step (:class:`~salesledger.streams.posting.PostingProcessor`, pure, in this process, state
  in memory) with the chart and ledger settings the live pipeline ran with; its outputs go to
  the same writer. Proves the posting engine, re-run, gives the same ledger.

``SCHEMA`` is first migrated with the accounting store's own migrations
(:func:`salesledger.sinks.migrate.migrate_store`). Every row has a deterministic id and is
inserted ``ON CONFLICT DO NOTHING``, so replaying twice, or into a schema that already holds
part of the ledger, leaves the same rows: ``salesledger ledger-hash --schema SCHEMA`` equals the
live ledger's hash (entries and lines; source trace and ingestion time are not hashed).

Not replayed exactly: the held topic is compacted (only each document's latest held state
survives), so ``held_documents`` of a replay may hold fewer history rows than the live store;
held events are not part of the ledger hash.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator

import psycopg
from confluent_kafka import Consumer, TopicPartition

from salesledger.config import Settings
from salesledger.ledger.charts import Chart
from salesledger.ledger.settings import LedgerSettings
from salesledger.sinks.decode import decode_record
from salesledger.sinks.migrate import migrate_store
from salesledger.sinks.records import LedgerRecord, Position
from salesledger.sinks.settings import SinkSettings
from salesledger.sinks.writer import LedgerWriter, WriteResult
from salesledger.streams.deadletter import RejectedRecord, build_dead_letter

log = logging.getLogger(__name__)

#: Records per store transaction during a replay.
BATCH_RECORDS = 2000
_TIMEOUT_S = 30.0
#: Longest wait for a message below a partition's known end offset (seconds).
_STALL_S = 120.0

Reporter = Callable[[str], None]


@dataclass
class ReplayResult:
    """What a replay read and wrote: ``records`` read from Kafka (per topic), ``rows`` newly
    inserted per table (0 for rows already present), ``duplicate_entries`` entries that were
    already in the schema, ``dead_letters`` records dead-lettered during the replay."""

    schema: str
    records: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    duplicate_entries: int = 0
    dead_letters: int = 0

    def add(self, result: WriteResult) -> None:
        for table, n in result.rows_inserted.items():
            self.rows[table] = self.rows.get(table, 0) + n
        self.duplicate_entries += result.duplicate_entries
        self.dead_letters += len(result.dead_letters)


def _consumer(settings: Settings) -> Consumer:
    return Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                     "group.id": f"{settings.topic_prefix}-replay-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     "auto.offset.reset": "earliest"})


def read_topic(consumer: Consumer, topic: str, partitions: list[int] | None = None) -> Iterator:
    """The messages of ``topic`` (all its partitions, or ``partitions``) from their low
    watermarks to the ends they had when called; in offset order within each partition
    (``confluent_kafka.Message``).

    Raises:
        TimeoutError: no message arrived for ``_STALL_S`` seconds below an end offset.
    """
    ends: dict[int, int] = {}
    starts = []
    for partition in partitions if partitions is not None else partitions_of(consumer, topic):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                   timeout=_TIMEOUT_S)
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, low))
    if not ends:
        return
    consumer.assign(starts)
    try:
        idle = 0.0
        while ends:
            messages = consumer.consume(500, timeout=1.0)
            idle = 0.0 if messages else idle + 1.0
            if idle > _STALL_S:
                raise TimeoutError(f"reading {topic} stalled below {ends}")
            for message in messages:
                if message.error():
                    log.warning("%s: %s", topic, message.error())
                    continue
                end = ends.get(message.partition())
                if end is None or message.offset() >= end:
                    continue
                yield message
                if message.offset() + 1 >= end:
                    del ends[message.partition()]
            # transaction markers occupy offsets: a partition whose position reached its end
            # is done even if its last offset was a marker
            if ends:
                for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
    finally:
        consumer.unassign()


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    """Partition numbers of ``topic``.

    Raises:
        LookupError: the topic does not exist.
    """
    meta = consumer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None:
        raise LookupError(f"topic {topic} does not exist")
    return sorted(meta.partitions)


def _writer(settings: Settings, schema: str, group: str) -> LedgerWriter:
    conninfo = settings.conninfo("accounting", "sink")
    return LedgerWriter(lambda: psycopg.connect(**conninfo, connect_timeout=10),
                        consumer_group=group, schema=schema)


def _decode(message) -> LedgerRecord | None:
    """Decode like the sink worker: an undecodable record becomes a dead letter record."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    try:
        return decode_record(topic, partition, offset, message.key(), message.value())
    except RejectedRecord as err:
        dead = build_dead_letter(err, topic=topic, partition=partition, offset=offset,
                                 key=message.key(), value=message.value())
        return LedgerRecord(Position(topic, partition, offset), dead, message.key(),
                            message.value())


def replay_from_beginning(settings: Settings, schema: str,
                          report: Reporter = lambda _: None) -> ReplayResult:
    """Rebuild ``schema`` from the ledger topics of ``settings``' prefix (module docstring).

    Raises:
        LookupError: a ledger topic is missing; TimeoutError: Kafka stalled;
        salesledger.sinks.writer.StoreUnavailable: the store is unreachable.
    """
    migrate_store(settings, schema)
    result = ReplayResult(schema)
    writer = _writer(settings, schema, f"replay-ledger-topics-{schema}")
    consumer = _consumer(settings)
    try:
        for suffix in SinkSettings().topics:
            topic = settings.topic(suffix)
            batch: list[LedgerRecord] = []
            for message in read_topic(consumer, topic):
                result.records[suffix] = result.records.get(suffix, 0) + 1
                record = _decode(message)
                if record is not None:
                    batch.append(record)
                if len(batch) >= BATCH_RECORDS:
                    result.add(writer.write(batch))
                    batch = []
            if batch:
                result.add(writer.write(batch))
            report(f"{topic}: {result.records.get(suffix, 0)} records replayed")
    finally:
        consumer.close()
        writer.close()
    return result


def replay_from_documents(settings: Settings, schema: str, ledger: LedgerSettings, chart: Chart,
                          report: Reporter = lambda _: None) -> ReplayResult:
    """Rebuild ``schema`` by posting the documents topic again with ``ledger`` and ``chart``
    (module docstring). The documents topic has one partition: its order is the posting order.

    Raises:
        LookupError: the documents topic is missing; TimeoutError: Kafka stalled;
        salesledger.sinks.writer.StoreUnavailable: the store is unreachable.
    """
    from salesledger.streams.posting import PostingProcessor
    from salesledger.streams.serde import AvroSerde
    from salesledger.streams.state_store import LedgerStore

    migrate_store(settings, schema)
    documents = settings.topic("documents")
    processor = PostingProcessor(LedgerStore({}), ledger, chart, source_topic=documents,
                                 serde=AvroSerde.for_settings(settings))
    processor.start()
    result = ReplayResult(schema)
    writer = _writer(settings, schema, f"replay-documents-{schema}")
    next_offset: dict[str, int] = {}
    consumer = _consumer(settings)
    batch: list[LedgerRecord] = []
    try:
        partitions = partitions_of(consumer, documents)
        assert partitions == [0], f"{documents} must have one partition, has {partitions}"
        for message in read_topic(consumer, documents, [0]):
            result.records["documents"] = result.records.get("documents", 0) + 1
            for out in processor.process(message.offset(), message.key(), message.value()):
                topic = settings.topic(out.topic)
                offset = next_offset.get(topic, 0)
                next_offset[topic] = offset + 1
                if out.topic not in SinkSettings().topics:
                    continue  # e.g. metrics: not part of the store
                record = decode_record(topic, 0, offset, out.key, out.value)
                if record is not None:
                    batch.append(record)
            if message.offset() % 500 == 0:
                processor.store.forget_outputs_before(message.offset())
            if len(batch) >= BATCH_RECORDS:
                result.add(writer.write(batch))
                batch = []
        if batch:
            result.add(writer.write(batch))
    finally:
        consumer.close()
        writer.close()
    report(f"{documents}: {result.records.get('documents', 0)} records posted again "
           f"({processor.stats.entries} journal entries, {processor.stats.dead_letters} dead letters)")
    return result


__all__ = ["ReplayResult", "read_topic", "replay_from_beginning", "replay_from_documents"]
