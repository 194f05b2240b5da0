"""The sink writer: one batch of ledger records -> one PostgreSQL transaction, offsets included.

Commit order (also written where it happens, in :meth:`LedgerWriter._commit`):

1. insert the chart codes the lines name (accounts, insert-only);
2. insert the journal entries, ``ON CONFLICT DO NOTHING`` on the deterministic ``entry_id``;
3. check that ids which already existed carry the same content (sha256) — else a conflict;
4. insert the lines of the entries that are new;
5. insert stock movements, receivable items, advances, held events, period actions and dead
   letters, each ``ON CONFLICT DO NOTHING`` on its natural key;
6. store the consumer offsets (``next_offset`` per topic/partition; forward only);
7. COMMIT — the deferred balance trigger runs here; an unbalanced entry fails the transaction;
8. only then does the caller acknowledge the records to Kafka (best effort: the store's offsets
   are the authority a restarted sink resumes from).

"Already exists" is success (TigerBeetle): writing the same batch twice leaves one set of rows
and the offsets where they were (CDC-09). A batch the store rejects (an integrity or data error,
e.g. an unbalanced entry at commit) is split in halves until the bad record is alone; that record
becomes a dead letter carrying the database's reason, stored in ``dead_letters`` together with its
offset, and returned so the worker can also send it to the dead-letter topic. A store that is
unreachable raises :class:`StoreUnavailable`: nothing was acknowledged, the caller retries the
same batch later (idempotent even if the lost COMMIT did in fact succeed; CDC-15).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from datetime import UTC, datetime
from dataclasses import dataclass, field
from typing import Callable, Sequence

import psycopg
from psycopg import sql

from salesledger.sinks import metrics
from salesledger.sinks.records import TABLES, LedgerRecord, Position, Row, rows_of
from salesledger.streams.deadletter import DeadLetter, build_dead_letter

#: Errors by which the store rejects the data itself (SQLSTATE classes 22 and 23): split the batch.
_REJECTIONS = (psycopg.errors.IntegrityError, psycopg.errors.DataError)
#: Tables in insert order after journal_entries / journal_lines (step 5).
_OTHER_TABLES = ("stock_ledger", "receivable_items", "advances", "held_documents",
                 "period_actions", "dead_letters")
#: Natural key width (leading columns) per table; 1 unless listed.
_KEY_WIDTH = {"journal_lines": 2, "dead_letters": 3}
#: Bound on records per write() call: a caller bounds its batch by rows long before this.
RECORDS_PER_WRITE_MAX = 100_000


class StoreUnavailable(RuntimeError):
    """The accounting store could not be reached or dropped the connection; nothing of the batch
    may be acknowledged. Retry the same batch after reconnecting."""


class _Rejected(Exception):
    """The store refused a sub-batch; ``reason`` is the database's message with its SQLSTATE."""

    def __init__(self, reason: str, code: str = "store_rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass
class WriteResult:
    """Outcome of :meth:`LedgerWriter.write`.

    ``rows_inserted``: new rows per table; ``duplicate_entries``: journal entries that already
    existed (same content); ``dead_letters``: records the sink itself dead-lettered (to be sent to
    the dead-letter topic); ``offsets``: next offset stored per (topic, partition);
    ``transactions``: store transactions committed (1 unless the batch was split).
    """

    rows_inserted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicate_entries: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    transactions: int = 0


class LedgerWriter:
    """Writes batches of :class:`LedgerRecord` into the accounting store ``schema``.

    ``connect`` returns a new psycopg connection as the sink writer role (a member of
    ``ledger_writer``); it is called again after the store dropped the connection.
    ``consumer_group`` names the offsets stored with each batch.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection], *, consumer_group: str,
                 schema: str = "ledger") -> None:
        assert consumer_group, "consumer_group is required"
        self._connect = connect
        self._conn: psycopg.Connection | None = None
        self.consumer_group = consumer_group
        self.schema = schema
        self._sql = _Statements(schema)

    # ------------------------------------------------------------------ public

    def write(self, records: Sequence[LedgerRecord]) -> WriteResult:
        """Write ``records`` (in consumption order) and their offsets; see the module doc.

        Returns the :class:`WriteResult`. Raises :class:`StoreUnavailable` when the store is
        unreachable (nothing may be acknowledged then).
        """
        assert len(records) <= RECORDS_PER_WRITE_MAX, f"batch of {len(records)} records"
        _assert_in_partition_order(records)
        result = WriteResult()
        prepared = [self._prepare(record, result) for record in records]
        if prepared:
            self._write_split(prepared, result)
        return result

    def close(self) -> None:
        """Close the connection (if open)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ batch splitting

    def _prepare(self, record: LedgerRecord, result: WriteResult) -> "_Prepared":
        """Rows of one record; a record whose rows cannot be built is dead-lettered."""
        try:
            return _Prepared(record, rows_of(record.fact))
        except (TypeError, ValueError, AttributeError) as err:
            dead = self._dead_letter(record, "invalid_record", f"{type(err).__name__}: {err}")
            result.dead_letters.append(dead)
            return _Prepared(record, rows_of(dead))

    def _write_split(self, batch: list["_Prepared"], result: WriteResult) -> None:
        """Commit ``batch``; if the store rejects it, bisect until the bad record is alone."""
        try:
            self._commit(batch, result)
            return
        except _Rejected as rejected:
            metrics.BATCHES.labels("rejected").inc()
            if len(batch) == 1:
                record = batch[0].record
                dead = self._dead_letter(record, rejected.code, rejected.reason)
                result.dead_letters.append(dead)
                self._commit([_Prepared(record, rows_of(dead))], result)
                return
        middle = len(batch) // 2
        self._write_split(batch[:middle], result)
        self._write_split(batch[middle:], result)

    # ------------------------------------------------------------------ one transaction

    def _commit(self, batch: list["_Prepared"], result: WriteResult) -> None:
        """One store transaction for ``batch`` (steps 1-7 of the module doc).

        Raises:
            _Rejected: the store (or the content check) refused the batch.
            StoreUnavailable: the connection failed.
        """
        tables = _rows_by_table(batch)
        offsets = _next_offsets(batch)
        started = time.perf_counter()
        conn = self._connection()
        inserted: dict[str, int] = {}
        try:
            with conn.transaction():
                # 1. The chart codes the lines name (insert-only; names come from the chart).
                self._insert(conn, "accounts", tables.get("accounts", []))
                # 2. Journal entries, ON CONFLICT DO NOTHING on the deterministic entry_id.
                entries = tables.get("journal_entries", [])
                new_ids = self._insert_entries(conn, entries)
                inserted["journal_entries"] = len(new_ids)
                # 3. Ids that already existed must carry the same content (else: conflict).
                self._check_existing(conn, entries, new_ids)
                # 4. Lines of the new entries only.
                lines = [r for r in tables.get("journal_lines", []) if r[0] in new_ids]
                inserted["journal_lines"] = self._insert(conn, "journal_lines", lines)
                # 5. Subledgers, held queue, period actions, dead letters (natural keys).
                for table in _OTHER_TABLES:
                    inserted[table] = self._insert(conn, table, tables.get(table, []))
                # 6. Consumer offsets, in the same transaction, forward only.
                self._store_offsets(conn, offsets)
            # 7. COMMIT happened on leaving the block: deferred balance triggers ran there.
        except _REJECTIONS as err:
            raise _Rejected(_db_reason(err)) from err
        except psycopg.OperationalError as err:
            self._drop_connection()
            metrics.BATCHES.labels("unavailable").inc()
            raise StoreUnavailable(_db_reason(err)) from err
        # 8. The caller acknowledges to Kafka now (after this returns).
        self._account(result, inserted, len(entries), offsets, sum(map(len, tables.values())),
                      time.perf_counter() - started)
        _observe_freshness(entries, new_ids)

    def _insert_entries(self, conn: psycopg.Connection, rows: list[Row]) -> set[str]:
        if not rows:
            return set()
        cur = conn.execute(self._sql.insert("journal_entries", returning="entry_id"),
                           _columns(rows, "journal_entries"))
        return {r[0] for r in cur.fetchall()}

    def _check_existing(self, conn: psycopg.Connection, rows: list[Row], new_ids: set[str]) -> None:
        claimed = {r[0]: r[-1] for r in rows if r[0] not in new_ids}
        if not claimed:
            return
        stored = conn.execute(self._sql.entry_hashes, (list(claimed),)).fetchall()
        differing = sorted(eid for eid, digest in stored if claimed[eid] != digest)
        if differing:
            raise _Rejected(f"journal entry {differing[0]} already exists with other content "
                            f"(sha256 differs); {len(differing)} such", code="entry_conflict")

    def _insert(self, conn: psycopg.Connection, table: str, rows: list[Row]) -> int:
        if not rows:
            return 0
        return conn.execute(self._sql.insert(table), _columns(rows, table)).rowcount

    def _store_offsets(self, conn: psycopg.Connection, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        keys = sorted(offsets)
        conn.execute(self._sql.offsets, (
            self.consumer_group, [t for t, _ in keys], [p for _, p in keys],
            [offsets[k] for k in keys]))

    # ------------------------------------------------------------------ helpers

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop_connection()
            try:
                self._conn = self._connect()
            except psycopg.OperationalError as err:
                metrics.BATCHES.labels("unavailable").inc()
                raise StoreUnavailable(_db_reason(err)) from err
            self._conn.autocommit = True
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _dead_letter(self, record: LedgerRecord, code: str, reason: str) -> DeadLetter:
        pos = record.position
        value = record.value if record.value is not None else _fact_json(record.fact)
        dead = build_dead_letter(code, topic=pos.topic, partition=pos.partition,
                                 offset=pos.offset, key=record.key, value=value,
                                 message=reason, document_id=record.document_id)
        metrics.DEAD_LETTERS.labels(code).inc()
        return dead

    @staticmethod
    def _account(result: WriteResult, inserted: dict[str, int], n_entries: int,
                 offsets: dict[tuple[str, int], int], n_rows: int, seconds: float) -> None:
        for table, count in inserted.items():
            result.rows_inserted[table] += count
            if count:
                metrics.ROWS_WRITTEN.labels(table).inc(count)
        duplicates = n_entries - inserted.get("journal_entries", 0)
        result.duplicate_entries += duplicates
        metrics.DUPLICATES.inc(duplicates)
        for key, next_offset in offsets.items():
            result.offsets[key] = max(next_offset, result.offsets.get(key, 0))
        result.transactions += 1
        metrics.BATCHES.labels("committed").inc()
        metrics.BATCH_ROWS.observe(n_rows)
        metrics.COMMIT_SECONDS.observe(seconds)


@dataclass(frozen=True, slots=True)
class _Prepared:
    record: LedgerRecord
    rows: list[tuple[str, Row]]


class _Statements:
    """The SQL of the writer, composed once with :mod:`psycopg.sql` (no string formatting)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._inserts: dict[tuple[str, str | None], sql.Composed] = {}
        self.entry_hashes = sql.SQL(
            "SELECT entry_id, content_sha256 FROM {} WHERE entry_id = ANY(%s)"
        ).format(sql.Identifier(schema, "journal_entries"))
        self.offsets = sql.SQL(
            "INSERT INTO {t} AS o (consumer_group, topic, partition, next_offset) "
            "SELECT %s, * FROM unnest(%s::text[], %s::integer[], %s::bigint[]) "
            "ON CONFLICT (consumer_group, topic, partition) DO UPDATE "
            "SET next_offset = EXCLUDED.next_offset, updated_at = now() "
            "WHERE o.next_offset < EXCLUDED.next_offset"
        ).format(t=sql.Identifier(schema, "consumer_offsets"))

    def insert(self, table: str, returning: str | None = None) -> sql.Composed:
        """``INSERT ... SELECT * FROM unnest(<one typed array per column>) ON CONFLICT DO
        NOTHING`` — one statement for all rows of the table in the batch."""
        key = (table, returning)
        if key not in self._inserts:
            columns = TABLES[table]
            stmt = sql.SQL("INSERT INTO {t} ({cols}) SELECT * FROM unnest({arrays}) "
                           "ON CONFLICT DO NOTHING").format(
                t=sql.Identifier(self.schema, table),
                cols=sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns),
                arrays=sql.SQL(", ").join(
                    sql.SQL("%s::{}[]").format(sql.SQL(pg_type)) for _, pg_type in columns))
            if returning:
                stmt = stmt + sql.SQL(" RETURNING {}").format(sql.Identifier(returning))
            self._inserts[key] = stmt
        return self._inserts[key]


_COMMIT_AT = [name for name, _ in TABLES["journal_entries"]].index("source_commit_at")


def _observe_freshness(entries: list[Row], new_ids: set[str]) -> None:
    """Freshness of the entries this transaction added (source commit -> store commit)."""
    now = datetime.now(UTC)
    for row in entries:
        committed_at = row[_COMMIT_AT]
        if row[0] in new_ids and committed_at is not None:
            metrics.FRESHNESS_SECONDS.observe(max(0.0, (now - committed_at).total_seconds()))
    metrics.LAST_COMMIT.set(now.timestamp())


def _columns(rows: list[Row], table: str) -> list[list]:
    """Rows -> one list per column (the parameters of the unnest insert)."""
    width = len(TABLES[table])
    assert all(len(r) == width for r in rows), f"row width of {table}"
    return [list(col) for col in zip(*rows)]


def _rows_by_table(batch: list[_Prepared]) -> dict[str, list[Row]]:
    """Group rows by table, one row per natural key (a re-delivery inside the batch).

    Raises:
        _Rejected: two records of the batch carry the same entry id with other content.
    """
    tables: dict[str, list[Row]] = defaultdict(list)
    seen: dict[tuple[str, object], Row] = {}
    for prepared in batch:
        for table, row in prepared.rows:
            key = (table, row[:_KEY_WIDTH.get(table, 1)])
            if key in seen:
                if table == "journal_entries" and seen[key][-1] != row[-1]:
                    raise _Rejected(f"journal entry {row[0]} delivered twice with other "
                                    "content (sha256 differs)", code="entry_conflict")
                continue
            seen[key] = row
            tables[table].append(row)
    return tables


def _next_offsets(batch: list[_Prepared]) -> dict[tuple[str, int], int]:
    """Per (topic, partition): the offset after the last record of the batch."""
    out: dict[tuple[str, int], int] = {}
    for prepared in batch:
        pos = prepared.record.position
        key = (pos.topic, pos.partition)
        out[key] = max(out.get(key, 0), pos.offset + 1)
    return out


def _assert_in_partition_order(records: Sequence[LedgerRecord]) -> None:
    last: dict[tuple[str, int], int] = {}
    for record in records:
        pos: Position = record.position
        key = (pos.topic, pos.partition)
        assert last.get(key, -1) < pos.offset, f"records out of order at {pos}"
        last[key] = pos.offset


def _db_reason(err: psycopg.Error) -> str:
    """The database's reason: ``SQLSTATE: message`` (primary message, else the text)."""
    diag = getattr(err, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(err).strip()
    code = getattr(err, "sqlstate", None)
    return f"{code}: {message}" if code else message


def _fact_json(fact: object) -> bytes | None:
    """A JSON rendering of a fact without original bytes, so a dead letter keeps its content."""
    if not dataclasses.is_dataclass(fact):
        return None
    return json.dumps(dataclasses.asdict(fact), default=str, sort_keys=True).encode()


def load_offsets(conn: psycopg.Connection, group: str, topic: str,
                 schema: str = "ledger") -> dict[int, int]:
    """The next offsets stored for ``group`` on ``topic``: ``{partition: next_offset}``.

    A restarted sink seeks to these (the store, not Kafka's group offsets, is authoritative).
    """
    rows = conn.execute(
        sql.SQL("SELECT partition, next_offset FROM {} WHERE consumer_group = %s AND topic = %s")
        .format(sql.Identifier(schema, "consumer_offsets")), (group, topic)).fetchall()
    return {partition: next_offset for partition, next_offset in rows}
