"""The measured bench run on the real stack (``salesledger bench``).

Namespace: the TEST profile with its own databases ``sales_bench`` / ``accounting_bench``
and topic prefix ``slbench`` (created by the stack's converge, like the e2e test's), wiped
at the start of every run (:func:`salesledger.demo.orchestrate.reset_data`): neither the demo's
data (profile run) nor ``sales_test`` is touched. Its connector and slot are removed at the end
(a slot nobody reads retains WAL); databases and topics stay for inspection.

One repeat, in order (N = ``lines``; clocks are wall time, polled every
:data:`POLL_S`), each on a freshly wiped namespace (:meth:`Bench.prepare`):

1. **Debezium alone** (no worker runs): connector stopped, a backlog of N invoice lines
   committed, connector resumed; wait until the end offsets of ``<prefix>.cdc.sales.
   invoice_lines`` grew by N. N over the span between the first and the last of these
   records' timestamps (Connect's send time): ``debezium_lines_per_s``. The connector's task
   start (resume -> first record) is reported beside it (``debezium_start_s``), not in the rate.
2. **Warm-up**: ``salesledger run --workers 1`` started; wait until step 1's backlog is in
   the accounting store (``pipeline_from_topic_lines_per_s`` is recorded, informative only).
3. **Pipeline**: connector stopped, a second backlog of N lines committed, connector resumed.
   From the first line record's timestamp on the CDC topic until the last invoice's revenue and COGS
   entries are in ``ledger.journal_entries`` (its ``ingested_at``):
   ``pipeline_lines_per_s``, ``pipeline_docs_per_s``; CPU seconds of every process tree over
   this window per 1,000 documents (``cpu_s_per_1000_docs``; debezium = the Connect JVM,
   shared with other connectors of the stack).
4. **Broker**: N messages of :data:`BROKER_MESSAGE_BYTES` produced (acks=all, idempotent) to a
   topic of the bench and consumed by a concurrent consumer: ``broker_msgs_per_s``.
5. **Replay**: ``salesledger replay --from-beginning`` (its function) into a fresh schema:
   ``replay_entries_per_s``.
6. **Freshness** at 10, 100 and 1,000 offered documents/s for ``freshness_s`` seconds each:
   per delivered document, store commit (``ingested_at``, the sink transaction) minus source
   commit (``source_commit_at``, the sink's freshness measure): p50/p95/p99/max and whether
   the lag stayed bounded (:func:`salesledger.bench.figures.freshness_figures`); then up to
   :data:`FRESHNESS_DRAIN_S` for the rest, so the next rate starts on an empty pipeline
   (``drained``).
7. ``rss_mb_max`` (peak RSS, ``VmHWM``) of every worker; the workers are stopped.

The load average is recorded before the run, before every repeat and after it (``machine``).

**Soak** (``soak_s`` > 0, after the repeats; with ``repeats`` 0 alone): workers started, one
invoice through every stage, then paced invoices at ``soak_docs_per_s`` for ``soak_s``; every
worker's RSS sampled each :data:`SOAK_SAMPLE_S`; ``rss_slope_mb_per_min`` per worker after a
warm-up, RSS at 15 minutes, freshness over the soak (:func:`figures.soak_figures`).

A named :func:`namespace` (``--namespace soak``) runs beside the default one without touching it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
from psycopg import sql

from salesledger.bench import dataset, figures, procs, workload
from salesledger.config import Settings

Reporter = Callable[[str], None]

PREFIX = "slbench"
DATABASES = {"sales": "sales_bench", "accounting": "accounting_bench"}
STORE_SCHEMA = "ledger"
METRICS_PORTS = (19640, 19646)
#: Worker metrics ports of a named namespace: ``NAMESPACE_PORT_BASE + 8 * (crc32(name) % 100)``.
NAMESPACE_PORT_BASE = 21100
POLL_S = 0.05
STORE_POLL_S = 0.25
BROKER_MESSAGE_BYTES = 1024
DATASETS = ("synthetic", "online-retail-full")


class BenchError(RuntimeError):
    """A step of the bench failed (the message says which and where to look)."""


@dataclass(frozen=True)
class Namespace:
    """Where one bench run lives: topic ``prefix``, its two ``databases`` and the workers'
    metrics port range (inclusive). Two namespaces share nothing, so a soak can run in one
    while a bench runs in the other."""

    prefix: str = PREFIX
    databases: dict[str, str] = field(default_factory=lambda: dict(DATABASES))
    metrics_ports: tuple[int, int] = METRICS_PORTS


def namespace(name: str = "") -> Namespace:
    """The default namespace (``""``: ``slbench``, ``sales_bench`` / ``accounting_bench``) or a
    named one (``soak``: prefix ``slbenchsoak``, ``sales_bench_soak`` / ``accounting_bench_soak``).
    A name never starts another namespace's prefix followed by ``.`` or ``-``, so wiping one
    never touches another's topics.

    Raises:
        BenchError: ``name`` is not 1-16 lower-case letters or digits.
    """
    if not name:
        return Namespace()
    if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", name):
        raise BenchError(f"namespace {name!r}: 1-16 lower-case letters or digits")
    first = NAMESPACE_PORT_BASE + 8 * (zlib.crc32(name.encode()) % 100)
    return Namespace(f"{PREFIX}{name}", {"sales": f"sales_bench_{name}",
                                          "accounting": f"accounting_bench_{name}"},
                     (first, first + 6))


@dataclass(frozen=True)
class BenchOptions:
    """``lines``: N of the backlog (``online-retail-full``: 0 = every sales line of the file,
    else its first invoices up to N lines); ``repeats`` (0: the soak alone);
    ``freshness_s``: seconds of load per offered rate; ``soak_s``: 0 or the soak's length;
    ``soak_docs_per_s``: its offered rate; ``dataset``: one of :data:`DATASETS`;
    ``dataset_path``: the R data file of ``online-retail-full``."""

    lines: int = 100_000
    repeats: int = 3
    seed: int = 42
    freshness_s: float = 30.0
    rates: tuple[int, ...] = figures.OFFERED_DOCS_PER_S
    soak_s: float = 0.0
    soak_docs_per_s: float = 10.0
    dataset: str = "synthetic"
    dataset_path: Path | None = None
    workers: int = 1


def bench_settings(space: Namespace | None = None) -> Settings:
    """Settings of the bench's namespace (module docstring; default :func:`namespace`)."""
    space = space or Namespace()
    return Settings(profile="test", test_topic_prefix=space.prefix,
                    test_databases=space.databases)


