"""The sink worker end to end: Kafka topic -> store, dead letters, restart from stored offsets,
graceful SIGTERM (real Kafka and PostgreSQL of the stack)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from salesledger.sinks.settings import SinkSettings
from salesledger.sinks.worker import SinkWorker
from salesledger.sinks.writer import load_offsets
from salesledger.streams.deadletter import HEADER_REASON, HEADER_SOURCE_OFFSET, DeadLetter
from salesledger.streams.serde import AvroSerde

from sink_factories import count, make_entry

pytestmark = pytest.mark.stack
#: Generous liveness bound (the worker needs well under a second per batch).
DEADLINE_S = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _produce(settings, topic: str, values: list[bytes | None]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for value in values:
        producer.produce(topic, key=b"invoice", value=value)
    assert producer.flush(60) == 0


def _suffix(settings, topic: str) -> str:
    return topic[len(settings.topic_prefix) + 1:]


def _wait_for_offset(owner_conn, group: str, topic: str, schema: str, offset: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if load_offsets(owner_conn, group, topic, schema).get(0, 0) >= offset:
            return
        time.sleep(0.2)
    raise AssertionError(f"stored offset never reached {offset}: "
                         f"{load_offsets(owner_conn, group, topic, schema)}")


def _start(worker: SinkWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def _read_all(settings, topic: str, group: str) -> list:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            out.append(msg)
            deadline = time.monotonic() + 3
    consumer.close()
    return out


def test_worker_writes_dead_letters_and_resumes_from_stored_offsets(
        settings, store, owner_conn, fresh_topic, consumer_group):
    serde = AvroSerde.for_settings(settings)  # the worker's framing: decodes its dead letters
    topic = fresh_topic("ledger.journal-entries")
    dlq = fresh_topic("dlq")
    group = consumer_group("sink")
    encode = lambda e: serde.encode("journal_entry", dataclasses.asdict(e))  # noqa: E731
    # offsets 0-4 entries, 5 garbage (poison pill), 6 an unbalanced entry, 7-9 entries
    values = [encode(make_entry(n)) for n in range(5)] + [b"\x01\x02garbage"]
    values += [encode(make_entry(6, unbalanced_by="1"))] + [encode(make_entry(n)) for n in (7, 8, 9)]
    _produce(settings, topic, values)

    sink = SinkSettings(consumer_group=group, topics=(_suffix(settings, topic),),
                        dead_letter_topic=_suffix(settings, dlq), schema_name=store,
                        batch_rows_max=20, batch_linger_ms=100, poll_ms=50)
    worker = SinkWorker(settings, sink)
    thread = _start(worker)
    _wait_for_offset(owner_conn, group, topic, store, 10)
    worker.stop_event.set()
    thread.join(DEADLINE_S)
    assert not thread.is_alive()

    assert count(owner_conn, store, "journal_entries") == 8
    stored = owner_conn.execute(
        f'SELECT source_offset, reason FROM "{store}".dead_letters ORDER BY 1').fetchall()
    assert [o for o, _ in stored] == [5, 6]
    assert stored[1][1] == "store_rejected" and stored[0][1] in ("undecodable", "converter_mismatch")
    published = _read_all(settings, dlq, consumer_group("read"))
    headers = [dict(m.headers()) for m in published]
    assert sorted(h[HEADER_SOURCE_OFFSET] for h in headers) == [b"5", b"6"]
    letter = DeadLetter.from_avro(serde.decode(published[0].value()))
    assert letter.source_topic == topic and headers[0][HEADER_REASON] == letter.reason.encode()

    # Kafka's committed offset followed the store (best effort, but it works on a healthy broker).
    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    committed = probe.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    probe.close()
    assert committed == 10

    # Restart: more records arrive; a new worker resumes from the store's offsets.
    _produce(settings, topic, [encode(make_entry(n)) for n in (10, 11)] + [encode(make_entry(3))])
    worker = SinkWorker(settings, sink)
    thread = _start(worker)
    _wait_for_offset(owner_conn, group, topic, store, 13)
    worker.stop_event.set()
    thread.join(DEADLINE_S)
    assert worker.stats.records == 3  # only the new records were read again
    assert count(owner_conn, store, "journal_entries") == 10  # entry 3 re-sent: still once
    assert count(owner_conn, store, "dead_letters") == 2


def test_worker_stops_gracefully_on_sigterm(settings, store, owner_conn, fresh_topic,
                                            consumer_group):
    serde = AvroSerde()
    topic = fresh_topic("ledger.journal-entries")
    group = consumer_group("sink")
    _produce(settings, topic, [serde.encode("journal_entry", dataclasses.asdict(make_entry(n)))
                               for n in range(25)])
    port = _free_port()
    env = {**os.environ, "SALESLEDGER_PROFILE": "test", "SALESLEDGER_SINK_METRICS_PORT": str(port),
           "SALESLEDGER_SINK_CONSUMER_GROUP": group,
           "SALESLEDGER_SINK_TOPICS": json.dumps([_suffix(settings, topic)]),
           "SALESLEDGER_SINK_SCHEMA": store}
    proc = subprocess.Popen([sys.executable, "-m", "salesledger", "ledger", "sink"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_offset(owner_conn, group, topic, store, 25)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
        assert b'salesledger_sink_rows_written_total{table="journal_entries"} 25.0' in scraped
        assert b"salesledger_sink_freshness_seconds_count 25.0" in scraped
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "sink stopped" in out
    assert count(owner_conn, store, "journal_entries") == 25


def _committed(settings, group: str, topic: str) -> int:
    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        return probe.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        probe.close()


def _wait_for_blocked_sink(admin, settings, schema_hint: str, not_pids=()) -> int:
    """The pid of a sink backend waiting on a lock in ``schema_hint`` (a new one: not in
    ``not_pids``, which may linger a moment after being terminated)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'"
            " AND datname = current_database() AND query LIKE %s AND NOT pid = ANY(%s)",
            (settings.sink_role, f"%{schema_hint}%", list(not_pids))).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError("the sink never blocked on the offsets table")


