"""Every Prometheus metric of salesledger, built here; one registry per process (the default).

Metrics are built unregistered in groups (``stream``, ``sink``, ``exporter``: :data:`GROUPS`);
the process that updates a group registers it (:func:`register`), so each /metrics shows what
that process emits. ``salesledger.sinks.metrics`` and ``salesledger.streams.telemetry``
re-export their group under the names their code uses; ``salesledger exporter slots`` registers
the exporter group (slot lag, held queue, overdue receivables, business sums of the metrics
topic). deploy/prometheus/*.yml may only use names defined here (tested). Labels are few and
bounded:
``stage`` (assembly | posting | sink), ``table`` (store tables), ``reason`` (dead-letter reason
codes), ``outcome``, ``topic``/``partition`` (consumer position), ``slot``/``database``,
``metric``/``currency`` (business sums).

Process memory is prometheus_client's process collector (``process_resident_memory_bytes``,
registered by default on Linux); alerting on it uses the RSS slope (CDC-20).

Bucket choices:

- per-record step time: 0.1 ms (a small document) .. 1 s (a document releasing a long held queue);
- rows per store transaction: follow ``batch_rows_max`` (2,000 by default) in ~2-2.5x steps;
- store commit latency: 1 ms (small batch on a local store) .. 10 s (a stalled store);
- freshness: 50 ms .. 5 min in ~2x steps; the freshness alert's p99 threshold (60 s) sits on a
  bucket boundary so ``histogram_quantile`` is exact there, not interpolated.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


# ------------------------------------------------------------------ stream stages (Faust)

STREAM_RECORDS = Counter("salesledger_stream_records_total",
                         "Input records processed (all outcomes), by stage.", ["stage"],
                         registry=None)
STREAM_DOCUMENTS = Counter("salesledger_stream_documents_total",
                           "Document events produced by assembly, by stage.", ["stage"],
                           registry=None)
STREAM_DEAD_LETTERS = Gauge("salesledger_stream_dead_letters",
                            "Dead letters produced since the worker started, by stage.",
                            ["stage"], registry=None)
STREAM_STEP_SECONDS = Histogram(
    "salesledger_stream_step_seconds", "Wall time to process one input record, seconds.",
    ["stage"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
    registry=None)
STREAM_REBUILD_SECONDS = Gauge("salesledger_stream_rebuild_seconds",
                               "Time the last start-up rebuild took (state replay), seconds.",
                               ["stage"], registry=None)

# ------------------------------------------------------------------ sink (accounting store)

SINK_ROWS_WRITTEN = Counter(
    "salesledger_sink_rows_written_total",
    "Rows newly inserted into the accounting store (duplicates not counted), by table.",
    ["table"], registry=None)
SINK_DUPLICATES = Counter(
    "salesledger_sink_duplicate_records_total",
    "Records whose rows already existed (re-delivery; harmless, CDC-09).", registry=None)
SINK_DEAD_LETTERS = Counter(
    "salesledger_sink_dead_letters_total",
    "Records the sink itself dead-lettered (undecodable, or rejected by the store), by reason "
    "code. Alert when it rises (the stream stages' dead letters: salesledger_stream_dead_letters).",
    ["reason"], registry=None)
SINK_BATCHES = Counter(
    "salesledger_sink_batches_total",
    "Store transactions attempted, by outcome: committed | rejected (then split) | unavailable.",
    ["outcome"], registry=None)
SINK_BATCH_ROWS = Histogram(
    "salesledger_sink_batch_rows", "Rows per committed store transaction.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000), registry=None)
SINK_COMMIT_SECONDS = Histogram(
    "salesledger_sink_commit_seconds",
    "Wall time of one store transaction (insert + offsets + commit), seconds.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10), registry=None)
SINK_FRESHNESS_SECONDS = Histogram(
    "salesledger_sink_freshness_seconds",
    "Freshness: source transaction commit (CDC source.ts) -> accounting store commit, per new "
    "journal entry, seconds.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=None)
SINK_LAST_COMMIT = Gauge(
    "salesledger_sink_last_commit_timestamp_seconds",
    "Unix time of the sink's last committed store transaction.", registry=None)

#: Outcomes and dead-letter reasons pre-created so the series exist (value 0) before the first
#: event: ``increase()`` of a series born at 1 misses that first dead letter.
SINK_OUTCOMES = ("committed", "rejected", "unavailable")
for _outcome in SINK_OUTCOMES:
    SINK_BATCHES.labels(_outcome)


# ------------------------------------------------------------------ consumer position per partition

class PartitionTracker:
    """Consumer lag and last-fetch age per (stage, topic, partition) of this process.

    ``observe(stage, topic, partition, next_offset, high_watermark)`` is called by the worker
    (per record, or from the client's statistics). Exposed at scrape time as

    - ``salesledger_consumer_lag_records``: high watermark - next offset to read (>= 0);
    - ``salesledger_consumer_last_fetch_age_seconds``: seconds since this worker last fetched a
      record of the partition or found it caught up (lag 0). It grows only while records wait
      unread: a stalled partition (CDC-19). Revoked partitions are dropped with :meth:`retain`.

    Thread-safe (observed on the consumer thread, collected on the HTTP thread). At most
    ``PARTITIONS_MAX`` partitions are kept (bounded label set).
    """

    PARTITIONS_MAX = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (stage, topic, partition) -> [next_offset, lag, last progress monotonic]
        self._state: dict[tuple[str, str, int], list] = {}
        self._refreshers: list = []

    def observe(self, stage: str, topic: str, partition: int, next_offset: int,
                high_watermark: int) -> None:
        """Record the consumer's position ``next_offset`` against ``high_watermark``."""
        if next_offset < 0 or high_watermark < 0:
            return  # unknown position (librdkafka reports -1001 before the first fetch)
        key = (stage, topic, int(partition))
        lag = max(0, high_watermark - next_offset)
        now = time.monotonic()
        with self._lock:
            item = self._state.get(key)
            if item is None:
                if len(self._state) >= self.PARTITIONS_MAX:
                    return
                self._state[key] = [next_offset, lag, now]
                return
            if next_offset > item[0] or lag == 0:
                item[2] = now
            item[0], item[1] = next_offset, lag

    def retain(self, stage: str, owned: set[tuple[str, int]]) -> None:
        """Keep only the partitions ``(topic, partition)`` the worker of ``stage`` still owns
        (a revoked partition's age would otherwise grow forever)."""
        with self._lock:
            for key in [k for k in self._state if k[0] == stage and k[1:] not in owned]:
                del self._state[key]

    def next_offset(self, stage: str, topic: str, partition: int) -> int | None:
        """The last observed next offset of a partition (None: never observed)."""
        with self._lock:
            item = self._state.get((stage, topic, int(partition)))
            return None if item is None else item[0]

    def add_refresher(self, refresh) -> None:
        """``refresh()`` is called before each collection (e.g. to re-read high watermarks of
        idle partitions); its exceptions are swallowed (a scrape must not fail)."""
        self._refreshers.append(refresh)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """The two gauge families (prometheus_client collector protocol)."""
        labels = ["stage", "topic", "partition"]
        lag = GaugeMetricFamily("salesledger_consumer_lag_records",
                                "High watermark minus the worker's next offset, records.",
                                labels=labels)
        age = GaugeMetricFamily(
            "salesledger_consumer_last_fetch_age_seconds",
            "Seconds since the worker last fetched a record of the partition or found it "
            "caught up (grows only while records wait: a stalled partition).", labels=labels)
        for refresh in self._refreshers:
            try:
                refresh()
            except Exception:  # noqa: BLE001 - racing the consumer thread; next scrape retries
                pass
        now = time.monotonic()
        with self._lock:
            items = list(self._state.items())
        for (stage, topic, partition), (_, lag_records, progressed) in items:
            values = [stage, topic, str(partition)]
            lag.add_metric(values, lag_records)
            age.add_metric(values, now - progressed)
        yield lag
        yield age


PARTITIONS = PartitionTracker()


def librdkafka_stats(stage: str):
    """A confluent-kafka ``stats_cb`` feeding :data:`PARTITIONS` from librdkafka's statistics
    (set ``statistics.interval.ms``): per assigned partition ``app_offset`` (next offset the
    application reads) against ``hi_offset`` (or ``ls_offset`` under read_committed)."""
    import json

    def callback(stats_json: str) -> None:
        stats = json.loads(stats_json)
        owned = set()
        for topic, info in stats.get("topics", {}).items():
            for pid, part in info.get("partitions", {}).items():
                if int(pid) < 0 or part.get("fetch_state") in (None, "none", "stopped"):
                    continue
                owned.add((topic, int(pid)))
                high = part.get("ls_offset", -1)
                high = high if high >= 0 else part.get("hi_offset", -1)
                PARTITIONS.observe(stage, topic, int(pid), part.get("app_offset", -1), high)
        PARTITIONS.retain(stage, owned)

    return callback


def faust_sensor(app, stage: str):
    """A Faust sensor feeding :data:`PARTITIONS` on every message a stage's consumer fetches
    (``app.sensors.add(faust_sensor(app, "posting"))``), using the consumer's high watermark;
    at each scrape the high watermarks of the assigned partitions are re-read (an idle or
    stalled partition still shows its lag) and revoked partitions dropped."""
    from faust.sensors import Sensor

    def refresh() -> None:
        # Runs in the HTTP server's thread at each scrape. ``app.consumer`` is created lazily,
        # and creating it here would bind its consumer thread to a new event loop of this
        # thread ("Future attached to a different loop" at worker start-up): read only a
        # consumer the worker's own loop has already created.
        consumer = app._consumer
        if consumer is None:
            return
        try:
            owned = {(tp.topic, tp.partition) for tp in list(consumer.assignment())}
        except Exception:  # consumer thread not started yet / being rebalanced
            return
        PARTITIONS.retain(stage, owned)
        for topic, partition in owned:
            seen = PARTITIONS.next_offset(stage, topic, partition)
            high = consumer.highwater(_tp(topic, partition))
            if seen is not None and high is not None:
                PARTITIONS.observe(stage, topic, partition, seen, high)

    def _tp(topic: str, partition: int):
        from faust.types import TP

        return TP(topic, partition)

    PARTITIONS.add_refresher(refresh)

    class _PartitionSensor(Sensor):
        def on_message_in(self, tp, offset, message) -> None:  # noqa: D102 (Faust hook)
            try:
                high = app.consumer.highwater(tp)
            except Exception:  # consumer not started / partition just revoked
                return
            if high is not None:
                PARTITIONS.observe(stage, tp.topic, tp.partition, offset + 1, high)

    return _PartitionSensor()


# ------------------------------------------------------------------ exporter (databases)

SLOT_LAG_BYTES = Gauge(
    "salesledger_replication_slot_lag_bytes",
    "WAL the slot retains: pg_current_wal_lsn() - restart_lsn, bytes (what fills the disk).",
    ["slot", "database"], registry=None)
SLOT_CONFIRMED_LAG_BYTES = Gauge(
    "salesledger_replication_slot_confirmed_lag_bytes",
    "pg_current_wal_lsn() - confirmed_flush_lsn: WAL the consumer has not confirmed, bytes.",
    ["slot", "database"], registry=None)
SLOT_ACTIVE = Gauge("salesledger_replication_slot_active",
                    "1 while a consumer (Debezium) is connected to the slot.",
                    ["slot", "database"], registry=None)
SLOT_SCRAPE_ERRORS = Counter("salesledger_exporter_errors_total",
                             "Exporter queries that failed, by source.", ["source"],
                             registry=None)
DEAD_LETTERS_OPEN = Gauge(
    "salesledger_dead_letters_open",
    "Open (unresolved) dead letters in the accounting store, of every stage, by reason code.",
    ["reason"], registry=None)
HELD_DOCUMENTS = Gauge("salesledger_held_documents",
                       "Documents waiting in the held queue of the accounting store.",
                       registry=None)
HELD_OLDEST_AGE_SECONDS = Gauge(
    "salesledger_held_documents_oldest_age_seconds",
    "Age of the oldest document waiting in the held queue, seconds (0 when none).", registry=None)

class ExporterSettings(BaseSettings):
    """``SALESLEDGER_EXPORTER_*``: ``port`` (HTTP /metrics), ``interval_s`` between reads,
    ``store_schema`` (the accounting store schema whose held queue is exported)."""

    model_config = SettingsConfigDict(env_prefix="SALESLEDGER_EXPORTER_", frozen=True,
                                      extra="ignore")

    port: int = Field(default=9463, ge=1, le=65535)
    interval_s: float = Field(default=5.0, gt=0, le=300)
    store_schema: str = "ledger"


# ------------------------------------------------------------------ business (metrics topic, store)
# Observability, not accounting: amounts become float here (Prometheus has no decimals); the
# ledger and the reports stay exact. Label ``currency`` only (the functional currency).

BUSINESS_AMOUNT = Counter(
    "salesledger_business_amount",
    "Sums of the metrics topic's money aggregates since the exporter started, by metric "
    "(revenue_amount, margin_amount, cogs_amount, returns_amount, payments_amount) and currency; "
    "rate() gives revenue / margin per second.", ["metric", "currency"], registry=None)
BUSINESS_RECORDS = Counter("salesledger_business_aggregates_total",
                           "Aggregate records read from the metrics topic.", registry=None)
OVERDUE_RECEIVABLES_AMOUNT = Gauge(
    "salesledger_overdue_receivables_amount",
    "Open receivable amount past its due date (sum over open items), by currency.",
    ["currency"], registry=None)

# ------------------------------------------------------------------ groups and registration

GROUPS: dict[str, tuple] = {
    "stream": (STREAM_RECORDS, STREAM_DOCUMENTS, STREAM_DEAD_LETTERS, STREAM_STEP_SECONDS,
               STREAM_REBUILD_SECONDS, PARTITIONS),
    "sink": (SINK_ROWS_WRITTEN, SINK_DUPLICATES, SINK_DEAD_LETTERS, SINK_BATCHES,
             SINK_BATCH_ROWS, SINK_COMMIT_SECONDS, SINK_FRESHNESS_SECONDS, SINK_LAST_COMMIT,
             PARTITIONS),
    "exporter": (SLOT_LAG_BYTES, SLOT_CONFIRMED_LAG_BYTES, SLOT_ACTIVE, SLOT_SCRAPE_ERRORS,
                 DEAD_LETTERS_OPEN, HELD_DOCUMENTS, HELD_OLDEST_AGE_SECONDS, BUSINESS_AMOUNT,
                 BUSINESS_RECORDS, OVERDUE_RECEIVABLES_AMOUNT),
}
_registered: set[int] = set()
_register_lock = threading.Lock()


def register(group: str) -> None:
    """Register ``group``'s metrics (``stream`` | ``sink`` | ``exporter``) in the default
    registry, once per process. The process updating a group registers it, so each /metrics
    shows only what that process emits (a rule over a metric nobody emits is caught by the
    live-scrape test). Raises KeyError for an unknown group."""
    with _register_lock:
        for collector in GROUPS[group]:
            if id(collector) not in _registered:
                REGISTRY.register(collector)
                _registered.add(id(collector))


__all__ = [name for name in dir() if name.isupper()] + [
    "ExporterSettings", "PartitionTracker", "faust_sensor", "librdkafka_stats", "register"]
