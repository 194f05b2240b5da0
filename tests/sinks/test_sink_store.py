"""The accounting store's migrations and what the store itself enforces (real PostgreSQL)."""

from __future__ import annotations

import shutil
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors, sql

from salesledger.resources import resource_path
from salesledger.sinks.migrate import MigrationError, applied_versions, apply_migrations, discover
from salesledger.sinks.writer import LedgerWriter

from sink_factories import count, make_entry, records

pytestmark = pytest.mark.stack

# Append-only tables and a column of each (for the UPDATE attempt).
APPEND_ONLY = {"journal_entries": "kind", "journal_lines": "debit", "stock_ledger": "value",
               "receivable_items": "amount", "advances": "amount", "held_documents": "reason",
               "period_actions": "actor", "accounts": "name"}


def _exec(connect, schema: str, statement: str, params=()) -> None:
    """Run one statement as the role of ``connect`` in ``schema`` and commit."""
    with connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(statement, params)
        conn.commit()


def _insert_entry_sql(entry_id: str, lines: list[tuple[str, str, str]]) -> str:
    values = ", ".join(f"('{entry_id}', {i}, '{acc}', {d}, {c}, 'AZN')"
                       for i, (acc, d, c) in enumerate(lines, start=1))
    return (
        "INSERT INTO accounts (code) VALUES ('211'), ('601') ON CONFLICT DO NOTHING;"
        f"INSERT INTO journal_entries (entry_id, kind, accounting_date, document_type,"
        f" document_id, document_number, document_version, rule, content_sha256)"
        f" VALUES ('{entry_id}', 'revenue', '2026-01-05', 'invoice', '1', 'INV-1', 1,"
        f" 'sale.revenue', repeat('0', 64));"
        f"INSERT INTO journal_lines (entry_id, line_no, account, debit, credit, currency)"
        f" VALUES {values};"
    )


def test_migrations_apply_in_order_once_and_twice_is_a_no_op(settings, owner_conn, store):
    expected = [m.version for m in discover()]
    assert applied_versions(owner_conn, store) == expected == list(range(1, len(expected) + 1))
    again = apply_migrations(owner_conn, store, writer_role=settings.sink_role,
                             reporting_role=settings.reporting_role)
    assert again == []
    assert applied_versions(owner_conn, store) == expected


def test_an_applied_migration_edited_later_is_refused(settings, owner_conn, store, tmp_path):
    copy = tmp_path / "accounting"
    shutil.copytree(resource_path("deploy/sql/accounting"), copy)
    edited = copy / "002_chart_and_journal.sql"
    edited.write_text(edited.read_text() + "\n-- an edit after release\n")
    with pytest.raises(MigrationError, match="edited after being applied"):
        apply_migrations(owner_conn, store, writer_role=settings.sink_role,
                         reporting_role=settings.reporting_role, directory=copy)


@pytest.mark.parametrize("table", sorted(APPEND_ONLY))
@pytest.mark.parametrize("statement", ["UPDATE {t} SET {c} = {c}", "DELETE FROM {t}",
                                       "TRUNCATE {t}"])
def test_writer_role_cannot_update_delete_or_truncate_ledger_rows(
        store, sink_connect, table, statement):
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
        _exec(sink_connect, store, sql.SQL(statement).format(
            t=sql.Identifier(table), c=sql.Identifier(APPEND_ONLY[table])))


def test_ledger_rows_are_append_only_even_for_the_owner(store, owner_conn, sink_connect):
    LedgerWriter(sink_connect, consumer_group="g", schema=store).write(records([make_entry(1)]))
    for statement in ("UPDATE {}.journal_lines SET debit = debit + 1",
                      "DELETE FROM {}.journal_entries"):
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
            owner_conn.execute(sql.SQL(statement).format(sql.Identifier(store)))
    assert count(owner_conn, store, "journal_entries") == 1


def test_reporting_role_reads_but_cannot_write(store, reporting_connect):
    with reporting_connect() as conn:
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(store, "journal_entries"))).fetchone()
    with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
        with reporting_connect() as conn:
            conn.execute(sql.SQL("INSERT INTO {} (code) VALUES ('999')").format(
                sql.Identifier(store, "accounts")))


def test_unbalanced_entry_inserted_directly_fails_at_commit_not_before(store, sink_connect):
    with sink_connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(store)))
        # The statements themselves succeed: the balance rule is deferred to COMMIT.
        conn.execute(_insert_entry_sql("e-unbalanced", [("211", "118.00", "0"),
                                                        ("601", "0", "100.00")]))
        with pytest.raises(errors.CheckViolation, match="unbalanced in AZN: debit 118.00"):
            conn.commit()
    with sink_connect() as conn:
        assert count(conn, store, "journal_entries") == 0
        assert count(conn, store, "journal_lines") == 0


def test_entry_without_lines_fails_at_commit(store, sink_connect):
    statement = _insert_entry_sql("e-empty", [("211", "1", "0")]).rsplit("INSERT INTO journal_lines", 1)[0]
    with pytest.raises(errors.CheckViolation, match="has no lines"):
        _exec(sink_connect, store, statement)


