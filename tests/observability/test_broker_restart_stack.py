"""CDC-19: the broker restarts while two sink workers run; both rejoin and every partition's
committed offset moves again within 60 s; per-partition lag and last-fetch age are metrics
throughout.

The shared broker is not touched: the test runs a broker of its own (the stack's KafkaService in
a temp stack dir on free ports, the main stack's jars), while the accounting store is the main
stack's PostgreSQL (a schema of its own). The two sink workers of ``salesledger run --workers 2``
share the group under the real supervisor (a worker that exits is restarted); a producer writes
journal entries to all six partitions of the journal-entries topic before, during and after the
restart. "Committed" is the offset stored in the accounting store with the
rows (the sink's authoritative commit, CDC-15).
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import sql

from salesledger.config import Settings
from salesledger.sinks.decode import shared_serde
from salesledger.supervisor import Supervisor, plan
from tests.observability.conftest import free_port, wait_until
from tests.observability.rules import scrape
from tests.sinks.sink_factories import make_entry

REJOIN_DEADLINE_S = 60.0  # CDC-19
PRODUCE_PER_S = 20
PARTITIONS = 6  # deploy/topics.yaml: ledger.journal-entries


class _Load(threading.Thread):
    """Produces new journal entries (keys spread over every partition) until stopped."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                                  "message.timeout.ms": 300_000})
        self.topic, self.stop, self.sent = topic, threading.Event(), 0
        self.serde = shared_serde()

    def run(self) -> None:
        base = uuid.uuid4().int % 10**9
        while not self.stop.wait(1.0 / PRODUCE_PER_S):
            entry = make_entry(base + self.sent)
            try:
                self.producer.produce(self.topic, key=entry.entry_id.encode(),
                                      partition=self.sent % PARTITIONS,
                                      value=self.serde.encode("journal_entry",
                                                              dataclasses.asdict(entry)))
                self.sent += 1
            except BufferError:
                pass  # broker down long enough to fill the queue: try again later
            self.producer.poll(0)
        self.producer.flush(120)


def _free_range(size: int) -> tuple[int, int]:
    """``size`` consecutive free ports (first, last)."""
    for _ in range(50):
        first = free_port()
        if first + size < 65535 and all(_is_free(first + i) for i in range(size)):
            return first, first + size - 1
    raise AssertionError("no free port range")


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def own_broker(settings: Settings, tmp_path):
    """A broker of this test's own: ``(settings, service)``; stopped afterwards."""
    from salesledger.stack.kafka import KafkaService
    from salesledger.stack.manager import _up_one

    stack_dir = tmp_path / "stack"
    (stack_dir / "secrets").mkdir(parents=True)
    shutil.copy(settings.stack_dir / "secrets" / "credentials.properties",
                stack_dir / "secrets" / "credentials.properties")
    ports = {"kafka_port": free_port(), "kafka_controller_port": free_port(),
             "jmx_broker_port": free_port(), "worker_metrics_ports": _free_range(5)}
    own = Settings(profile="test", stack_dir=stack_dir, jars_dir=settings.lib_dir,
                   test_topic_prefix=f"sltb{uuid.uuid4().hex[:8]}", **ports)
    service = KafkaService(own)
    _up_one(own, service, lambda _: None)
    try:
        yield own, service
    finally:
        service.stop()


@pytest.mark.stack
def test_CDC_19_broker_restart_both_sink_workers_commit_on_every_partition_again(
        settings, own_broker):
    from salesledger.sinks.migrate import apply_migrations
    from salesledger.stack.manager import _up_one

    own, broker = own_broker
    schema = f"b_{own.topic_prefix}"
    owner = psycopg.connect(**settings.conninfo("accounting", "owner"), autocommit=True)
    apply_migrations(owner, schema, writer_role=settings.sink_role,
                     reporting_role=settings.reporting_role)
    topic = own.topic("ledger.journal-entries")

    def committed() -> dict[int, int]:
        rows = owner.execute(sql.SQL("SELECT partition, next_offset FROM {} WHERE topic = %s")
                             .format(sql.Identifier(schema, "consumer_offsets")), (topic,))
        return dict(rows.fetchall())

    load = _Load(own.kafka_bootstrap, topic)
    runner = None
    try:
        env = {"SALESLEDGER_PROFILE": "test", "SALESLEDGER_STACK_DIR": str(own.stack_dir),
               "SALESLEDGER_TEST_TOPIC_PREFIX": own.topic_prefix,
               "SALESLEDGER_KAFKA_PORT": str(own.kafka_port),
               "SALESLEDGER_KAFKA_CONTROLLER_PORT": str(own.kafka_controller_port),
               "SALESLEDGER_JMX_BROKER_PORT": str(own.jmx_broker_port),
               "SALESLEDGER_SINK_SCHEMA": schema,
               "SALESLEDGER_SINK_CONSUMER_GROUP": f"{own.topic_prefix}-sink"}
        # The two sink workers of `salesledger run --workers 2`, under the real supervisor (a
        # worker that exits is restarted, as in production).
        specs = [spec for spec in plan(own, 2) if spec.stage == "sink"]
        for spec in specs:
            spec.env.update(env)
        supervisor = Supervisor(own, specs, stop_timeout_s=30)
        runner = threading.Thread(target=supervisor.run, daemon=True)
        runner.start()
        ports = [int(spec.env["SALESLEDGER_SINK_METRICS_PORT"]) for spec in specs]
        worker_logs = [own.log_dir / f"worker-{own.topic_prefix}-{spec.name}.log"
                       for spec in specs]

        def logs() -> str:
            return "\n".join(f"==== {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                             for path in worker_logs if path.exists())

        load.start()
        before = wait_until("both workers committing on all six partitions",
                            lambda: (lambda c: c if len(c) == PARTITIONS else None)(committed()),
                            details=logs)
        urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
        wait_until("each worker owns partitions (lag series on both)", lambda: all(
            any(k.startswith("salesledger_consumer_lag_records{") and topic in k
                for k in scrape(url)) for url in urls), details=logs)

        # The broker restarts (SIGTERM, then started again on the same data).
        assert broker.stop()
        outage = time.monotonic()
        while time.monotonic() - outage < 15:
            for url in urls:  # the position metrics stay visible while the broker is away
                page = scrape(url)
                assert any(k.startswith("salesledger_consumer_last_fetch_age_seconds{")
                           for k in page), page
            time.sleep(5)
        at_restart = committed()
        restarting = time.monotonic()
        _up_one(own, broker, lambda _: None)
        back = time.monotonic()

        def all_moved() -> bool:
            now = committed()
            return all(now.get(p, 0) > at_restart.get(p, 0) for p in range(PARTITIONS))

        wait_until("every partition's committed offset moving again", all_moved,
                   deadline_s=REJOIN_DEADLINE_S, pause_s=1.0, details=logs)
        rejoin_s = time.monotonic() - back
        restarts = {item.spec.name: item.restarts for item in supervisor.running}
        print(f"CDC-19: every partition committed again {rejoin_s:.1f} s after the broker was "
              f"healthy ({back - restarting:.1f} s to start it); worker restarts {restarts}; "
              f"offsets before {before}, at restart {at_restart}")
    finally:
        load.stop.set()
        if load.is_alive():
            load.join(timeout=150)
        if runner is not None:
            supervisor.stop()
            runner.join(timeout=90)
        owner.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        owner.close()
