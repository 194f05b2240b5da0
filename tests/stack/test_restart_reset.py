"""On a throw-away stack (own stack dir and ports, shared jars): a cold `stack up` from nothing,
`down` then `up` keeps the sales rows and the topics, `reset --profile test` wipes the test
profile's rows and topics and leaves the run profile's alone, `reset --all` wipes everything."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from salesledger.stack import process
from tests.stack.scratch import ScratchStack

OFFSET = 200


@pytest.fixture(scope="module")
def scratch(settings, tmp_path_factory):
    stack = ScratchStack.create(settings, tmp_path_factory.mktemp("scratch") / "stack", OFFSET)
    started = time.monotonic()
    result = stack.cli("stack", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    stack.cold_up_s = time.monotonic() - started
    yield stack
    stack.cli("stack", "reset", "--all", "--yes")
    stack.cli("stack", "down")


def _rows(stack: ScratchStack, db_kind: str, profile: str, table: str) -> list | None:
    s = stack.settings()
    try:
        with psycopg.connect(**s.conninfo(db_kind, "owner", profile=profile),
                             connect_timeout=10) as conn:
            return conn.execute(f"SELECT id, note FROM {table} ORDER BY id").fetchall()
    except psycopg.errors.UndefinedTable:
        return None


def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values = []
        for _ in range(20):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                values.append(msg.value())
            elif values:
                break
        return values
    finally:
        consumer.close()


@pytest.mark.stack
def test_cold_stack_up_from_nothing_is_healthy(scratch):
    result = scratch.cli("stack", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"cold stack up (shared jars): {scratch.cold_up_s:.1f} s")


@pytest.mark.stack
def test_up_is_idempotent(scratch):
    pids_before = {p.name: p.read_text() for p in (scratch.stack_dir / "run").glob("*.pid")}
    result = scratch.cli("stack", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("already running") >= 4 and "starting" not in result.stdout, \
        result.stdout
    assert {p.name: p.read_text() for p in (scratch.stack_dir / "run").glob("*.pid")} == pids_before


@pytest.mark.stack
def test_down_up_keeps_rows_and_topics_and_reset_wipes_test_profile(scratch):
    s = scratch.settings()
    table = f"keep_{uuid.uuid4().hex[:8]}"
    for profile in ("test", "run"):
        with psycopg.connect(**s.conninfo("sales", "owner", profile=profile),
                             autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
            conn.execute(f"INSERT INTO {table} VALUES (1, 'first'), (2, 'second')")
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    topics = {p: f"{s.topic_prefix_for(p)}.keep.{uuid.uuid4().hex[:8]}" for p in ("test", "run")}
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics.values()],
                                      operation_timeout=30).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all"})
    for topic in topics.values():
        producer.produce(topic, value=b"kept")
    assert producer.flush(30) == 0

    result = scratch.cli("stack", "down")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list((scratch.stack_dir / "run").glob("*.pid"))
    for field in ("pg_port", "kafka_port", "connect_port", "prometheus_port"):
        assert not process.port_in_use(s.host, scratch.port(field)), field

    result = scratch.cli("stack", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    for profile in ("test", "run"):
        assert _rows(scratch, "sales", profile, table) == [(1, "first"), (2, "second")]
        assert _read_all(s.kafka_bootstrap, topics[profile]) == [b"kept"]

    result = scratch.cli("stack", "reset", "--profile", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _rows(scratch, "sales", "test", table) is None  # database recreated empty
    assert topics["test"] not in admin.list_topics(timeout=30).topics
    # the run profile (the demo's data) is untouched
    assert _rows(scratch, "sales", "run", table) == [(1, "first"), (2, "second")]
    assert _read_all(s.kafka_bootstrap, topics["run"]) == [b"kept"]
    # and the stack is healthy again after the reset
    assert scratch.cli("stack", "status").returncode == 0


@pytest.mark.stack
def test_reset_all_stops_and_wipes_everything(scratch):
    s = scratch.settings()
    result = scratch.cli("stack", "reset", "--all", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list((scratch.stack_dir / "run").glob("*.pid")) if (scratch.stack_dir / "run").exists() else True
    assert not (scratch.stack_dir / "kafka").exists()
    from salesledger.stack.postgres import cluster_home
    assert not cluster_home(s).exists()
    assert (s.lib_dir / "broker").exists()  # the shared jars are kept
