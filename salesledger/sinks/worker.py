"""The sink worker: Kafka ledger topics -> accounting store, exactly once in effect.

Loop (bounded: at most ``batch_rows_max`` rows or ``batch_linger_ms`` per batch):

1. on partition assignment, seek to the next offsets stored **in the store** (``load_offsets``),
   not only Kafka's group offsets (the store's offsets are committed with the rows: CDC-15);
2. consume, decode each record (:func:`salesledger.sinks.decode.decode_record`); a record that
   cannot be decoded becomes a dead letter in the same batch (stored with its offset, never
   dropped, never a crash: CDC-14);
3. write the batch in one store transaction, rows + offsets (:class:`LedgerWriter`); while the
   store is unavailable, retry the same batch with backoff, acknowledging nothing;
4. after the store committed: send the batch's new dead letters to the dead-letter topic;
5. commit the offsets to Kafka (best effort: a failure here only means re-reading records the
   store already has, which ON CONFLICT DO NOTHING absorbs).

SIGTERM / SIGINT stop the loop after the current batch is written; nothing is half-done.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from salesledger.config import Settings
from salesledger.metrics import librdkafka_stats
from salesledger.sinks import metrics
from salesledger.sinks.decode import decode_record, shared_serde
from salesledger.sinks.migrate import applied_versions, discover
from salesledger.sinks.records import LedgerRecord, Position
from salesledger.sinks.settings import SinkSettings
from salesledger.sinks.writer import LedgerWriter, StoreUnavailable, load_offsets
from salesledger.streams.deadletter import DeadLetter, RejectedRecord, build_dead_letter

log = logging.getLogger(__name__)

Decoder = Callable[[str, int, int, bytes | None, bytes | None], LedgerRecord | None]
#: Messages fetched per consume() call (the batch bound is rows, checked after each call).
_CONSUME_MAX = 500


class SchemaNotReady(RuntimeError):
    """The accounting store's schema is not migrated to the version this code expects."""