def bench_env(settings: Settings, space: Namespace | None = None) -> dict[str, str]:
    """Environment of the bench's ``salesledger run``: its namespace, the demo's chart and
    ledger settings (so only the namespace differs from the demo's run configuration)."""
    from salesledger.demo.settings import load_demo_settings, record_pipeline_settings

    # The caller's pipeline / sink / ledger settings are dropped (the bench runs the demo's);
    # where the stack is (ports, stack dir, credentials: fields of Settings) is kept.
    stack_keys = {f"SALESLEDGER_{name.upper()}" for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SALESLEDGER_") or k in stack_keys}
    env.update(record_pipeline_settings(settings, load_demo_settings()))
    space = space or Namespace()
    env.update({"SALESLEDGER_PROFILE": "test", "SALESLEDGER_TEST_TOPIC_PREFIX": space.prefix,
                "SALESLEDGER_TEST_DATABASES": json.dumps(space.databases),
                "SALESLEDGER_WORKER_METRICS_PORTS": json.dumps(list(space.metrics_ports)),
                "SALESLEDGER_SINK_SCHEMA": STORE_SCHEMA,
                "SALESLEDGER_SINK_CONSUMER_GROUP": f"{space.prefix}-sink"})
    return env


# ---- Kafka and Connect helpers ----------------------------------------------------------------


class Offsets:
    """End offsets of one topic (sum over its partitions)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                  "group.id": f"{settings.topic_prefix}-bench-offsets",
                                  "enable.auto.commit": False})

    def ends(self) -> dict[int, int]:
        """High watermark per partition (empty while the topic does not exist)."""
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if meta is None or meta.error is not None:
            return {}
        return {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                       timeout=30)[1] for p in meta.partitions}

    def total(self) -> int:
        """Sum of the high watermarks (0 while the topic does not exist)."""
        return sum(self.ends().values())

    def span_s(self, before: dict[int, int], after: dict[int, int]) -> tuple[float, float]:
        """(first, last) record timestamps (epoch s; Connect's send time) of the records
        between ``before`` and ``after`` end offsets."""
        from confluent_kafka import TopicPartition

        stamps = []
        for partition, end in after.items():
            start = before.get(partition, 0)
            for offset in {start, end - 1} if end > start else ():
                self.consumer.assign([TopicPartition(self.topic, partition, offset)])
                message = None
                deadline = time.monotonic() + 30
                while message is None or message.error():
                    if time.monotonic() > deadline:
                        raise BenchError(f"{self.topic}[{partition}]@{offset} not readable")
                    message = self.consumer.poll(1.0)
                stamps.append(message.timestamp()[1] / 1000)
        self.consumer.unassign()
        return min(stamps), max(stamps)

    def close(self) -> None:
        self.consumer.close()


def _connect_call(settings: Settings, method: str, path: str) -> Any:
    request = urllib.request.Request(settings.connect_url + path, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
        return json.loads(raw) if raw else None


def resume_connector(settings: Settings, name: str) -> None:
    """``PUT /connectors/<name>/resume`` (from STOPPED or PAUSED) and wait until it runs."""
    from salesledger import connect

    _connect_call(settings, "PUT", f"/connectors/{name}/resume")
    connect.ConnectClient(settings.connect_url).wait_running(name, timeout_s=180)


# ---- the bench -------------------------------------------------------------------------------


@dataclass
class Bench:
    """One bench run (module docstring); :meth:`run` returns the report document."""

    options: BenchOptions
    report: Reporter
    space: Namespace = field(default_factory=Namespace)
    settings: Settings | None = None  # None: bench_settings(space)
    out_dir: Path = field(default_factory=lambda: Path(".bench"))
    supervisor: subprocess.Popen | None = None
    connector: str = ""
    repeat_loads: list[list[float]] = field(default_factory=list)
    retail: dataset.RetailBacklog | None = None  # --dataset online-retail-full

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = bench_settings(self.space)
        assert self.settings.topic_prefix == self.space.prefix, "settings of another namespace"

    def _logs(self) -> str:
        return f"{self.settings.log_dir}/worker-{self.space.prefix}-*.log"

    # ---- setup and teardown

    def prepare(self) -> None:
        """Wipe the namespace (workers stopped first), migrate, register the connector (no
        snapshot), load master data and the opening goods receipts and wait until they are
        captured."""
        from salesledger import connect
        from salesledger.demo.orchestrate import migrate, reset_data

        s = self.settings
        self.stop_workers()
        self._reset(reset_data)
        migrate(s, self.report)
        self.connector = connect.connector_name(s.topic_prefix)
        connect.register(s, snapshot_mode="no_data")
        self.report(f"connector {self.connector}: RUNNING (snapshot.mode=no_data)")
        receipts = Offsets(s, self.cdc_topic("goods_receipt_lines"))
        try:
            workload.load_master_data(s.dsn("sales", "owner"))
            receipt_lines = workload.SKUS_N
            if self.retail is not None:
                receipt_lines += dataset.load_master_data(s.dsn("sales", "owner"), self.retail)
            self._wait("opening goods receipts captured",
                       lambda: receipts.total() >= receipt_lines, 240)
        finally:
            receipts.close()

    def _reset(self, reset_data: Callable[[Settings, Reporter], None]) -> None:
        """``reset_data`` (idempotent) again, up to :data:`GROUP_EXPIRY_S`, while a consumer
        group of the namespace still has a member (a worker just stopped that did not leave
        its group: it expires with its session) or a connector of *another* namespace vanished
        between Connect's list and its config (404: a test beside us deleted its own)."""
        from confluent_kafka import KafkaError, KafkaException

        deadline = time.monotonic() + GROUP_EXPIRY_S
        while True:
            try:
                reset_data(self.settings, self.report)
                return
            except KafkaException as exc:
                if (exc.args[0].code() != KafkaError.NON_EMPTY_GROUP
                        or time.monotonic() > deadline):
                    raise
                self.report("a consumer group of the namespace still has a member; retrying")
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
                self.report(f"Connect: {exc.url} went away while resetting; retrying")
            time.sleep(5.0)

    def cleanup(self) -> None:
        """Stop the workers; delete the connector (offsets reset) and drop its slot."""
        from salesledger import connect
        from salesledger.salesdb.capture import drop_slot

        self.stop_workers()
        if self.connector:
            connect.ConnectClient(self.settings.connect_url).delete(self.connector,
                                                                    reset_offsets=True)
            drop_slot(self.settings.dsn("sales", "cdc"), connect.slot_name(self.settings.topic_prefix),
                      timeout_s=120)

    def cdc_topic(self, table: str) -> str:
        from salesledger.connect import cdc_topic_prefix

        return f"{cdc_topic_prefix(self.settings.topic_prefix)}.sales.{table}"

    def _wait(self, what: str, check: Callable[[], Any], deadline_s: float,
              poll_s: float = STORE_POLL_S) -> Any:
        deadline = time.monotonic() + deadline_s
        while True:
            value = check()
            if value:
                return value
            if self.supervisor is not None and self.supervisor.poll() is not None:
                raise BenchError(f"{what}: salesledger run exited ({self.supervisor.returncode});"
                                 f" see {self._logs()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: not within {deadline_s:.0f} s; see {self._logs()}")
            time.sleep(poll_s)

    # ---- workers

    def start_workers(self) -> dict[str, int]:
        """Start ``salesledger run``; return the worker pids by name once listed."""
        from salesledger.supervisor import read_state, state_path

        state_path(self.settings).unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"{self.space.prefix}-run.log", "ab") as log:
            self.supervisor = subprocess.Popen(
                [sys.executable, "-m", "salesledger", "run", "--workers",
                 str(self.options.workers)], stdout=log, stderr=subprocess.STDOUT,
                env=bench_env(self.settings, self.space), start_new_session=True)
        want = 1 + 2 * self.options.workers

        def listed() -> dict[str, int] | None:
            state = read_state(self.settings) or {}
            pids = {w["name"]: w["pid"] for w in state.get("workers", []) if w.get("pid")}
            return pids if len(pids) == want else None

        return self._wait("workers listed by the supervisor", listed, 120)

    def current_workers(self) -> dict[str, int]:
        """Worker pids by name from the supervisor's state file now."""
        from salesledger.supervisor import read_state

        state = read_state(self.settings) or {}
        return {w["name"]: w["pid"] for w in state.get("workers", []) if w.get("pid")}

    def stop_workers(self) -> None:
        if self.supervisor is None or self.supervisor.poll() is not None:
            self.supervisor = None
            return
        os.killpg(self.supervisor.pid, signal.SIGTERM)
        try:
            self.supervisor.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.supervisor.pid, signal.SIGKILL)
            self.supervisor.wait(timeout=30)
        self.supervisor = None

    def stage_pids(self, workers: dict[str, int]) -> dict[str, list[int]]:
        """Process trees measured for CPU: each worker stage, the Connect JVM (Debezium),
        the broker and PostgreSQL."""
        from salesledger.stack import manager

        out: dict[str, list[int]] = {}
        for name, pid in workers.items():
            out.setdefault(name.split("-")[0], []).append(pid)
        for service in manager.services(self.settings):
            label = {"connect": "debezium", "kafka": "kafka", "postgresql": "postgresql"}.get(
                service.name)
            pid = service.pid() if label else None
            if pid:
                out[label] = [pid]
        return out

    # ---- the store

    def store_counts(self, tag: str) -> tuple[int, int, float | None]:
        """(revenue entries, COGS entries, last ingested_at epoch s) of the backlog ``tag``."""
        query = sql.SQL(
            "SELECT count(*) FILTER (WHERE kind = 'revenue'), count(*) FILTER (WHERE kind = "
            "'cogs'), extract(epoch FROM max(ingested_at))::float8 FROM {}.journal_entries "
            "WHERE document_type = 'invoice' AND document_number BETWEEN %s AND %s"
        ).format(sql.Identifier(STORE_SCHEMA))
        with psycopg.connect(**self.settings.conninfo("accounting", "owner"),
                             connect_timeout=10) as conn:
            revenue, cogs, last = conn.execute(query, (f"B{tag}-", f"B{tag}-9999999")).fetchone()
        return revenue, cogs, last

    def wait_in_store(self, tag: str, docs: int, deadline_s: float) -> float:
        """Wait until every invoice of ``tag`` has its revenue and COGS entry; return the last
        entry's ``ingested_at`` (epoch s)."""
        def done() -> float | None:
            revenue, cogs, last = self.store_counts(tag)
            return last if revenue >= docs and cogs >= docs else None

        return self._wait(f"{docs} invoices of backlog {tag} in the accounting store", done,
                          deadline_s)

    # ---- the phases

    def _backlog(self, tag: str, before_resume: Callable[[], None] = lambda: None
                 ) -> tuple[list[Any], float, float, float]:
        """Stop the connector, commit a backlog of N lines, call ``before_resume``, resume;
        return (documents, resume epoch, first and last line event's timestamp, epoch s)."""
        from salesledger import connect

        n = self.options.lines
        client = connect.ConnectClient(self.settings.connect_url)
        client.stop(self.connector)
        if self.retail is None:
            docs: list[Any] = workload.documents(tag, n, self.options.seed)
            took = workload.write_documents(self.settings.dsn("sales", "owner"), docs)
        else:
            docs = list(self.retail.invoices)
            took = dataset.write_invoices(self.settings.dsn("sales", "owner"), self.retail, tag)
        self.report(f"backlog {tag}: {n:,} lines in {len(docs):,} invoices committed in "
                    f"{took:,.1f} s (connector stopped)")
        lines = Offsets(self.settings, self.cdc_topic("invoice_lines"))
        try:
            before = lines.ends()
            before_resume()
            resumed = time.time()
            resume_connector(self.settings, self.connector)
            target = sum(before.values()) + n
            self._wait(f"{n} line events on the CDC topic", lambda: lines.total() >= target,
                       300 + n / 50, POLL_S)
            first, last = lines.span_s(before, lines.ends())
        finally:
            lines.close()
        return docs, resumed, first, last

    def debezium(self, repeat: int) -> dict[str, Any]:
        docs, resumed, first, last = self._backlog(f"{repeat}d")
        figure = figures.rate(self.options.lines, max(last - first, 1e-3))
        self.report(f"debezium: {figure:,.0f} lines/s (task start {first - resumed:.1f} s)")
        return {"docs": len(docs), "debezium_lines_per_s": figure,
                "debezium_start_s": first - resumed}

    def pipeline(self, repeat: int, workers: dict[str, int], warm_docs: int) -> dict[str, Any]:
        started = time.time()
        end = self.wait_in_store(f"{repeat}d", warm_docs, 600 + self.options.lines / 20)
        from_topic = figures.rate(self.options.lines, max(end - started, 1e-3))
        self.report(f"warm-up: backlog {repeat}d in the store {end - started:,.1f} s after "
                    "the workers started")
        pids = self.stage_pids(self.current_workers() or workers)
        cpu_before: dict[str, float] = {}

        def measure_cpu() -> None:
            cpu_before.update({k: sum(procs.cpu_s(p) or 0.0 for p in v) for k, v in pids.items()})

        docs, resumed, first, _ = self._backlog(f"{repeat}p", measure_cpu)
        end = self.wait_in_store(f"{repeat}p", len(docs), 600 + self.options.lines / 20)
        cpu_after = {k: sum(procs.cpu_s(p) or 0.0 for p in v) for k, v in pids.items()}
        seconds = max(end - first, 1e-3)
        lines_per_s = figures.rate(self.options.lines, seconds)
        docs_per_s = figures.rate(len(docs), seconds)
        self.report(f"pipeline: {lines_per_s:,.0f} lines/s, {docs_per_s:,.1f} documents/s "
                    f"({seconds:,.1f} s from the first CDC event)")
        cpu = {k: (cpu_after[k] - cpu_before[k]) / len(docs) * 1000 for k in cpu_before}
        return {"pipeline_lines_per_s": lines_per_s, "pipeline_docs_per_s": docs_per_s,
                "pipeline_from_topic_lines_per_s": from_topic, "cpu_s_per_1000_docs": cpu}

    def broker(self, repeat: int) -> float:
        """Produce N messages and consume them concurrently; messages per second."""
        from confluent_kafka import Consumer, Producer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic

        s, n = self.settings, self.options.lines
        topic = f"{s.topic_prefix}.bench-broker-{repeat}"
        admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(timeout=60)
        consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": topic,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])  # no group join inside the clock
        consumer.consume(1, timeout=2.0)  # connected and positioned before the clock starts
        got = {"n": 0, "at": 0.0}

        def consume() -> None:
            deadline = time.monotonic() + 300 + n / 100
            while got["n"] < n and time.monotonic() < deadline:
                got["n"] += sum(1 for m in consumer.consume(1000, timeout=0.5) if not m.error())
            got["at"] = time.time()

        reader = threading.Thread(target=consume, daemon=True)
        producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 5})
        payload = os.urandom(BROKER_MESSAGE_BYTES)
        started = time.time()
        reader.start()
        for i in range(n):
            while True:
                try:
                    producer.produce(topic, key=str(i).encode(), value=payload)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        if producer.flush(120) != 0:
            raise BenchError("broker: messages not delivered within 120 s")
        reader.join()
        consumer.close()
        for future in admin.delete_topics([topic], operation_timeout=60).values():
            future.result(timeout=60)
        if got["n"] < n:
            raise BenchError(f"broker: consumed {got['n']} of {n} messages")
        figure = figures.rate(n, got["at"] - started)
        self.report(f"broker: {figure:,.0f} messages/s ({BROKER_MESSAGE_BYTES} B, acks=all)")
        return figure

    def replay(self, repeat: int) -> float:
        from salesledger.replay import replay_from_beginning

        schema = f"bench_replay_{repeat}"
        with psycopg.connect(**self.settings.conninfo("accounting", "owner"),
                             autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
        started = time.monotonic()
        replay_from_beginning(self.settings, schema)
        seconds = time.monotonic() - started
        with psycopg.connect(**self.settings.conninfo("accounting", "owner")) as conn:
            entries, = conn.execute(sql.SQL("SELECT count(*) FROM {}.journal_entries").format(
                sql.Identifier(schema))).fetchone()
        figure = figures.rate(entries, seconds)
        self.report(f"replay: {entries:,} entries in {seconds:,.1f} s = {figure:,.0f} entries/s")
        return figure

    def freshness_points(self, tag: str) -> list[tuple[float, float]]:
        """(source commit epoch s, store commit minus source commit s) of every invoice of
        ``tag`` whose revenue entry is in the store."""
        query = sql.SQL(
            "SELECT extract(epoch FROM source_commit_at)::float8, "
            "extract(epoch FROM ingested_at - source_commit_at)::float8 FROM {}.journal_entries "
            "WHERE document_type = 'invoice' AND document_number BETWEEN %s AND %s "
            "AND kind = 'revenue' AND source_commit_at IS NOT NULL").format(
                sql.Identifier(STORE_SCHEMA))
        with psycopg.connect(**self.settings.conninfo("accounting", "owner")) as conn:
            return conn.execute(query, (f"B{tag}-", f"B{tag}-9999999")).fetchall()

    def freshness(self, repeat: int, rate: float, seconds: float) -> dict[str, Any]:
        tag = f"{repeat}f{int(rate)}"
        docs = workload.paced_documents(tag, max(1, int(rate * seconds)), self.options.seed)
        achieved = workload.write_paced(self.settings.dsn("sales", "owner"), docs, rate)
        deadline = time.monotonic() + max(30.0, seconds)
        while time.monotonic() < deadline and self.store_counts(tag)[0] < len(docs):
            time.sleep(STORE_POLL_S)
        points = self.freshness_points(tag)
        result = figures.freshness_figures(points, len(docs), len(points), achieved)
        # the next rate starts on an empty pipeline, or says it did not (``drained``)
        deadline = time.monotonic() + FRESHNESS_DRAIN_S
        while time.monotonic() < deadline and self.store_counts(tag)[0] < len(docs):
            time.sleep(STORE_POLL_S)
        result["drained"] = self.store_counts(tag)[0] >= len(docs)
        self.report(f"freshness at {rate:g} docs/s offered ({achieved:,.0f} achieved): p50 "
                    f"{_s(result['p50'])} p99 {_s(result['p99'])} max {_s(result['max'])} "
                    f"bounded {'yes' if result['bounded'] else 'no'} "
                    f"({len(points)}/{len(docs)} delivered)")
        return result

    def repeat(self, repeat: int) -> dict[str, Any]:
        """One repeat (module docstring); returns its sample."""
        self.repeat_loads.append([round(x, 2) for x in os.getloadavg()])
        self.report(f"---- repeat {repeat} of {self.options.repeats} (load avg "
                    f"{self.repeat_loads[-1][0]:.2f})")
        self.stop_workers()
        sample = self.debezium(repeat)
        workers = self.start_workers()
        sample.update(self.pipeline(repeat, workers, sample.pop("docs")))
        sample["broker_msgs_per_s"] = self.broker(repeat)
        sample["replay_entries_per_s"] = self.replay(repeat)
        sample["freshness_s"] = {str(r): self.freshness(repeat, r, self.options.freshness_s)
                                 for r in self.options.rates}
        # pids again: a worker the supervisor restarted has a new one
        workers = self.current_workers() or workers
        sample["rss_mb_max"] = {name: procs.peak_rss_mb(pid) for name, pid in workers.items()}
        self.stop_workers()
        return sample

    def soak(self) -> dict[str, Any]:
        """Steady load at ``soak_docs_per_s`` for ``soak_s`` (tag ``soak``, synthetic
        invoices); every worker's RSS (and the load average) sampled each
        :data:`SOAK_SAMPLE_S`; then wait up to :data:`SOAK_DRAIN_S` for the last documents.
        Returns :func:`salesledger.bench.figures.soak_figures` (RSS slope per worker after
        the warm-up, RSS at 15 minutes, freshness over the soak; CDC-20).

        Raises:
            BenchError: the writer failed, or the workers exited.
        """
        opts = self.options
        self.start_workers()
        # the workers are up (one invoice through every stage) before the clock starts
        warm = workload.paced_documents("soakw", 1, opts.seed)
        workload.write_documents(self.settings.dsn("sales", "owner"), warm)
        self.wait_in_store("soakw", 1, SOAK_DRAIN_S)
        docs = workload.paced_documents("soak", max(1, int(opts.soak_docs_per_s * opts.soak_s)),
                                        opts.seed)
        failed: list[BaseException] = []

        def write() -> None:
            try:
                workload.write_paced(self.settings.dsn("sales", "owner"), docs,
                                     opts.soak_docs_per_s)
            except BaseException as exc:  # noqa: BLE001 - reported by the sampling loop
                failed.append(exc)

        writer = threading.Thread(target=write, daemon=True)
        self.report(f"soak: {len(docs):,} invoices at {opts.soak_docs_per_s:g} docs/s for "
                    f"{opts.soak_s / 60:g} min; RSS every {SOAK_SAMPLE_S:g} s")
        started = time.monotonic()
        writer.start()
        rss: dict[str, list[tuple[float, int, float]]] = {}
        loads: list[tuple[float, float]] = []

        def sample() -> float:
            minute = (time.monotonic() - started) / 60
            for name, pid in self.current_workers().items():
                value = procs.rss_mb(pid)
                if value is not None:
                    rss.setdefault(name, []).append((minute, pid, value))
            loads.append((minute, os.getloadavg()[0]))
            return minute

        next_note = 0.0
        while writer.is_alive():
            minute = sample()
            if minute >= next_note:
                self.report(self._soak_note(minute, rss))
                next_note += SOAK_NOTE_MIN
            if self.supervisor is not None and self.supervisor.poll() is not None:
                raise BenchError(f"soak: salesledger run exited; see {self._logs()}")
            writer.join(SOAK_SAMPLE_S)
        if failed:
            raise BenchError(f"soak: the writer failed: {failed[0]!r}")
        load_s = time.monotonic() - started
        sample()  # the end of the load
        deadline = time.monotonic() + SOAK_DRAIN_S
        while time.monotonic() < deadline and self.store_counts("soak")[0] < len(docs):
            time.sleep(1.0)
        points = self.freshness_points("soak")
        self.stop_workers()
        result = figures.soak_figures(rss, points, offered_docs=len(docs),
                                      achieved_docs_per_s=len(docs) / load_s,
                                      soak_min=opts.soak_s / 60)
        result.update({"minutes": opts.soak_s / 60, "docs_per_s": opts.soak_docs_per_s,
                       "sample_s": SOAK_SAMPLE_S,
                       "rss_samples_mb": {name: [[round(m, 2), pid, round(r, 1)]
                                                 for m, pid, r in points]
                                          for name, points in sorted(rss.items())},
                       "load_avg_1m": [[round(m, 2), round(v, 2)] for m, v in loads]})
        fresh = result["freshness_s"]
        self.report(f"soak: {fresh['delivered_docs']:,}/{len(docs):,} delivered, freshness p50 "
                    f"{_s(fresh['p50'])} p99 {_s(fresh['p99'])}; RSS slope MiB/min: "
                    + ", ".join(f"{k} {_signed(v)}" for k, v in
                                result["rss_slope_mb_per_min"].items()))
        return result

    def _soak_note(self, minute: float, rss: dict[str, list[tuple[float, int, float]]]) -> str:
        delivered = self.store_counts("soak")[0]
        now = ", ".join(f"{name} {points[-1][2]:.0f}" for name, points in sorted(rss.items()))
        return (f"soak {minute:5.1f} min: {delivered:,} invoices in the store; RSS MiB {now}; "
                f"load avg {os.getloadavg()[0]:.2f}")

    def load_dataset(self) -> None:
        """Read ``online-retail-full`` and plan its backlog; N becomes its line count.

        Raises:
            BenchError: no ``dataset_path``, or the file is not the Online Retail R data.
        """
        path = self.options.dataset_path
        if path is None:
            raise BenchError(f"--dataset {dataset.DATASET} needs --dataset-path")
        started = time.monotonic()
        try:
            source = dataset.read_rda(path)
        except (OSError, ImportError, dataset.RetailDataError) as exc:
            raise BenchError(f"--dataset-path {path}: {exc}") from exc
        self.retail = dataset.plan_backlog(source, self.options.lines or None)
        self.options = dataclasses.replace(self.options, lines=self.retail.lines)
        self.report(f"{dataset.DATASET}: {len(source):,} lines read in "
                    f"{time.monotonic() - started:,.1f} s; backlog {self.retail.lines:,} lines "
                    f"in {len(self.retail.invoices):,} invoices; left out "
                    + ", ".join(f"{k} {v:,}" for k, v in self.retail.left_out_lines.items()))

    def run(self) -> dict[str, Any]:
        """Prepare, run every repeat (and the soak), clean up; return the report document
        (:func:`salesledger.bench.figures.report`; with the soak: ``soak`` and its
        ``rss_slope_mb_per_min`` / ``rss_mb_at_15_min`` per worker at the top level)."""
        if not self.options.repeats and not self.options.soak_s:
            raise BenchError("nothing to measure: no repeat and no soak")
        if self.options.dataset == dataset.DATASET:
            self.load_dataset()
        load_before = os.getloadavg()
        samples: list[dict[str, Any]] = []
        soak = None
        try:
            # every repeat (and the soak) on a fresh namespace: what an earlier step left in
            # flight (an offered rate the pipeline could not keep up with) is not measured again
            for repeat in range(1, self.options.repeats + 1):
                self.prepare()
                samples.append(self.repeat(repeat))
            if self.options.soak_s:
                self.prepare()
                soak = self.soak()
        finally:
            self.cleanup()
        run_keys = {"machine": machine(load_before, self.repeat_loads),
                    "versions": versions(self.settings),
                    "settings": differing_settings(self.settings, self.options, self.space,
                                                   self.retail),
                    "seed": self.options.seed}
        document = (figures.report(samples, **run_keys) if samples
                    else {**run_keys, "repeats": 0, "samples": []})
        if soak is not None:
            document["soak"] = soak
            document["rss_slope_mb_per_min"] = soak["rss_slope_mb_per_min"]
            document["rss_mb_at_15_min"] = soak["rss_mb_at_15_min"]
        return document


#: Seconds a stopped worker's consumer group membership may take to expire (session timeout).
GROUP_EXPIRY_S = 120.0
#: Seconds an offered rate's documents may take after its window before the next rate starts.
FRESHNESS_DRAIN_S = 60.0
#: Seconds between two RSS samples of the soak.
SOAK_SAMPLE_S = 30.0
#: Minutes between two progress lines of the soak.
SOAK_NOTE_MIN = 5.0
#: Seconds the soak waits after its load for the last documents to reach the store.
SOAK_DRAIN_S = 300.0


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def machine(load_before: tuple[float, float, float],
            repeat_loads: list[list[float]] | None = None) -> dict[str, Any]:
    """CPU model, cores, memory, kernel and the load average (1, 5, 15 min) before the run,
    before each repeat (``load_avg_per_repeat``) and after the run."""
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 ** 2, 1),
            "kernel": platform.release(), "load_avg_before": list(load_before),
            "load_avg_per_repeat": list(repeat_loads or []),
            "load_avg_after": list(os.getloadavg()),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def checkout() -> dict[str, Any]:
    """The commit the bench's code was run from and whether the package differs from it
    (``salesledger_commit``, ``salesledger_dirty``; None outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", "salesledger")
    return {"salesledger_commit": commit,
            "salesledger_dirty": None if status is None else bool(status)}


def versions(settings: Settings) -> dict[str, Any]:
    """Versions of Python, the Python libraries, PostgreSQL, Kafka (Connect) and Debezium, and
    the checkout's commit (:func:`checkout`)."""
    from importlib import metadata

    import confluent_kafka

    out: dict[str, Any] = {"python": platform.python_version()}
    out.update(checkout())
    for package in ("salesledger", "faust-streaming", "confluent-kafka", "psycopg", "fastavro",
                    "pyreadr"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    out["librdkafka"] = confluent_kafka.libversion()[0]
    with psycopg.connect(**settings.conninfo("sales", "owner")) as conn:
        out["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    try:
        out["kafka_connect"] = _connect_call(settings, "GET", "/")["version"]
        out["debezium"] = next((p["version"] for p in _connect_call(
            settings, "GET", "/connector-plugins") if "PostgresConnector" in p["class"]), None)
    except OSError:
        out["kafka_connect"] = out["debezium"] = None
    return out


def differing_settings(settings: Settings, options: BenchOptions,
                       space: Namespace | None = None,
                       retail: dataset.RetailBacklog | None = None) -> dict[str, Any]:
    """Every setting that differs from the demo's run configuration (namespace, snapshot,
    workload, the bench's own knobs, the workers' pipeline environment) and the durability
    settings as the servers report them (unchanged: ``fsync``, ``synchronous_commit`` of the
    sales database and of the sink's role on the accounting store, acks=all)."""
    space = space or Namespace()
    durability: dict[str, Any] = {}
    for kind, role in (("sales", "owner"), ("accounting", "sink")):
        with psycopg.connect(**settings.conninfo(kind, role)) as conn:
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                value = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                durability[name if kind == "sales" else f"{kind}_{role}_{name}"] = value
    durability["bench_producer_acks"] = "all"
    pipeline_env = {k: v for k, v in bench_env(settings, space).items()
                    if k.startswith(("SALESLEDGER_PIPELINE_", "SALESLEDGER_SINK_",
                                     "SALESLEDGER_LEDGER_")) and "PASSWORD" not in k}
    dataset = ("synthetic seeded invoices, 1..{} lines, GBP 20 % VAT included".format(
        workload.LINES_PER_DOC_MAX) if options.dataset == "synthetic" else
        "Online Retail, the complete file (its sales lines as invoices, real SKUs, customers, "
        "quantities and prices; see salesledger/bench/dataset.py)")
    return {"profile": "test (run: run)", "topic_prefix": f"{space.prefix} (run: sl)",
            "databases": f"{space.databases['sales']}/{space.databases['accounting']} "
                         "(run: sales/accounting)",
            "snapshot_mode": "no_data (run: initial; the bench loads its own master data)",
            "connector_paused_for_backlog": True,
            "workload": f"{dataset} (run: Online Retail slice, paced)",
            "dataset": options.dataset,
            "workers": options.workers, "lines": options.lines, "repeats": options.repeats,
            "rates_docs_per_s": list(options.rates),
            "freshness_s_per_rate": options.freshness_s,
            "soak_minutes": options.soak_s / 60, "soak_docs_per_s": options.soak_docs_per_s,
            "worker_environment": "the caller's SALESLEDGER_* stack settings (ports, stack dir, "
                                  "credentials) kept; pipeline, sink and ledger settings are "
                                  "the demo's",
            "worker_pipeline_environment": pipeline_env,
            "durability": durability,
            "dataset_backlog": None if retail is None else {
                "source_lines": retail.source_lines, "lines": retail.lines,
                "invoices": len(retail.invoices), "left_out_lines": retail.left_out_lines,
                "path": str(options.dataset_path)}}
