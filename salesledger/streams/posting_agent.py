"""The posting agent: ``{prefix}.documents`` -> ledger topics, one record at a time.

Thin: for each record, :class:`~salesledger.streams.posting.PostingProcessor` (decode -> engine
-> outputs, state saved in the ``ledger`` table) and send what it returns. Nothing in the loop
raises to Faust (Faust acknowledges an event whose processing raised): errors are dead letters
built by the processor. Invariant failures (``AssertionError``) stop the worker: a bug.

Single active: the documents topic has one partition, so one worker of the group holds it;
others keep a standby copy of the table (``table_standby_replicas``) and take over after a
rebalance. The :class:`LedgerState` is opened over the table at the first record after every
assignment (the table is then recovered from its changelog into the worker's local RocksDB)
and dropped when partitions are revoked; it reads documents, stock positions and customers
from the table key by key (:mod:`salesledger.streams.state_store`), so memory stays flat.

No documents-topic offset is ever skipped. Faust can hand the agent a record beyond the next one
(seen after a rebalance of two workers: offsets 481-555 never came, Faust committed past them)
and can commit over offsets it never delivered (its consumer treats a jump in offsets as a hole
to step over; the documents topic has none: :func:`salesledger.streams.transport.declare_contiguous`
turns that off for it). The state knows the next offset it needs
(:attr:`PostingProcessor.next_seq`); a record beyond it is dropped unprocessed and *not*
acknowledged (Faust must not count it as done) and the consumer seeks back to it
(:data:`GAP_RESEEK_S` apart at most). A timer does the same when no record comes while Faust's
committed offset is past it (a restart after such a commit, with nothing new to read).

**Commits.** Faust commits an offset once every record up to it was acknowledged. In the crash
tests its commit of the documents offset sometimes stopped moving for good after a restart while
the agent went on (committed 696, the agent through 1,499, consumer lag 0 by its own position):
nothing is lost — the state is ahead and a restart re-emits — but a restart would re-deliver
everything since and the group's lag never returns to 0. The agent therefore watches it
(:data:`OWN_COMMIT_CHECK_S`): when Faust's committed offset stood still for
:data:`OWN_COMMIT_STALL_S` while steps were sent beyond it, the agent flushes the producer (all
sent outputs and state writes acknowledged) and commits the offset after the last step whose
outputs were all sent. A later, lower commit by Faust cannot happen (it only commits above its
recorded offset, which the agent raises).

One posting stage keyed by document, not stages repartitioned by SKU + warehouse and by
customer: the engine posts a document atomically — one COGS entry per document over all its
SKUs (golden G02, G06, G07), the whole document held when one line lacks stock, a return costed
from its invoice's lines, an advance offset at invoicing on the ru-1c chart (G11) — which stages
keyed differently could only reproduce with a document-level join back; and on the 2-core target
every extra hop costs more than it parallelises (about half of the worker's time per document
is per-message overhead; 2 posting workers measured slower than 1). The state is nevertheless
keyed that way (``stock:<sku>@<warehouse>``, ``customer:<id>``), read per key.
"""

from __future__ import annotations

import logging
import time

import faust

from salesledger.config import Settings
from salesledger.streams import telemetry
from salesledger.streams.app import ROCKSDB_OPTIONS, PipelineSettings, declared, raw_topic
from salesledger.streams.metrics_window import MinuteAggregator
from salesledger.streams.posting import (
    CONTROL_TOPIC,
    DLQ_TOPIC,
    HELD_TOPIC,
    JOURNAL_TOPIC,
    MOVEMENTS_TOPIC,
    RECEIVABLES_TOPIC,
    Output,
    PostingProcessor,
)
from salesledger.streams.serde import AvroSerde
from salesledger.streams.state_store import LedgerStore
from salesledger.streams.transport import declare_contiguous, exit_on_send_error

log = logging.getLogger(__name__)
TABLE_NAME = "ledger"
METRICS_TOPIC = "metrics"
#: The ledger table's changelog is compacted; small segments let the cleaner drop superseded
#: values and the tombstoned ``out:<seq>`` keys soon, so recovery after a restart reads about
#: the live keys, not the whole history (Kafka only compacts closed segments).
#: The last documents-topic offset the agent took and when (monotonic s): read by the worker's
#: watchdog thread, which restarts a worker that stops taking records while some wait.
PROGRESS: dict[str, float] = {"offset": -1, "at": time.monotonic()}
#: Seconds between two seeks back to the next needed offset (records fetched before a seek still
#: arrive after it, and each is beyond the offset needed) / without a record before the timer
#: seeks back when Faust's committed offset is past the needed one.
GAP_RESEEK_S = 2.0
#: How often the posting agent checks that Faust's commit of the documents offset moves (s),
#: and how long it may stand still while steps were sent beyond it before the agent commits
#: itself (s); see the module docstring, "Commits".
OWN_COMMIT_CHECK_S = 5.0
OWN_COMMIT_STALL_S = 15.0
CHANGELOG_CONFIG = {
    "segment.ms": "300000",
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.2",
    "delete.retention.ms": "300000",
}


