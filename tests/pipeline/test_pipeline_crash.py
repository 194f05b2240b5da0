"""Crash tests of the stream workers on the real stack (CDC-08, CDC-15, CDC-16, CDC-18).

Posting stage: ten seeded ``kill -9`` of the posting worker, each while it holds uncommitted
work (proven per round, see :mod:`tests.pipeline.crash_rounds`), while a feeder keeps producing a
seeded simulation straight onto the documents topic; after each kill the supervisor restarts it
(state recovered from the changelog topic). At the end the accounting store's ledger hash equals
a clean run's over the same records, ``ledger check`` is clean and the entries equal the
reference engine run; two workers per stage give the same ledger.

Assembly stage: ten seeded ``kill -9`` of the assembly worker, proven the same way, while
Debezium captures a seeded SQL simulation (the restart rebuilds the assembler by replaying the
CDC topics up to the committed offsets). The ledger equals a clean run over a copy of the same
CDC records.

Seeds: ``SALESLEDGER_CRASH_SEED`` overrides both (printed with every round's delay, positions
and restart time). Restarts take ~10 s: the dead worker's consumer-group session must expire
(``PipelineSettings.session_timeout_s``); the supervisor's backoff is capped at 1 s here.
"""

from __future__ import annotations

import json
import random
import threading
import time

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from salesledger.sinks.audit import check_ledger, ledger_hash
from salesledger.streams.assembly_agent import cdc_topics
from tests.pipeline.crash_rounds import KillRounds, committed_total, seed
from tests.pipeline.helpers import (
    SERDE,
    decode_documents_record,
    entries_as_rows,
    group_lag,
    produce,
    read_topic,
    reference_entries,
    same_amounts,
    simulate,
    store_entries,
)
from tests.pipeline.test_pipeline_smoke import MASTER_DATA

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


# --------------------------------------------------------------------------- the assembly stage

ASSEMBLY_SEED = 8
#: Pause between two source transactions of the SQL simulation (about 6 documents/s).
SQL_PAUSE_S = 0.15


def _sql_simulation(pipeline, sales, rng, stop: threading.Event) -> int:
    """Seeded sales activity by SQL until ``stop``: goods receipts, invoices (some created as
    drafts and posted a few transactions later: the assembler holds their rows across
    transactions), payments. Returns the number of transactions."""
    drafts: list[int] = []
    n = 0
    while not stop.is_set():
        n += 1
        number = f"{pipeline.prefix}-{n}"
        with sales.transaction():
            if n % 6 == 1:
                gr = sales.execute(
                    "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, "
                    "status) VALUES (%s, '2026-03-02', 'PS1', 'PW1', 'posted') "
                    "RETURNING goods_receipt_id", (f"GR-{number}",)).fetchone()[0]
                sales.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, "
                              "qty, unit_cost, vat_rate) VALUES (%s, 1, 'PSKU1', 40, %s, 18)",
                              (gr, rng.randint(400, 600) / 100))
            elif drafts and rng.random() < 0.3:
                sales.execute("UPDATE sales.invoices SET status = 'posted' WHERE invoice_id = %s",
                              (drafts.pop(0),))
            elif rng.random() < 0.2:
                sales.execute("INSERT INTO sales.payments (number, date, customer_code, method, "
                              "amount, status) VALUES (%s, '2026-03-04', 'PC1', 'bank', %s, "
                              "'posted')", (f"PAY-{number}", rng.randint(500, 3000) / 100))
            else:
                draft = rng.random() < 0.3
                inv = sales.execute(
                    "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, "
                    "branch_code, payment_terms_days, status) VALUES (%s, '2026-03-03', 'PC1', "
                    "'PW1', 'PB1', 30, %s) RETURNING invoice_id",
                    (f"INV-{number}", "draft" if draft else "posted")).fetchone()[0]
                for line in range(1, rng.randint(1, 3) + 1):
                    sales.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, "
                                  "unit_price, vat_rate) VALUES (%s, %s, 'PSKU1', %s, %s, 18)",
                                  (inv, line, rng.randint(1, 2), rng.randint(1000, 2500) / 100))
                if draft:
                    drafts.append(inv)
        time.sleep(SQL_PAUSE_S)
    for inv in drafts:  # every draft posted in the end
        sales.execute("UPDATE sales.invoices SET status = 'posted' WHERE invoice_id = %s", (inv,))
    return n


def _ends(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-ends"})
    try:
        out = {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=30).topics[topic]
            for p in meta.partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                                 timeout=30)[1]
        return out
    finally:
        consumer.close()


