"""CDC-15 / CDC-16 for the sink worker: seeded ``kill -9`` while it holds uncommitted work.

A producer writes journal entries to a fresh topic while the sink worker process is killed
(SIGKILL) ten times at seeded random moments and restarted. Afterwards every entry is stored
exactly once, the stored offset is the topic's end, ``ledger check`` is clean and the ledger
hash equals that of a clean, uninterrupted write of the same entries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Producer

from salesledger.sinks.audit import check_ledger, ledger_hash
from salesledger.sinks.writer import LedgerWriter, load_offsets
from salesledger.streams.serde import AvroSerde

from sink_factories import count, make_entry, records

pytestmark = [pytest.mark.stack, pytest.mark.slow]
SEED = 16
KILLS = 10
#: Upper bound of entries produced (the producer stops when the kills are over; at ~40/s the
#: bound must outlast ten slow restarts under load: 5,000 ran out once and the last kills found
#: nothing in flight).
ENTRIES_MAX = 20_000
#: Seconds a round waits, at most, for a moment with entries not yet stored before its kill.
IN_FLIGHT_WAIT_S = 5.0
DEADLINE_S = 300


def _start_sink(settings, topic_suffix: str, group: str, schema: str) -> subprocess.Popen:
    env = {**os.environ, "SALESLEDGER_PROFILE": "test", "SALESLEDGER_WORKER_NAME": "sink-crash",
           "SALESLEDGER_SINK_CONSUMER_GROUP": group, "SALESLEDGER_SINK_SCHEMA": schema,
           "SALESLEDGER_SINK_TOPICS": json.dumps([topic_suffix]),
           "SALESLEDGER_SINK_BATCH_LINGER_MS": "700", "SALESLEDGER_SINK_BATCH_ROWS_MAX": "2000"}
    return subprocess.Popen([sys.executable, "-m", "salesledger", "ledger", "sink"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_CDC_16_sink_killed_9_ten_times_stores_every_entry_once(
        settings, store, another_store, owner_conn, sink_connect, fresh_topic, consumer_group):
    rng = random.Random(SEED)
    serde = AvroSerde()
    topic = fresh_topic("ledger.journal-entries", partitions=3)
    suffix = topic[len(settings.topic_prefix) + 1:]
    group = consumer_group("crash")
    produced = [0]
    feeding = threading.Event()
    feeding.set()

    def produce() -> None:  # about 40 entries/s until the kills are over: work always in flight
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        n = 0
        while feeding.is_set() and n < ENTRIES_MAX:
            for n in range(n, n + 20):
                producer.produce(topic, key=f"invoice:INV-{n}".encode(), value=serde.encode(
                    "journal_entry", dataclasses.asdict(make_entry(n))))
            n += 1
            producer.flush(30)
            produced[0] = n
            time.sleep(0.5)

    feeder = threading.Thread(target=produce, daemon=True)
    feeder.start()
    kills_with_work_in_flight = 0
    for _ in range(KILLS):
        proc = _start_sink(settings, suffix, group, store)
        try:
            time.sleep(rng.uniform(2.0, 4.0))  # start-up, assignment, some batches
            waited = time.monotonic() + IN_FLIGHT_WAIT_S  # kill while entries are in flight
            in_flight = False
            while not in_flight and time.monotonic() < waited:
                in_flight = sum(load_offsets(owner_conn, group, topic, store).values()) < produced[0]
                if not in_flight:
                    time.sleep(0.05)
            kills_with_work_in_flight += in_flight
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
    feeding.clear()
    feeder.join(DEADLINE_S)
    total = produced[0]

    proc = _start_sink(settings, suffix, group, store)  # the last restart runs to the end
    try:
        deadline = time.monotonic() + DEADLINE_S
        while sum(load_offsets(owner_conn, group, topic, store).values()) < total:
            assert time.monotonic() < deadline, "the sink did not catch up"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)

    assert kills_with_work_in_flight >= KILLS - 2, kills_with_work_in_flight
    assert count(owner_conn, store, "journal_entries") == total
    assert count(owner_conn, store, "dead_letters") == 0
    report = check_ledger(owner_conn, store)
    assert report.ok and report.entries == total and report.duplicates == 0
    clean = [make_entry(n) for n in range(total)]
    LedgerWriter(sink_connect, consumer_group="clean", schema=another_store).write(records(clean))
    assert ledger_hash(owner_conn, store)[0] == ledger_hash(owner_conn, another_store)[0]