@dataclass
class WorkerStats:
    """Counters of one worker run (also exported as Prometheus metrics by the writer)."""

    batches: int = 0
    records: int = 0
    dead_letters: int = 0
    store_retries: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class SinkWorker:
    """One sink worker process' loop. ``settings``: the stack settings (DSN as the sink role,
    Kafka, topic prefix); ``sink``: :class:`SinkSettings`; ``decode``: the decoder (swap it to
    change the wire format)."""

    def __init__(self, settings: Settings, sink: SinkSettings, *,
                 decode: Decoder = decode_record) -> None:
        self.settings = settings
        self.sink = sink
        self.decode = decode
        self.topics = [settings.topic(t) for t in sink.topics]
        self.dead_letter_topic = settings.topic(sink.dead_letter_topic)
        self.stats = WorkerStats()
        self.stop_event = threading.Event()
        conninfo = settings.conninfo("accounting", "sink")
        self.writer = LedgerWriter(lambda: psycopg.connect(**conninfo, connect_timeout=5),
                                   consumer_group=sink.consumer_group, schema=sink.schema_name)
        self._conninfo = conninfo
        self._batch: list[LedgerRecord] = []
        self._batch_rows = 0
        self._batch_started = 0.0
        self._new_dead: list[DeadLetter] = []
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    # ------------------------------------------------------------------ lifecycle

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a graceful stop (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())

    def run(self) -> WorkerStats:
        """Consume and write until :attr:`stop_event` is set; return the run's counters.

        Raises:
            SchemaNotReady: the store's schema lacks migrations this code expects.
        """
        self._check_schema()
        self._consumer = Consumer(self._consumer_config())
        self._producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap,
                                   "enable.idempotence": True, "acks": "all"})
        self._consumer.subscribe(self.topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke)
        try:
            while not self.stop_event.is_set():
                self._poll_once()
            self._flush()
        finally:
            self._consumer.close()
            self._producer.flush(10)
            self.writer.close()
        return self.stats

    def _consumer_config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "group.id": self.sink.consumer_group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": self.sink.session_timeout_ms,
            # Per-partition lag and last-fetch age (salesledger.metrics.PARTITIONS).
            "statistics.interval.ms": 5000, "stats_cb": librdkafka_stats("sink"),
        }
        instance = self.sink.group_instance_id or os.environ.get("SALESLEDGER_WORKER_NAME")
        if instance:
            config["group.instance.id"] = instance
        return config

    def _check_schema(self) -> None:
        expected = [m.version for m in discover()]
        applied = self._with_store(lambda conn: applied_versions(conn, self.sink.schema_name))
        if applied is not None and applied != expected:
            raise SchemaNotReady(
                f"schema {self.sink.schema_name!r} has migrations {applied}, this sink needs "
                f"{expected}: run `salesledger ledger migrate --schema {self.sink.schema_name}`")

    # ------------------------------------------------------------------ steps

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # 1. Seek to the offsets stored in the store (authoritative), else Kafka's committed.
        stored = self._load_stored_offsets({p.topic for p in partitions})
        for p in partitions:
            if p.partition in stored.get(p.topic, {}):
                p.offset = stored[p.topic][p.partition]
        log.info("assigned %s", [(p.topic, p.partition, p.offset) for p in partitions])
        consumer.assign(partitions)

    def _load_stored_offsets(self, topics: set[str]) -> dict[str, dict[int, int]]:
        stored = self._with_store(lambda conn: {
            t: load_offsets(conn, self.sink.consumer_group, t, self.sink.schema_name)
            for t in topics})
        return stored or {}  # None: stopping; nothing is consumed after this

    def _with_store(self, read):
        """``read(conn)`` on a fresh connection, retried with backoff while the store is
        unavailable; ``None`` if asked to stop meanwhile."""
        pause_s = 0.05
        while True:
            try:
                with psycopg.connect(**self._conninfo, connect_timeout=5) as conn:
                    return read(conn)
            except psycopg.OperationalError as err:
                self.stats.store_retries += 1
                log.warning("accounting store unavailable (%s); retrying in %.2fs", err, pause_s)
                if self.stop_event.wait(pause_s):
                    return None
                pause_s = min(pause_s * 2, self.sink.store_retry_ms_max / 1000)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Uncommitted records are dropped, not written: the next owner of the partitions
        # re-reads them from the offsets stored with the last durable batch.
        if self._batch:
            log.info("partitions revoked: %d uncommitted records left for the next owner",
                     len(self._batch))
        self._batch, self._batch_rows, self._new_dead = [], 0, []
        consumer.unassign()

    def _poll_once(self) -> None:
        # 2. Consume and decode into the pending batch.
        room = max(1, min(_CONSUME_MAX, self.sink.batch_rows_max - self._batch_rows))
        wait_ms = self.sink.poll_ms
        if self._batch:  # never wait past the batch's linger deadline
            elapsed_ms = (time.monotonic() - self._batch_started) * 1000
            wait_ms = max(0.0, min(wait_ms, self.sink.batch_linger_ms - elapsed_ms))
        for msg in self._consumer.consume(room, timeout=wait_ms / 1000):
            if msg.error():
                if msg.error().fatal():  # e.g. fenced by another worker with our instance id
                    raise KafkaException(msg.error())
                log.warning("consumer error: %s", msg.error())
                continue
            self._add(self._decode(msg))
        lingered_ms = (time.monotonic() - self._batch_started) * 1000
        if self._batch and (self._batch_rows >= self.sink.batch_rows_max
                            or lingered_ms >= self.sink.batch_linger_ms):
            self._flush()

    def _decode(self, msg) -> LedgerRecord | None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        try:
            record = self.decode(topic, partition, offset, msg.key(), msg.value())
        except RejectedRecord as err:
            dead = build_dead_letter(err, topic=topic, partition=partition, offset=offset,
                                     key=msg.key(), value=msg.value())
            metrics.DEAD_LETTERS.labels(dead.reason).inc()
            self._new_dead.append(dead)
            return LedgerRecord(Position(topic, partition, offset), dead, msg.key(), msg.value())
        if record is None:  # a tombstone: nothing to write, but its offset is consumed
            return None
        return record

    def _add(self, record: LedgerRecord | None) -> None:
        if record is None:
            return
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(record)
        # Rows this record adds: an entry and its lines, or one row.
        self._batch_rows += 1 + len(getattr(record.fact, "lines", ()) or ())

    def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_rows = self._batch, [], 0
        # 3. One store transaction: rows + offsets; retry while the store is unavailable.
        result = self._write_until_durable(batch)
        if result is None:
            return  # stopping while the store is down: nothing acknowledged, re-read on restart
        # 4. After the commit: dead letters to the dead-letter topic.
        dead_letters = self._new_dead + result.dead_letters
        self._publish_dead_letters(dead_letters)
        self._new_dead = []
        # 5. Best-effort Kafka commit of what the store now holds.
        self._commit_kafka(result.offsets)
        self.stats.batches += 1
        self.stats.records += len(batch)
        self.stats.dead_letters += len(dead_letters)
        self.stats.offsets.update(result.offsets)

    def _write_until_durable(self, batch: list[LedgerRecord]):
        pause_s = 0.05
        while True:
            try:
                return self.writer.write(batch)
            except StoreUnavailable as err:
                self.stats.store_retries += 1
                log.warning("accounting store unavailable (%s); retrying in %.2fs", err, pause_s)
                if self.stop_event.wait(pause_s):
                    return None
                pause_s = min(pause_s * 2, self.sink.store_retry_ms_max / 1000)

    def _publish_dead_letters(self, dead_letters: list[DeadLetter]) -> None:
        if not dead_letters:
            return
        serde = shared_serde()
        for dead in dead_letters:
            if dead.source_topic == self.dead_letter_topic:
                continue  # a bad record of the dead-letter topic itself: stored, not looped
            self._producer.produce(self.dead_letter_topic, key=dead.record_key,
                                   value=serde.encode("dead_letter", dead.to_avro()),
                                   headers=dead.headers())
        self._producer.flush(30)

    def _commit_kafka(self, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=False)
        except KafkaException as err:
            log.warning("Kafka offset commit failed (the store's offsets stand): %s", err)


def run_sink(settings: Settings, sink: SinkSettings | None = None) -> WorkerStats:
    """Run one sink worker in this process until SIGTERM/SIGINT (the ``salesledger ledger sink``
    command and the supervisor call this)."""
    sink = sink or SinkSettings()
    if sink.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(sink.metrics_port)
    worker = SinkWorker(settings, sink)
    worker.install_signal_handlers()
    return worker.run()
