"""Crash tests of the posting stage on the real stack (CDC-16, CDC-18): ``kill -9`` of the
posting worker while it works through a seeded simulation; after the supervisor restarts it
(state recovered from the changelog topic), the accounting store's ledger hash equals a clean
run's, ``ledger check`` is clean and the entries equal the reference engine run.

Documents are produced straight onto the documents topic (the assembly stage is covered by the
smoke test), so both runs see exactly the same input."""

from __future__ import annotations

import os
import random
import signal
import time

import psycopg
import pytest

from salesledger.sinks.audit import check_ledger, ledger_hash
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
KILLS = 3
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
    crashed.start(workers=1)
    rng = random.Random(3)
    chunk = DOCUMENTS_N // (KILLS + 1)
    kills = 0
    for start in range(0, DOCUMENTS_N, chunk):
        produce(crashed.settings.kafka_bootstrap, crashed.topic("documents"),
                records[start:start + chunk])
        if kills == KILLS:
            continue
        # wait until the posting worker works on this chunk, then kill it mid-way
        done_before = _entries_count(crashed)
        crashed.wait_for("posting under way", lambda: _entries_count(crashed) > done_before)
        time.sleep(rng.uniform(0.0, 1.5))
        pid = crashed.worker_pid("posting-0")
        os.kill(pid, signal.SIGKILL)
        kills += 1
        crashed.wait_for("posting-0 restarted", lambda: crashed.worker_pid("posting-0") != pid)
    _run_to_end(crashed, len(expected))
    assert kills == KILLS
    restarts = next(w["restarts"] for w in crashed.workers()["workers"] if w["name"] == "posting-0")
    assert restarts >= KILLS
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
