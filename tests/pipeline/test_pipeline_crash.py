"""Crash tests of the posting stage on the real stack (CDC-16, CDC-18): ten seeded ``kill -9`` of
the posting worker, each while it holds uncommitted work (proven per round, see
:mod:`tests.pipeline.crash_rounds`), while a feeder keeps producing a seeded simulation; after
each kill the supervisor restarts it (state recovered from the changelog topic). At the end the
accounting store's ledger hash equals a clean run's, ``ledger check`` is clean and the entries
equal the reference engine run. Seed: ``SALESLEDGER_CRASH_SEED`` (printed).

Documents are produced straight onto the documents topic, so both runs see exactly the same
input."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from confluent_kafka import Producer

from salesledger.sinks.audit import check_ledger, ledger_hash
from tests.pipeline.crash_rounds import KillRounds, seed
from tests.pipeline.helpers import (
    SERDE,
    decode_documents_record,
    entries_as_rows,
    group_lag,
    produce,
    reference_entries,
    same_amounts,
    simulate,
    store_entries,
)

DOCUMENTS_N = 1500
KILLS = 10
SEED = 3
#: The feeder's pace during the kills (about 7.5 documents/s: the worker always has new work,
#: and 1,500 documents outlast 16 rounds); the rest is produced at once when the kills are over.
FEED_BATCH = 3
FEED_PAUSE_S = 0.4
DEADLINE_S = 600.0


def _hash(pipeline) -> tuple[str, int, int]:
    with psycopg.connect(**pipeline.settings.conninfo("accounting", "owner"), autocommit=True,
                         connect_timeout=10) as conn:
        return ledger_hash(conn, pipeline.schema)


def _check(pipeline):
    with psycopg.connect(**pipeline.settings.conninfo("accounting", "owner"), autocommit=True,
                         connect_timeout=10) as conn:
        return check_ledger(conn, pipeline.schema)


def _entries_count(pipeline) -> int:
    return pipeline.query("SELECT count(*) FROM journal_entries")[0][0]


def _feed(pipeline, records: list[bytes], kills_over: threading.Event) -> None:
    """Produce ``records`` in order, paced until ``kills_over`` is set, then the rest at once."""
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})
    for n, value in enumerate(records):
        producer.produce(pipeline.topic("documents"), key=b"k", value=value)
        if n % FEED_BATCH == FEED_BATCH - 1 and not kills_over.is_set():
            assert producer.flush(60) == 0
            time.sleep(FEED_PAUSE_S)
    assert producer.flush(60) == 0


def _metrics_port(pipeline, worker: str) -> int:
    """The metrics port ``salesledger run --workers 1`` gives ``worker`` (see supervisor.plan)."""
    first = json.loads(pipeline.env["SALESLEDGER_WORKER_METRICS_PORTS"])[0]
    return first + ["assembly-0", "posting-0", "sink-0"].index(worker)


def _run_to_end(pipeline, expected_entries: int) -> float:
    started = time.monotonic()
    pipeline.wait_for(f"{expected_entries} journal entries in {pipeline.schema}",
                      lambda: _entries_count(pipeline) >= expected_entries, DEADLINE_S)
    seconds = time.monotonic() - started
    pipeline.wait_for("posting lag 0", lambda: group_lag(
        pipeline.settings.kafka_bootstrap, f"{pipeline.prefix}-posting",
        pipeline.topic("documents")) == 0, DEADLINE_S)
    return seconds


@pytest.mark.stack
def test_CDC_16_CDC_18_kill_9_posting_worker_and_two_workers_give_the_clean_ledger(pipeline_factory):
    records = simulate(DOCUMENTS_N, seed=11)
    reference = reference_entries([decode_documents_record(SERDE, v) for v in records])
    expected = entries_as_rows(reference)

    clean = pipeline_factory()
    produce(clean.settings.kafka_bootstrap, clean.topic("documents"), records)
    clean.start(workers=1)
    seconds = _run_to_end(clean, len(expected))
    clean.stop()
    print(f"clean run: {DOCUMENTS_N} documents, {len(expected)} entries posted and stored "
          f"in {seconds:.1f} s ({DOCUMENTS_N / seconds:.0f} documents/s end to end incl. start)")
    clean_hash = _hash(clean)
    assert same_amounts(store_entries(clean), expected)

    crashed = pipeline_factory()
    # Restart at once after each kill (the supervisor's doubling backoff would otherwise reach
    # 30 s by the sixth kill); see salesledger.supervisor.SupervisorSettings.
    crashed.env["SALESLEDGER_SUPERVISOR_BACKOFF_S_MAX"] = "1"
    crashed.start(workers=1)
    kills_over = threading.Event()
    feeder = threading.Thread(target=_feed, args=(crashed, records, kills_over), daemon=True)
    feeder.start()
    rounds = KillRounds(crashed, "posting-0", "posting", _metrics_port(crashed, "posting-0"),
                        f"{crashed.prefix}-posting", [crashed.topic("documents")],
                        seed=seed(SEED), kills=KILLS)
    print(f"posting kill rounds: seed {rounds.seed} (override: SALESLEDGER_CRASH_SEED)")
    try:
        started = time.monotonic()
        proven = rounds.run()
        kill_seconds = time.monotonic() - started
    finally:
        print(rounds.summary())
        kills_over.set()
    feeder.join(DEADLINE_S)
    assert not feeder.is_alive()
    _run_to_end(crashed, len(expected))
    assert len(proven) == KILLS
    print(f"{len(rounds.rounds)} rounds ({KILLS} with uncommitted work) in {kill_seconds:.0f} s; "
          f"restart (kill -> first record taken) max {max(r.restart_s for r in rounds.rounds):.1f} s")
    restarts = next(w["restarts"] for w in crashed.workers()["workers"] if w["name"] == "posting-0")
    assert restarts == len(rounds.rounds)
    crashed.stop()

    check = _check(crashed)
    assert check.ok and check.entries == len(expected), check.as_json()
    assert _hash(crashed) == clean_hash
    assert same_amounts(store_entries(crashed), expected)

    # Determinism: two workers per stage (one posting worker active, one standby; two sink
    # workers sharing the ledger topics' partitions) give the same ledger.
    doubled = pipeline_factory()
    doubled.start(workers=2)
    produce(doubled.settings.kafka_bootstrap, doubled.topic("documents"), records)
    _run_to_end(doubled, len(expected))
    doubled.stop()
    assert _check(doubled).ok
    assert _hash(doubled) == clean_hash