def build(app: faust.App, settings: Settings, pipeline: PipelineSettings) -> PostingProcessor:
    """Add the ledger table, the posting agent and the metrics timer to ``app``."""
    documents = declared(settings, "documents")
    _require_one_partition(settings, documents)
    table = app.Table(TABLE_NAME, default=None, partitions=1, key_type=str, value_type=bytes,
                      recovery_buffer_size=10_000, extra_topic_configs=CHANGELOG_CONFIG,
                      options=dict(ROCKSDB_OPTIONS))
    ledger = pipeline.ledger_settings()
    chart = pipeline.load_chart()
    serde = AvroSerde.for_settings(settings)
    processor = PostingProcessor(
        LedgerStore(_TableView(table)), ledger, chart, source_topic=documents, serde=serde,
        aggregator=MinuteAggregator(chart, ledger.functional_currency, pipeline.metrics_window_s))
    outputs = {suffix: raw_topic(app, declared(settings, suffix))
               for suffix in (JOURNAL_TOPIC, MOVEMENTS_TOPIC, RECEIVABLES_TOPIC, HELD_TOPIC,
                              CONTROL_TOPIC, DLQ_TOPIC, METRICS_TOPIC)}
    ready = {"state": False, "since": time.monotonic()}
    documents_tp = faust.types.TP(documents, 0)
    declare_contiguous(app, documents)
    gap = {"open": False, "at": 0.0}  # a seek back is pending; when the last one was asked
    # The last documents offset whose step's outputs were all handed to the producer (-1: none
    # since assignment), and when Faust's committed offset last moved (own_commit below).
    sent = {"offset": -1, "committed": None, "moved_at": time.monotonic()}

    @app.on_partitions_revoked.connect
    async def _revoked(app, revoked, **kwargs) -> None:  # noqa: ANN001
        ready["state"] = False
        ready["since"] = time.monotonic()
        gap["open"] = False
        sent["offset"] = -1

    async def seek_back(offset: int, seen: int | None) -> None:
        """Seek the documents partition to ``offset`` (the next one the state needs)."""
        gap["open"], gap["at"] = True, time.monotonic()
        log.warning("documents offset %d needed, %s: seeking back to it", offset,
                    f"offset {seen} came" if seen is not None else
                    "nothing came and Faust's committed offset is past it")
        try:
            await app.consumer.seek_wait({documents_tp: offset})
        except Exception:  # noqa: BLE001 - e.g. revoked meanwhile; retried GAP_RESEEK_S later
            log.exception("seek of %s to %d failed", documents_tp, offset)

    def drop_unacked(event) -> None:  # noqa: ANN001
        """Let Faust forget ``event`` without acknowledging it: an acknowledged offset may be
        committed, and a commit past an unprocessed record loses it after a restart."""
        event.message.acked = True  # Faust's ack of the event (after the loop body) is a no-op
        app.consumer._unacked_messages.discard(event.message)  # noqa: SLF001

    async def send(out: Output) -> None:
        try:
            await outputs[out.topic].send(key=out.key, value=out.value,
                                          headers=list(out.headers) or None)
        except Exception as error:  # Faust would ack the record: its outputs would be lost
            exit_on_send_error(error)

    @app.agent(raw_topic(app, documents), name="posting")
    async def posting(stream) -> None:  # noqa: ANN001
        """Post every document version and period action, in topic order."""
        async for event in stream.events():
            if not ready["state"]:
                state = processor.start()
                ready["state"] = True
                seconds = time.monotonic() - ready["since"]
                telemetry.REBUILD_SECONDS.labels("posting").set(seconds)
                log.info("ledger state opened: %s; applied through offset %d; %.1f s from "
                         "start/assignment to first record (changelog recovery included)",
                         ", ".join(f"{n:,} {kind}" for kind, n in processor.store.counts.items()),
                         processor.store.applied, seconds)
            message = event.message
            if message.offset > processor.next_seq:
                drop_unacked(event)
                if not gap["open"] or time.monotonic() - gap["at"] >= GAP_RESEEK_S:
                    await seek_back(processor.next_seq, message.offset)
                continue
            gap["open"] = False
            PROGRESS["offset"], PROGRESS["at"] = message.offset, time.monotonic()
            with telemetry.STEP_SECONDS.labels("posting").time():
                results = processor.process(message.offset, message.key, message.value)
            for out in results:
                await send(out)
            sent["offset"] = message.offset
            telemetry.RECORDS.labels("posting").inc()
            telemetry.DEAD_LETTERS.labels("posting").set(processor.stats.dead_letters)
            if message.offset % 500 == 0:
                committed = app.consumer._committed_offset.get(documents_tp)  # noqa: SLF001
                if committed is not None:
                    processor.store.forget_outputs_before(min(committed, processor.next_seq))

    @app.timer(interval=GAP_RESEEK_S)
    async def reseek_when_idle() -> None:
        """Seek back when no record came for :data:`GAP_RESEEK_S` while a seek back is pending
        or Faust's committed offset is past the next offset the state needs (module docstring)."""
        if app.rebalancing or documents_tp not in app.assignor.assigned_actives() \
                or not app.tables.recovery.completed.is_set() \
                or time.monotonic() - max(PROGRESS["at"], gap["at"]) < GAP_RESEEK_S:
            return
        needed = processor.next_seq if ready["state"] else processor.store.stored_applied() + 1
        committed = app.consumer._committed_offset.get(documents_tp)  # noqa: SLF001
        if gap["open"] or (committed is not None and committed > needed):
            await seek_back(needed, None)

    @app.timer(interval=OWN_COMMIT_CHECK_S)
    async def own_commit() -> None:
        """Commit the documents offset ourselves when Faust's commit stopped moving (module
        docstring, "Commits"): after :data:`OWN_COMMIT_STALL_S` without a move while steps
        were sent beyond it, flush the producer (every sent output and state write
        acknowledged by the broker) and commit the offset after the last fully sent step."""
        if app.rebalancing or not ready["state"] \
                or documents_tp not in app.assignor.assigned_actives():
            return
        consumer = app.consumer
        committed = consumer._committed_offset.get(documents_tp)  # noqa: SLF001
        now = time.monotonic()
        if committed != sent["committed"]:
            sent["committed"], sent["moved_at"] = committed, now
        target = sent["offset"] + 1
        if target <= (committed or 0) or now - sent["moved_at"] < OWN_COMMIT_STALL_S:
            return
        acked = consumer._acked.get(documents_tp) or []  # noqa: SLF001
        log.warning("Faust's commit of %s stayed at %s for %.0f s while steps through %d were "
                    "sent (its acknowledged offsets start %s, %d in all): flushing and "
                    "committing %d", documents_tp.topic, committed, now - sent["moved_at"],
                    target - 1, sorted(acked)[:3], len(acked), target)
        await app.producer.flush()
        if app.producer.buffer.size:  # not all handed over yet: next time
            return
        if await consumer._commit({documents_tp: target}):  # noqa: SLF001
            consumer._committed_offset[documents_tp] = max(target, committed or 0)  # noqa: SLF001

    @app.timer(interval=pipeline.metrics_flush_s)
    async def flush_metrics() -> None:
        """Produce the per-minute aggregates of closed windows."""
        if processor.aggregator is None:
            return
        for datum in processor.aggregator.flush():
            await outputs[METRICS_TOPIC].send(key=datum["metric"].encode(),
                                              value=serde.encode("metric_aggregate", datum))

    return processor


def _require_one_partition(settings: Settings, topic: str) -> None:
    """Refuse to post from a documents topic with more than one partition: the posting order
    would no longer be one total order (see deploy/topics.yaml)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    partitions = len(admin.list_topics(topic, timeout=30).topics[topic].partitions)
    if partitions != 1:
        raise SystemExit(f"{topic} has {partitions} partitions; the posting stage needs exactly "
                         "one (re-create it from deploy/topics.yaml)")


class _TableView:
    """The Faust table as ``MutableMapping[str, bytes]`` for :class:`LedgerStore` (a missing
    key reads as None: the table's default)."""

    def __init__(self, table) -> None:  # noqa: ANN001
        self.table = table

    def get(self, key: str, default=None):  # noqa: ANN001
        value = self.table.get(key)
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key] = value

    def pop(self, key: str, default=None):  # noqa: ANN001
        value = self.table.get(key)
        if value is not None:
            del self.table[key]
        return default if value is None else value

    def items(self):  # noqa: ANN201 - streaming: the table may not fit in memory
        return ((k, v) for k, v in self.table.items() if v is not None)

    def keys(self):  # noqa: ANN201
        return iter(self.table.keys())


__all__ = ["TABLE_NAME", "build"]
