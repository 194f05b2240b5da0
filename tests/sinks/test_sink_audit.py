"""``ledger-hash`` and ``ledger check`` on real stores, through the CLI as users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from psycopg import sql

from salesledger.sinks.audit import check_ledger, ledger_hash
from salesledger.sinks.writer import LedgerWriter

from sink_factories import make_entry, records

pytestmark = pytest.mark.stack


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SALESLEDGER_PROFILE": "test"}
    return subprocess.run([sys.executable, "-m", "salesledger", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def _write(sink_connect, schema: str, facts) -> None:
    LedgerWriter(sink_connect, consumer_group="audit", schema=schema).write(records(facts))


def test_ledger_hash_is_stable_across_runs_and_insertion_order(
        store, another_store, sink_connect, owner_conn):
    facts = [make_entry(n) for n in range(30)]
    _write(sink_connect, store, facts)
    for fact in reversed(facts):  # other order, one transaction each, later ingestion times
        _write(sink_connect, another_store, [fact])

    first = _cli("ledger-hash", "--schema", store)
    again = _cli("ledger-hash", "--schema", store)
    other = _cli("ledger-hash", "--schema", another_store)
    assert first.returncode == again.returncode == other.returncode == 0, first.stderr
    digest = first.stdout.strip().splitlines()[-1]
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert again.stdout.strip().splitlines()[-1] == digest
    assert other.stdout.strip().splitlines()[-1] == digest
    assert ledger_hash(owner_conn, store)[0] == digest


def test_ledger_hash_changes_when_an_amount_changes(store, another_store, sink_connect,
                                                   owner_conn):
    _write(sink_connect, store, [make_entry(n) for n in range(5)])
    _write(sink_connect, another_store,
           [make_entry(n, "118.01" if n == 3 else "118.00") for n in range(5)])
    assert ledger_hash(owner_conn, store)[0] != ledger_hash(owner_conn, another_store)[0]


def test_ledger_hash_ignores_trailing_zeros_of_amounts(store, another_store, sink_connect,
                                                      owner_conn):
    _write(sink_connect, store, [make_entry(1, "118.00")])
    _write(sink_connect, another_store, [make_entry(1, "118.0000")])
    assert ledger_hash(owner_conn, store)[0] == ledger_hash(owner_conn, another_store)[0]


def test_ledger_check_clean_ledger_exits_0_with_totals(store, sink_connect):
    _write(sink_connect, store, [make_entry(n) for n in range(4)])
    done = _cli("ledger", "check", "--format", "json", "--schema", store)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert {k: report[k] for k in ("entries", "unbalanced", "duplicates", "total_debit",
                                   "total_credit")} == {
        "entries": 4, "unbalanced": 0, "duplicates": 0, "total_debit": "472.00",
        "total_credit": "472.00"}


def test_ledger_check_detects_a_posting_stored_under_two_ids(store, sink_connect, owner_conn):
    original = make_entry(1)
    twin = type(original)(**{**{f: getattr(original, f) for f in original.__dataclass_fields__},
                             "entry_id": "another-id-for-the-same-posting"})
    _write(sink_connect, store, [original, twin, make_entry(2)])
    done = _cli("ledger", "check", "--format", "json", "--schema", store)
    assert done.returncode == 1
    assert json.loads(done.stdout)["duplicates"] == 1
    assert check_ledger(owner_conn, store).duplicates == 1


def test_ledger_check_detects_an_unbalanced_entry(store, sink_connect, owner_conn):
    _write(sink_connect, store, [make_entry(1)])
    # Only the owner can do this, only in a scratch schema: switch the balance rule off.
    owner_conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER journal_entry_balanced").format(
        sql.Identifier(store, "journal_lines")))
    owner_conn.execute(sql.SQL(
        "INSERT INTO {} (entry_id, line_no, account, debit, credit, currency)"
        " SELECT entry_id, 9, '211', 0.50, 0, 'AZN' FROM {}").format(
        sql.Identifier(store, "journal_lines"), sql.Identifier(store, "journal_entries")))
    done = _cli("ledger", "check", "--format", "json", "--schema", store)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert (report["unbalanced"], report["total_debit"], report["total_credit"]) == (
        1, "118.50", "118.00")


def test_ledger_migrate_cli_applies_then_reports_up_to_date(owner_conn):
    import uuid

    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        first = _cli("ledger", "migrate", "--schema", schema)
        second = _cli("ledger", "migrate", "--schema", schema)
        assert first.returncode == second.returncode == 0, first.stderr
        from salesledger.sinks.migrate import discover

        assert f"applied {[m.version for m in discover()]}" in first.stdout
        assert "nothing (up to date)" in second.stdout
        assert _cli("ledger", "check", "--schema", schema).returncode == 0  # empty is clean
    finally:
        owner_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))


def test_ledger_check_on_a_schema_without_ledger_exits_2():
    done = _cli("ledger", "check", "--schema", "no_ledger_here")
    assert done.returncode == 2 and "ledger migrate" in done.stderr


def test_dead_letters_are_listed_and_resolved_once(store, sink_connect):
    facts = [make_entry(1), make_entry(2, unbalanced_by="5")]
    LedgerWriter(sink_connect, consumer_group="audit", schema=store).write(records(facts))
    listed = _cli("ledger", "dead-letters", "--schema", store)
    assert listed.returncode == 0, listed.stderr
    assert "sltest.ledger.journal-entries/0/1\tstore_rejected\tinvoice:INV-2\topen" in listed.stdout
    position = "sltest.ledger.journal-entries/0/1"
    assert _cli("ledger", "resolve", position, "--note", "re-posted", "--schema",
                store).returncode == 0
    assert _cli("ledger", "resolve", position, "--note", "again", "--schema",
                store).returncode == 1
    resolved = _cli("ledger", "dead-letters", "--status", "resolved", "--schema", store)
    assert "1 dead letter(s) resolved" in resolved.stdout


def test_ledger_check_fails_on_an_entry_redelivered_with_other_content(store, sink_connect):
    writer = LedgerWriter(sink_connect, consumer_group="audit", schema=store)
    writer.write(records([make_entry(1, "118.00")]))
    writer.write(records([make_entry(1, "236.00")], first_offset=1))  # same id, other lines
    done = _cli("ledger", "check", "--format", "json", "--schema", store)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert (report["conflicts"], report["unbalanced"], report["duplicates"]) == (1, 0, 0)
