"""Fixtures for capture tests against the real stack (profile ``test``).

Each test module that needs Debezium gets its own connector and replication slot (unique names,
``snapshot.mode=no_data`` so a new connector does not re-read the whole test database into the
shared CDC topics) and removes both afterwards: a leftover slot retains WAL. A missing service
fails the test; nothing here skips.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
CONSUME_DEADLINE_S = 180.0


@pytest.fixture(scope="session")
def settings():
    """Settings of the test profile (databases sales_test / accounting_test, prefix sltest)."""
    from salesledger.config import get_settings

    return get_settings(profile="test")


@pytest.fixture(scope="session")
def sales_dsn(settings) -> str:
    """The test sales database as the owner role, migrated."""
    from salesledger.cli.salesdb import identifiers
    from salesledger.salesdb.migrations import migrate

    dsn = settings.dsn("sales", "owner")
    migrate(dsn, identifiers(settings))
    return dsn


@dataclass
class Record:
    """One Kafka record as read back: topic, offset, key and value (parsed JSON or None)."""

    topic: str
    offset: int
    key: Any
    value: Any
    key_bytes: bytes | None
    value_bytes: bytes | None


class TopicReader:
    """Reads topics from the offsets they had when :meth:`mark` was called (partition 0..n)."""

    def __init__(self, bootstrap: str, topics: list[str], *, from_start: bool = False):
        from confluent_kafka import Consumer, TopicPartition

        self._tp = TopicPartition
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"capture-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })
        self.topics = topics
        self.records: list[Record] = []
        self.mark(from_start=from_start)

    def mark(self, *, from_start: bool = False) -> None:
        """Start reading every topic at its current end (or its start)."""
        assignments = []
        for topic in self.topics:
            meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
            assert meta.error is None, f"topic {topic}: {meta.error}"
            for partition in meta.partitions:
                low, high = self.consumer.get_watermark_offsets(self._tp(topic, partition), timeout=30)
                assignments.append(self._tp(topic, partition, low if from_start else high))
        self.consumer.assign(assignments)
        self.records = []

    def until(self, done: Callable[[list[Record]], bool], deadline_s: float = CONSUME_DEADLINE_S) -> list[Record]:
        """Poll until ``done(records so far)``; fail after ``deadline_s`` seconds."""
        deadline = time.monotonic() + deadline_s
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {deadline_s:.0f} s; got "
                                     f"{[(r.topic, r.offset) for r in self.records][-20:]}")
            message = self.consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            key, value = message.key(), message.value()
            self.records.append(Record(
                topic=message.topic(), offset=message.offset(),
                key=json.loads(key) if key else None, value=json.loads(value) if value else None,
                key_bytes=key, value_bytes=value))
        return self.records

    def catch_up(self, deadline_s: float = CONSUME_DEADLINE_S) -> list[Record]:
        """Poll until every assigned partition is read up to its end offset as of now."""
        ends = {}
        for tp in self.consumer.assignment():
            _, high = self.consumer.get_watermark_offsets(tp, timeout=30)
            ends[(tp.topic, tp.partition)] = high

        def caught_up(_: list[Record]) -> bool:
            positions = self.consumer.position(
                [self._tp(topic, partition) for topic, partition in ends])
            return all(p.offset >= ends[(p.topic, p.partition)] for p in positions)

        return self.until(caught_up, deadline_s)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Capture:
    """A running test connector: its name, slot, CDC topic prefix and a client."""

    name: str
    slot: str
    cdc_prefix: str
    client: Any
    settings: Any
    overrides: dict = field(default_factory=lambda: {"snapshot_mode": "no_data"})

    def topic(self, table: str) -> str:
        return f"{self.cdc_prefix}.sales.{table}"

    @property
    def transaction_topic(self) -> str:
        return f"{self.cdc_prefix}.transaction"

    def reader(self, *tables: str, transactions: bool = True, from_start: bool = False) -> TopicReader:
        """A reader of these tables' CDC topics (and the transaction topic), from now on or,
        with ``from_start``, from the beginning (this connector's topics are its own)."""
        topics = [self.topic(t) for t in tables] + ([self.transaction_topic] if transactions else [])
        return TopicReader(self.settings.kafka_bootstrap, topics, from_start=from_start)

    def values(self) -> dict[str, str]:
        """The connector template values of this test connector."""
        from salesledger import connect

        return connect.connector_values(self.settings, name=self.name, slot=self.slot,
                                        **self.overrides)

    def register(self) -> Any:
        """Apply this connector's config (again) and wait until it runs."""
        from salesledger import connect

        return connect.register(self.settings, name=self.name, slot=self.slot,
                                client=self.client, **self.overrides)


def start_capture(settings, sales_dsn: str, label: str, **overrides) -> Capture:
    """Register a connector of its own; wait until it runs and its slot exists.

    Each connector gets its own topic prefix ``sltc<hex>`` (topics created from
    deploy/topics.yaml, deleted by :func:`stop_capture`), name and slot: connectors sharing a
    prefix would mix their events and collide on Debezium's JMX metric names. ``overrides`` go
    to :func:`salesledger.connect.connector_values`; the snapshot mode is ``no_data`` unless
    given (a new connector must not re-read the whole test database)."""
    from salesledger import connect
    from salesledger.config import Settings
    from salesledger.salesdb.capture import slot_info
    from salesledger.stack.topics import apply_topics

    prefix = f"sltc{uuid.uuid4().hex[:8]}"
    own = Settings(profile="test", test_topic_prefix=prefix)
    apply_topics(own)
    capture = Capture(
        name=f"{prefix}-{label}",
        slot=f"{prefix}_{label}".replace("-", "_"),
        cdc_prefix=connect.cdc_topic_prefix(prefix),
        client=connect.ConnectClient(settings.connect_url),
        settings=own,
        overrides={"snapshot_mode": "no_data", **overrides},
    )
    capture.register()
    # Once the slot exists, every later change is kept for the connector (it may become
    # active only after a snapshot). Slot creation waits for running transactions.
    deadline = time.monotonic() + 300
    while slot_info(sales_dsn, capture.slot) is None:
        assert time.monotonic() < deadline, f"slot {capture.slot} not created"
        time.sleep(0.5)
    return capture


def stop_capture(capture: Capture, sales_dsn: str) -> None:
    """Delete the connector (and its offsets), drop its slot (waits until the walsender lets
    go), delete its topics."""
    from confluent_kafka.admin import AdminClient

    from salesledger.salesdb.capture import drop_slot

    capture.client.delete(capture.name, reset_offsets=True)
    drop_slot(capture.settings.dsn("sales", "cdc"), capture.slot, timeout_s=120)
    prefix = capture.settings.topic_prefix
    admin = AdminClient({"bootstrap.servers": capture.settings.kafka_bootstrap})
    topics = [t for t in admin.list_topics(timeout=30).topics
              if t.startswith(prefix + ".") or t == f"__debezium-heartbeat.{prefix}.cdc"]
    for future in admin.delete_topics(topics, operation_timeout=60).values() if topics else ():
        future.result(timeout=60)


@pytest.fixture(scope="module")
def capture(request, settings, sales_dsn) -> Iterator[Capture]:
    """A connector of this test module (unique name and slot), removed afterwards."""
    label = request.module.__name__.rsplit(".", 1)[-1].replace("test_", "").replace("_", "-")[:20]
    running = start_capture(settings, sales_dsn, label)
    try:
        yield running
    finally:
        stop_capture(running, sales_dsn)


@pytest.fixture
def sql(sales_dsn) -> Callable[..., list[tuple]]:
    """Run SQL in the test sales database (one transaction per call, as the owner)."""

    def run(statement, params: tuple | dict | None = None) -> list[tuple]:
        with psycopg.connect(sales_dsn) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    return run


def unique(prefix: str) -> str:
    """A document number no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def save_fixture(name: str, records: list[Record]) -> Path:
    """Write records as JSON lines (topic, key and value text exactly as Kafka held them)."""
    FIXTURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIXTURES_DIR / f"{name}.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({
                "topic": record.topic,
                "key": record.key_bytes.decode() if record.key_bytes else None,
                "value": record.value_bytes.decode() if record.value_bytes else None,
            }) + "\n")
    return path