def test_red_storno_negative_amounts_on_the_usual_side_are_allowed(store, sink_connect):
    _exec(sink_connect, store, _insert_entry_sql("e-storno", [("211", "-11.80", "0"),
                                                              ("601", "0", "-11.80")]))
    with sink_connect() as conn:
        got = conn.execute(sql.SQL("SELECT sum(debit), sum(credit) FROM {}").format(
            sql.Identifier(store, "journal_lines"))).fetchone()
    assert got == (Decimal("-11.80"), Decimal("-11.80"))


def test_a_line_added_later_to_a_balanced_entry_is_rejected(store, sink_connect):
    _exec(sink_connect, store, _insert_entry_sql("e-1", [("211", "5", "0"), ("601", "0", "5")]))
    with pytest.raises(errors.CheckViolation, match="unbalanced"):
        _exec(sink_connect, store, "INSERT INTO journal_lines (entry_id, line_no, account, debit,"
                                   " credit, currency) VALUES ('e-1', 3, '211', 1, 0, 'AZN')")


def test_a_line_with_both_sides_is_rejected(store, sink_connect):
    with pytest.raises(errors.CheckViolation, match="one_side"):
        _exec(sink_connect, store, _insert_entry_sql("e-2", [("211", "5", "5")]))


def test_stored_offsets_never_go_backwards(store, sink_connect):
    _exec(sink_connect, store, "INSERT INTO consumer_offsets (consumer_group, topic, partition,"
                               " next_offset) VALUES ('g', 't', 0, 10)")
    _exec(sink_connect, store, "UPDATE consumer_offsets SET next_offset = 11")
    with pytest.raises(errors.CheckViolation, match="may not go backwards: 11 -> 3"):
        _exec(sink_connect, store, "UPDATE consumer_offsets SET next_offset = 3")
    with pytest.raises(errors.InsufficientPrivilege):
        _exec(sink_connect, store, "UPDATE consumer_offsets SET topic = 'other'")
    with pytest.raises(errors.InsufficientPrivilege):
        _exec(sink_connect, store, "DELETE FROM consumer_offsets")


def test_dead_letter_status_moves_open_to_resolved_only(store, sink_connect):
    _exec(sink_connect, store, "INSERT INTO dead_letters (source_topic, source_partition,"
                               " source_offset, reason, message, first_seen)"
                               " VALUES ('t', 0, 7, 'store_rejected', 'x', now())")
    with pytest.raises(errors.CheckViolation):
        _exec(sink_connect, store, "UPDATE dead_letters SET status = 'resolved'")  # no resolved_at
    _exec(sink_connect, store, "UPDATE dead_letters SET status = 'resolved', resolved_at = now(),"
                               " resolution = 'replayed'")
    with pytest.raises(errors.CheckViolation, match="open -> resolved"):
        _exec(sink_connect, store, "UPDATE dead_letters SET status = 'open', resolved_at = NULL")
    with pytest.raises(errors.InsufficientPrivilege):
        _exec(sink_connect, store, "UPDATE dead_letters SET reason = 'other'")


def test_held_queue_shows_documents_whose_last_event_is_held(store, sink_connect):
    _exec(sink_connect, store,
          "INSERT INTO held_documents (event_id, action, document_key, reason, occurred_at) VALUES"
          " ('h1', 'held', 'invoice:INV-1', 'period_locked', '2026-01-01T10:00Z'),"
          " ('h2', 'held', 'invoice:INV-2', 'period_locked', '2026-01-01T10:00Z'),"
          " ('r1', 'released', 'invoice:INV-1', NULL, '2026-01-02T10:00Z')")
    with sink_connect() as conn:
        keys = conn.execute(sql.SQL("SELECT document_key FROM {}").format(
            sql.Identifier(store, "held_queue"))).fetchall()
    assert keys == [("invoice:INV-2",)]


def test_held_status_posted_is_allowed_other_words_are_not(store, sink_connect):
    insert = ("INSERT INTO held_documents (event_id, action, document_key, reason) VALUES"
              " (%s, %s, 'invoice:INV-3', 'no_exchange_rate')")
    _exec(sink_connect, store, insert, ("p1", "posted"))
    with pytest.raises(errors.CheckViolation, match="held_documents_action_check"):
        _exec(sink_connect, store, insert, ("p2", "forgotten"))


def test_unlock_needs_no_date_lock_does_and_period_locks_shows_the_lock_in_force(
        store, sink_connect):
    insert = ("INSERT INTO period_actions (action_id, action, through_date, actor, occurred_at)"
              " VALUES (%s, %s, %s, 'chief', %s)")
    with pytest.raises(errors.CheckViolation, match="period_actions_lock_has_date"):
        _exec(sink_connect, store, insert, ("a0", "lock", None, "2026-02-01T00:00Z"))
    _exec(sink_connect, store, insert, ("a1", "lock", "2026-01-31", "2026-02-01T00:00Z"))
    with sink_connect() as conn:
        lock = conn.execute(sql.SQL("SELECT locked_through, actor FROM {}").format(
            sql.Identifier(store, "period_locks"))).fetchall()
    assert [(str(d), a) for d, a in lock] == [("2026-01-31", "chief")]
    _exec(sink_connect, store, insert, ("a2", "unlock", None, "2026-02-02T00:00Z"))
    with sink_connect() as conn:
        lock = conn.execute(sql.SQL("SELECT locked_through, action FROM {}").format(
            sql.Identifier(store, "period_locks"))).fetchall()
    assert lock == [(None, "unlock")]