def _drained(pipeline) -> bool:
    """Assembly and posting have committed every input record, and the sink has stored every
    journal-entries record (its offsets live in the store)."""
    bootstrap = pipeline.settings.kafka_bootstrap
    cdc = cdc_topics(pipeline.settings)
    if committed_total(bootstrap, f"{pipeline.prefix}-assembly", cdc) != sum(
            _ends(bootstrap, cdc).values()):
        return False
    if group_lag(bootstrap, f"{pipeline.prefix}-posting", pipeline.topic("documents")) != 0:
        return False
    journal = pipeline.topic("ledger.journal-entries")
    stored = pipeline.query("SELECT partition, next_offset FROM consumer_offsets WHERE topic = %s",
                            (journal,))
    ends = {p: end for (_, p), end in _ends(bootstrap, [journal]).items() if end > 0}
    return {p: n for p, n in stored if n > 0} == ends


def _copy_cdc_topics(source, target) -> int:
    """Copy every record of ``source``'s CDC topics, in order, to ``target``'s topics of the
    same suffix (key, value and headers unchanged); the number of records copied."""
    producer = Producer({"bootstrap.servers": target.settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})
    copied = 0
    for topic in cdc_topics(source.settings):
        suffix = topic[len(source.prefix) + 1:]
        for message in read_topic(source.settings.kafka_bootstrap, topic):
            producer.produce(target.topic(suffix), key=message.key(), value=message.value(),
                             headers=message.headers())
            copied += 1
            producer.poll(0)
    assert producer.flush(60) == 0
    return copied


@pytest.mark.stack
def test_CDC_08_CDC_16_kill_9_assembly_worker_gives_the_clean_ledger(
        captured_pipeline, pipeline_factory, pg_connect):
    """Ten seeded ``kill -9`` of the assembly worker while Debezium captures a seeded SQL
    simulation, each while the worker holds uncommitted work (rows and transactions it has
    taken in but whose offsets are not committed; the restart rebuilds the assembler by replay
    of the CDC topics). The ledger equals a clean run over a copy of the same CDC records."""
    crashed = captured_pipeline
    sales = pg_connect("sales")
    sales.execute(MASTER_DATA)
    crashed.env["SALESLEDGER_SUPERVISOR_BACKOFF_S_MAX"] = "1"
    crashed.start(workers=1)
    rounds = KillRounds(crashed, "assembly-0", "assembly", _metrics_port(crashed, "assembly-0"),
                        f"{crashed.prefix}-assembly", cdc_topics(crashed.settings),
                        seed=seed(ASSEMBLY_SEED), kills=KILLS)
    print(f"assembly kill rounds: seed {rounds.seed} (override: SALESLEDGER_CRASH_SEED)")
    stop = threading.Event()
    transactions = []
    feeder = threading.Thread(target=lambda: transactions.append(_sql_simulation(
        crashed, pg_connect("sales"), random.Random(rounds.seed), stop)), daemon=True)
    feeder.start()
    try:
        started = time.monotonic()
        proven = rounds.run()
        kill_seconds = time.monotonic() - started
    finally:
        print(rounds.summary())
        stop.set()
    feeder.join(60)
    assert transactions, "the SQL simulation failed"
    crashed.wait_for("the crashed pipeline drained", lambda: _drained(crashed), DEADLINE_S)
    assert len(proven) == KILLS
    print(f"assembly: {transactions[0]} source transactions; {len(rounds.rounds)} rounds "
          f"({KILLS} with uncommitted work) in {kill_seconds:.0f} s; restart (kill -> first "
          f"record taken) max {max(r.restart_s for r in rounds.rounds):.1f} s")
    crashed.stop()
    check = _check(crashed)
    assert check.ok and check.entries > 0, check.as_json()
    # every invoice of the simulation is in the ledger (stock is ample: nothing held)
    mine = f"INV-{crashed.prefix}-%"
    posted = {r[0] for r in sales.execute(
        "SELECT number FROM sales.invoices WHERE number LIKE %s AND status = 'posted'", (mine,))}
    stored = {r[0] for r in crashed.query(
        "SELECT DISTINCT document_number FROM journal_entries WHERE document_number LIKE %s",
        (mine,))}
    assert posted and stored == posted, (len(posted), len(stored))

    clean = pipeline_factory()
    copied = _copy_cdc_topics(crashed, clean)
    clean.start(workers=1)
    clean.wait_for("the clean pipeline drained", lambda: _drained(clean), DEADLINE_S)
    clean.stop()
    print(f"clean run over {copied} copied CDC records: {_check(clean).entries} entries")
    assert _hash(crashed) == _hash(clean)
    assert store_entries(crashed) == store_entries(clean)