def test_CDC_15_worker_survives_the_store_failing_mid_write_and_acks_only_durable_work(
        settings, store, owner_conn, fresh_topic, consumer_group, pg_connect):
    from psycopg import sql

    serde = AvroSerde()
    encode = lambda e: serde.encode("journal_entry", dataclasses.asdict(e))  # noqa: E731
    topic = fresh_topic("ledger.journal-entries")
    group = consumer_group("sink")
    _produce(settings, topic, [encode(make_entry(n)) for n in range(10)])
    sink = SinkSettings(consumer_group=group, topics=(_suffix(settings, topic),),
                        schema_name=store, batch_linger_ms=100, poll_ms=50,
                        store_retry_ms_max=200)
    worker = SinkWorker(settings, sink)
    thread = _start(worker)
    try:
        _wait_for_offset(owner_conn, group, topic, store, 10)
        blocker = pg_connect("accounting", "owner", autocommit=False)
        blocker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(store, "consumer_offsets")))
        _produce(settings, topic, [encode(make_entry(n)) for n in range(10, 15)])  # N = 10..14
        admin = pg_connect("accounting", "admin")
        killed: list[int] = []
        for _ in range(2):  # the store fails under the writer twice, mid-transaction
            pid = _wait_for_blocked_sink(admin, settings, store, killed)
            assert _committed(settings, group, topic) == 10  # nothing acknowledged past 10
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)
        _wait_for_blocked_sink(admin, settings, store, killed)
        assert count(owner_conn, store, "journal_entries") == 10
        blocker.rollback()  # the store is back
        _wait_for_offset(owner_conn, group, topic, store, 15)
    finally:
        worker.stop_event.set()
        thread.join(DEADLINE_S)
    assert not thread.is_alive()
    assert worker.stats.store_retries >= 2
    assert count(owner_conn, store, "journal_entries") == 15
    n_10 = owner_conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE document_number = 'INV-10'")
                              .format(sql.Identifier(store, "journal_entries"))).fetchone()[0]
    assert n_10 == 1
    assert _committed(settings, group, topic) == 15


def test_worker_refuses_a_store_schema_without_its_migrations(settings, fresh_topic,
                                                               consumer_group):
    from salesledger.sinks.worker import SchemaNotReady

    topic = fresh_topic("ledger.journal-entries")
    sink = SinkSettings(consumer_group=consumer_group("sink"),
                        topics=(_suffix(settings, topic),), schema_name="no_such_schema")
    with pytest.raises(SchemaNotReady, match="ledger migrate"):
        SinkWorker(settings, sink).run()
