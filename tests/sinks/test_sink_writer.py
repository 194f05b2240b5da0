"""The sink writer against the real store: idempotency (CDC-09), offsets in the same
transaction, bisecting a rejected batch to a dead letter, and a store failure mid-batch (CDC-15)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from salesledger.ledger.model import (
    DocumentRef,
    HeldItem,
    PeriodLock,
    ReceivableUpdate,
    Release,
    StockMovement,
)
from salesledger.sinks import metrics
from salesledger.sinks.records import HeldEvent, LedgerRecord, PeriodAction, Position
from salesledger.sinks.writer import LedgerWriter, StoreUnavailable, load_offsets

from sink_factories import count, make_entry, records

pytestmark = pytest.mark.stack
TOPIC = "sltest.ledger.journal-entries"


def _writer(sink_connect, store: str, group: str = "sink-test") -> LedgerWriter:
    return LedgerWriter(sink_connect, consumer_group=group, schema=store)


def _table_counts(conn, store: str) -> dict[str, int]:
    return {t: count(conn, store, t) for t in ("journal_entries", "journal_lines", "dead_letters")}


def test_CDC_09_same_batch_written_twice_gives_one_set_of_rows(store, sink_connect, owner_conn):
    writer = _writer(sink_connect, store)
    batch = records([make_entry(n) for n in range(40)], first_offset=100)
    first = writer.write(batch)
    counts = _table_counts(owner_conn, store)
    second = writer.write(batch)

    assert first.rows_inserted["journal_entries"] == 40 and first.duplicate_entries == 0
    assert second.rows_inserted["journal_entries"] == 0 and second.duplicate_entries == 40
    assert counts == _table_counts(owner_conn, store) == {
        "journal_entries": 40, "journal_lines": 120, "dead_letters": 0}
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {0: 140}


def test_CDC_09_same_change_resent_at_a_new_offset_is_one_entry(store, sink_connect, owner_conn):
    writer = _writer(sink_connect, store)
    writer.write(records([make_entry(1)], first_offset=5))
    # After a connector restart the same change arrives again, later in the topic.
    result = writer.write(records([make_entry(2), make_entry(1)], first_offset=6))
    assert result.duplicate_entries == 1
    assert count(owner_conn, store, "journal_entries") == 2
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {0: 8}


def test_stored_offsets_never_go_backwards_when_an_older_batch_is_rewritten(
        store, sink_connect, owner_conn):
    writer = _writer(sink_connect, store)
    facts = [make_entry(n) for n in range(20)]
    writer.write(records(facts[10:], first_offset=10) +
                 records(facts[:3], topic=TOPIC, partition=1, first_offset=0))
    writer.write(records(facts[:10], first_offset=0))  # a stale re-read (rebalance, zombie)
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {0: 20, 1: 3}
    assert count(owner_conn, store, "journal_entries") == 20


def test_offsets_are_per_consumer_group_and_topic(store, sink_connect, owner_conn):
    _writer(sink_connect, store, "a").write(records([make_entry(1)], first_offset=3))
    _writer(sink_connect, store, "b").write(records([make_entry(2)], topic="sltest.other",
                                                    first_offset=9))
    assert load_offsets(owner_conn, "a", TOPIC, store) == {0: 4}
    assert load_offsets(owner_conn, "b", TOPIC, store) == {}
    assert load_offsets(owner_conn, "b", "sltest.other", store) == {0: 10}


def test_batch_with_one_unbalanced_entry_commits_the_rest_and_dead_letters_it(
        store, sink_connect, owner_conn):
    before = metrics.DEAD_LETTERS.labels("store_rejected")._value.get()
    facts = [make_entry(n, unbalanced_by="0.01" if n == 23 else "0") for n in range(64)]
    result = _writer(sink_connect, store).write(records(facts))

    assert count(owner_conn, store, "journal_entries") == 63
    stored = owner_conn.execute(sql.SQL(
        "SELECT source_topic, source_partition, source_offset, reason, message, document_id,"
        " status FROM {}").format(sql.Identifier(store, "dead_letters"))).fetchall()
    assert len(stored) == 1
    topic, partition, offset, reason, message, document_id, status = stored[0]
    assert (topic, partition, offset, reason, document_id, status) == (
        TOPIC, 0, 23, "store_rejected", "invoice:INV-23", "open")
    assert message.startswith("23514: ") and "unbalanced in AZN: debit 118.01" in message
    assert [d.source_offset for d in result.dead_letters] == [23]
    assert result.dead_letters[0].message == message
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {0: 64}
    assert metrics.DEAD_LETTERS.labels("store_rejected")._value.get() == before + 1
    assert result.transactions > 2  # it was split


def test_two_bad_entries_in_one_batch_are_both_isolated(store, sink_connect, owner_conn):
    facts = [make_entry(n, unbalanced_by="1" if n in (0, 9) else "0") for n in range(10)]
    result = _writer(sink_connect, store).write(records(facts))
    assert sorted(d.source_offset for d in result.dead_letters) == [0, 9]
    assert count(owner_conn, store, "journal_entries") == 8


def test_same_entry_id_with_other_content_is_a_dead_letter_not_a_silent_skip(
        store, sink_connect, owner_conn):
    writer = _writer(sink_connect, store)
    writer.write(records([make_entry(1, "118.00")]))
    result = writer.write(records([make_entry(1, "236.00")], first_offset=1))
    assert [(d.reason, d.source_offset) for d in result.dead_letters] == [("entry_conflict", 1)]
    amounts = owner_conn.execute(sql.SQL("SELECT sum(debit) FROM {}").format(
        sql.Identifier(store, "journal_lines"))).fetchone()[0]
    assert amounts == Decimal("118.00")


def test_subledger_facts_are_stored_once(store, sink_connect, owner_conn):
    ref = DocumentRef(type="invoice", id="7", number="INV-7", version=2)
    day = dt.date(2026, 2, 1)
    facts = [
        StockMovement(movement_id="m-1", kind="issue", accounting_date=day, document=ref,
                      sku="SKU-1", warehouse="W1", qty=Decimal("-2.5"), value=Decimal("-25.00"),
                      currency="AZN"),
        ReceivableUpdate(customer="C1", document="INV-7", accounting_date=day,
                         amount=Decimal("118.00"), currency="AZN", by=ref, kind="revenue",
                         due_date=dt.date(2026, 3, 3)),
        ReceivableUpdate(customer="C1", document="PAY-1", accounting_date=day,
                         amount=Decimal("50.00"), currency="AZN", by=ref, kind="payment",
                         is_advance=True),
        HeldItem(document_key="invoice:INV-8", document=None, reason="period_locked",
                 since=dt.datetime(2026, 2, 1, 9, tzinfo=dt.UTC)),
        PeriodLock(through=dt.date(2026, 1, 31), at=dt.datetime(2026, 2, 1, 8, tzinfo=dt.UTC),
                   by="chief.accountant"),
        Release(document_key="invoice:INV-8", at=dt.datetime(2026, 2, 2, tzinfo=dt.UTC),
                by="chief.accountant"),
        HeldEvent(document_key="invoice:INV-8", status="released", reason="period_locked",
                  version=12, changed_by="chief.accountant",
                  changed_at=dt.datetime(2026, 2, 2, tzinfo=dt.UTC)),
        PeriodAction(action="unlock", actor="chief.accountant",
                     at=dt.datetime(2026, 2, 3, tzinfo=dt.UTC), action_id="req-1"),
    ]
    writer = _writer(sink_connect, store)
    writer.write(records(facts))
    writer.write(records(facts))
    got = {t: count(owner_conn, store, t) for t in (
        "stock_ledger", "receivable_items", "advances", "held_documents", "period_actions")}
    assert got == {"stock_ledger": 1, "receivable_items": 1, "advances": 1,
                   "held_documents": 2, "period_actions": 3}
    actions = owner_conn.execute(sql.SQL("SELECT action, actor FROM {} ORDER BY occurred_at")
                                 .format(sql.Identifier(store, "period_actions"))).fetchall()
    assert actions == [("lock", "chief.accountant"), ("release", "chief.accountant"),
                       ("unlock", "chief.accountant")]
    assert count(owner_conn, store, "held_queue") == 0  # held, then released
    qty = owner_conn.execute(sql.SQL("SELECT quantity, value FROM {}").format(
        sql.Identifier(store, "stock_ledger"))).fetchone()
    assert qty == (Decimal("-2.5"), Decimal("-25.00"))


def test_a_fact_that_cannot_become_rows_is_dead_lettered(store, sink_connect, owner_conn):
    bad = make_entry(3)
    object.__setattr__(bad.lines[0], "debit", 118.0)  # a float where money belongs
    result = _writer(sink_connect, store).write(records([make_entry(1), bad]))
    assert [(d.reason, d.source_offset) for d in result.dead_letters] == [("invalid_record", 1)]
    assert count(owner_conn, store, "journal_entries") == 1
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {0: 2}


def _sink_backend_waiting_on_lock(admin_conn, settings) -> int | None:
    row = admin_conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE usename = %s AND datname = current_database()"
        " AND wait_event_type = 'Lock'", (settings.sink_role,)).fetchone()
    return row[0] if row else None


def test_CDC_15_store_fails_mid_batch_offsets_never_pass_undurable_work(
        settings, store, sink_connect, owner_conn, pg_connect):
    writer = _writer(sink_connect, store)
    writer.write(records([make_entry(n) for n in range(10)]))  # entries 0-9 durable
    batch = records([make_entry(n) for n in range(10, 20)], first_offset=10)  # N = 10..19

    # Hold the offsets table: the writer inserts the entries, then blocks at step 6 (offsets).
    blocker = pg_connect("accounting", "owner", autocommit=False)
    blocker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
        sql.Identifier(store, "consumer_offsets")))
    outcome: list[BaseException | object] = []
    thread = threading.Thread(target=lambda: _capture(outcome, writer.write, batch))
    thread.start()
    admin = pg_connect("accounting", "admin")  # sees other roles' wait events
    deadline = time.monotonic() + 120
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = _sink_backend_waiting_on_lock(admin, settings)
        time.sleep(0.05)
    if pid is None:
        blocker.rollback()
    assert pid is not None, "the writer never reached the offsets step"
    # The store goes away under the writer (its backend is terminated mid-transaction).
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    thread.join(timeout=120)
    blocker.rollback()

    assert isinstance(outcome[0], StoreUnavailable)
    # Nothing of the batch is durable, and the stored offset did not pass it.
    assert count(owner_conn, store, "journal_entries") == 10
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {0: 10}

    # Recovery: the same writer reconnects; the batch is written once, even if written twice
    # (a COMMIT whose acknowledgement was lost looks exactly like this).
    writer.write(batch)
    writer.write(batch)
    assert count(owner_conn, store, "journal_entries") == 20
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {0: 20}
    n_10 = owner_conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE document_number = 'INV-10'")
                              .format(sql.Identifier(store, "journal_entries"))).fetchone()[0]
    assert n_10 == 1


def test_CDC_15_store_unreachable_raises_and_acknowledges_nothing(store, settings, owner_conn):
    info = {**settings.conninfo("accounting", "sink"), "port": 1}  # nothing listens there
    writer = LedgerWriter(lambda: psycopg.connect(**info, connect_timeout=2),
                          consumer_group="sink-test", schema=store)
    with pytest.raises(StoreUnavailable):
        writer.write(records([make_entry(1)]))
    assert load_offsets(owner_conn, "sink-test", TOPIC, store) == {}


def _capture(out: list, fn, *args) -> None:
    try:
        out.append(fn(*args))
    except BaseException as err:  # noqa: BLE001 - handed to the test thread
        out.append(err)


def test_records_must_come_in_partition_order(store, sink_connect):
    recs = [LedgerRecord(Position(TOPIC, 0, 5), make_entry(1)),
            LedgerRecord(Position(TOPIC, 0, 4), make_entry(2))]
    with pytest.raises(AssertionError, match="out of order"):
        _writer(sink_connect, store).write(recs)


def test_freshness_is_observed_for_new_entries_only(store, sink_connect):
    before = metrics.FRESHNESS_SECONDS._sum.get(), _hist_count()
    writer = _writer(sink_connect, store)
    writer.write(records([make_entry(n) for n in range(3)]))
    writer.write(records([make_entry(n) for n in range(3)]))  # duplicates: not observed again
    after_sum, after_count = metrics.FRESHNESS_SECONDS._sum.get(), _hist_count()
    assert after_count - before[1] == 3
    # make_entry's source commit time is 2026-01-05: every entry is at least that old
    age_s = (dt.datetime.now(dt.UTC) - dt.datetime(2026, 1, 5, tzinfo=dt.UTC)).total_seconds()
    assert after_sum - before[0] >= 3 * (age_s - 60)


def _hist_count() -> float:
    return sum(s.value for s in metrics.FRESHNESS_SECONDS.collect()[0].samples
               if s.name.endswith("_count"))
