"""Document assembly: Debezium row changes -> whole sales documents, one version per transaction.

Input: decoded CDC events (:mod:`salesledger.streams.cdc`) of the tables of
``deploy/sql/sales`` — :class:`~salesledger.streams.cdc.ChangeEvent` rows and
:class:`~salesledger.streams.cdc.TransactionEvent` BEGIN/END markers, in any interleaving of
their topics. Output: :class:`DocumentEvent` — the whole document (header, lines, allocations)
as of one source transaction, as the model of :mod:`salesledger.ledger.model` — and
:class:`DocumentRejected` for a document that cannot be built (a NULL amount, a value Debezium did
not send); the caller dead-letters those.

Rules (issue "Capture", field case CDC-11):

1. A transaction is applied only when it is complete: its END marker arrived and all rows of
   the document tables it announces (END ``data_collections``) have been seen; rows are matched
   to their END by the PostgreSQL xid (Debezium 3.6 gives every row, BEGIN and END a different
   ``"<xid>:<LSN>"``; END's LSN is the commit position). An END with ``event_count`` 0 is
   ignored; one announcing no document rows (heartbeat, master data) only moves the frontier.
   Complete transactions are applied in the order of their END markers (the transaction topic
   is written in commit order), so documents come out in source commit order.
2. Snapshot rows (no transaction block) do not wait: they update the row state at once; the
   documents they touch are emitted by :meth:`DocumentAssembler.flush_snapshot`, which runs on
   the snapshot's last record and before the first streamed transaction is applied.
3. Per document the assembler keeps the current rows (header and children). Row images
   replace the kept row; a value Debezium did not send (unchanged TOAST, CDC-05) keeps the
   known value; deletes need only the key (REPLICA IDENTITY DEFAULT, CDC-06).
4. Only ``posted`` documents are postable; draft -> posted is the first postable version
   (``created``). A posted document that changes is ``changed`` (no event if nothing the model
   carries changed); one set back to ``cancelled`` or ``draft`` is ``cancelled``; one whose
   header row is deleted is ``deleted`` (carrying its last emitted content). Drafts and
   documents never posted are never emitted. A posted document of a kind with lines is first
   emitted once it has at least one line (header and lines may come in separate
   transactions). A document whose number changes is ``deleted`` under its old key and
   starts again under the new one (the key is the number).
5. ``version`` is (commit LSN, event index): the document's ``version`` is the commit LSN of
   the transaction (strictly increasing per document); the event index is the position of the
   document's last row change in the transaction (``total_order``), which orders the documents
   of one transaction. Snapshot documents use the snapshot's LSN and a running index.
6. Master data before the documents of its transaction: with a validator, a transaction that
   has document rows and also master-data rows (:data:`~salesledger.streams.validation.
   MASTER_TABLES`: a customer and the invoice to it, inserted together) waits until those
   master rows were applied too — each master table counts as done when all the rows the END
   announces for it have arrived, or a row of that table from a later transaction did
   (``source.sequence[0]`` at or above the commit LSN: the topic is past the transaction).
   Only a transaction whose END is younger than :data:`MASTER_WAIT_WINDOW_MS` waits (by the
   ``clock_ms`` wall clock): the master topics are compacted, but no row younger than their
   ``min.compaction.lag.ms`` (24 h, deploy/topics.yaml) can have been removed, so a wait
   always ends — also while the agent rebuilds by replay (a row the last run had not consumed
   comes live after it), while an old transaction replayed from history never waits for a
   row compaction took (the validator is seeded from the database at start). Master rows
   themselves are applied to the validator as they arrive. ``master_wait`` False turns rule
   6 off.
7. Re-delivered events (CDC-09: a connector restart re-sends from its last committed offset)
   are dropped: a row already buffered (same xid and ``total_order``), an END at or below the
   frontier (the commit LSN of the last END done), and a row of a done transaction (its xid is
   among the last ``applied_xids_max`` done, or its ``source.sequence[0]`` — the commit LSN of
   the transaction before it — is below the frontier).
8. Exchange rates (``exchange_rates=True``): a ``sales.currency_rates`` row inserted or updated
   becomes a :class:`RateEvent` (rate per ONE unit: ``rate / nominal``) emitted with its
   transaction, among that transaction's documents by event index, so rates and documents
   leave in one commit order. A transaction with rate rows waits for them as rule 6 waits for
   master rows (also without documents, also without a validator, and also while rebuilding:
   an END replayed before its rate row, which the last run had not consumed yet, must not
   drop the rate — the row comes live after the rebuild). A deleted rate row emits nothing
   (the engine keeps the rates it was given); a snapshot rate row is emitted as it arrives.

Pure: no Kafka, Faust or database import. The state of incomplete transactions is in memory,
bounded by ``*_max`` limits. The row state of every document (and which document each child
row belongs to) grows with the documents seen: it lives in two mappings the caller gives
(``documents``, ``child_parents``; plain dicts by default). The assembly agent passes
disk-backed ones with a bounded cache (:mod:`salesledger.streams.local_state`, CDC-20); their
values are pickled with :data:`STATE_REDUCERS`, and a value taken from them is mutated right
away, before any other access to the same mapping (so a cache of one entry would do).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from typing import Any, Callable, Literal, Mapping, MutableMapping

from salesledger.ledger.model import (
    Allocation,
    AnyDocument,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    Payment,
    ReceiptLine,
    ReturnLine,
    SalesReturn,
    SourcePosition,
    WriteOff,
    WriteOffLine,
)
from salesledger.streams.cdc import UNAVAILABLE, ChangeEvent, Op, Row, TransactionEvent
from salesledger.streams.deadletter import RejectedRecord
from salesledger.streams.validation import MASTER_TABLES, DocumentValidator

DocumentOperation = Literal["created", "changed", "cancelled", "deleted"]

PENDING_TRANSACTIONS_MAX = 100_000
PENDING_EVENTS_MAX = 2_000_000
APPLIED_XIDS_MAX = 100_000
#: Rule 6 waits only for transactions whose END is younger than this (ms): below the master
#: topics' ``min.compaction.lag.ms`` (86,400,000 in deploy/topics.yaml, checked by a test).
MASTER_WAIT_WINDOW_MS = 23 * 3600 * 1000
#: The exchange-rate table (deploy/sql/sales/001): its rows become :class:`RateEvent` s.
RATE_TABLE = "sales.currency_rates"
_SNAPSHOT_LAST = "last"


class AssemblyOverflow(RuntimeError):
    """More incomplete transactions or buffered events than the configured bound: a transaction
    marker or row topic is not being consumed. Operating error: stop and fix the consumer."""


class DocumentUnbuildable(RejectedRecord):
    """A document's rows cannot be turned into a document (reason ``document_unbuildable``)."""

    reason = "document_unbuildable"


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentEvent:
    """One whole document as of one source transaction.

    ``key``: ``"<type>:<number>"`` (the documents topic's key); ``operation``: created |
    changed | cancelled | deleted; ``version``: (commit LSN, event index); ``document``: the
    model document (its ``version`` is the commit LSN, its ``status`` active | cancelled |
    deleted, its ``source`` = ``source``); ``transaction_id``: Debezium's ``"<txId>:<LSN>"``
    (None for snapshot rows); ``snapshot``: read by the initial snapshot.
    """

    key: str
    operation: DocumentOperation
    version: tuple[int, int]
    document: AnyDocument
    source: SourcePosition
    transaction_id: str | None = None
    snapshot: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentRejected:
    """A document whose rows could not be built into a document (dead-letter it).

    ``key`` is ``"<type>:<number>"`` when the number is known, else ``"<type>#<id>"``;
    ``error`` carries the reason code and message. ``document``: the version that failed
    validation (:mod:`salesledger.streams.validation`), kept so that ``dlq retry`` can publish
    it; None for a document that could not be built.
    """

    key: str
    error: RejectedRecord
    version: tuple[int, int]
    source: SourcePosition
    transaction_id: str | None = None
    document: DocumentEvent | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateEvent:
    """One exchange rate as of one source transaction (the engine's ``ExchangeRate`` plus its
    place in the commit order, rule 8).

    ``key``: ``"rate:<currency>:<date>"``; ``rate``: functional-currency units for ONE unit of
    ``currency`` on ``date`` (the row's ``rate / nominal``, exact ``Decimal``); ``version``:
    (commit LSN, event index) as for documents; ``source``: the transaction's position.
    """

    key: str
    currency: str
    date: dt.date
    rate: Decimal
    version: tuple[int, int]
    source: SourcePosition
    transaction_id: str | None = None
    snapshot: bool = False


Emitted = DocumentEvent | DocumentRejected | RateEvent


# --------------------------------------------------------------------------- table layout


@dataclass(frozen=True, slots=True)
class _HeaderTable:
    doc_type: str
    pk: str


@dataclass(frozen=True, slots=True)
class _ChildTable:
    doc_type: str
    pk: str
    parent: str  # foreign key column naming the header's pk


#: Header tables of deploy/sql/sales/002_documents.sql and their document type.
HEADER_TABLES: dict[str, _HeaderTable] = {
    "sales.invoices": _HeaderTable("invoice", "invoice_id"),
    "sales.payments": _HeaderTable("payment", "payment_id"),
    "sales.returns": _HeaderTable("return", "return_id"),
    "sales.goods_receipts": _HeaderTable("goods_receipt", "goods_receipt_id"),
    "sales.stock_write_offs": _HeaderTable("write_off", "stock_write_off_id"),
}
#: Child tables (lines, allocations) and the header column they hang from.
CHILD_TABLES: dict[str, _ChildTable] = {
    "sales.invoice_lines": _ChildTable("invoice", "invoice_line_id", "invoice_id"),
    "sales.payment_allocations": _ChildTable("payment", "payment_allocation_id", "payment_id"),
    "sales.return_lines": _ChildTable("return", "return_line_id", "return_id"),
    "sales.goods_receipt_lines": _ChildTable("goods_receipt", "goods_receipt_line_id",
                                             "goods_receipt_id"),
    "sales.stock_write_off_lines": _ChildTable("write_off", "stock_write_off_line_id",
                                               "stock_write_off_id"),
}
_HEADER_PK = {spec.doc_type: spec.pk for spec in HEADER_TABLES.values()}
#: Every table assembly reads (the connector captures more: master data, heartbeat).
DOCUMENT_TABLES = frozenset(HEADER_TABLES) | frozenset(CHILD_TABLES)
#: Document types whose first postable version needs at least one line.
_NEEDS_LINES = frozenset({"invoice", "return", "goods_receipt", "write_off"})
_SOURCE_STATUS = {"posted": "active", "cancelled": "cancelled"}


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class _DocState:
    doc_type: str
    doc_id: Any
    header: Row | None = None
    header_deleted: bool = False
    children: dict[Any, Row] = field(default_factory=dict)
    emitted: AnyDocument | None = None


@dataclass(slots=True)
class _PendingTx:
    rows: dict[int, ChangeEvent] = field(default_factory=dict)  # total_order -> event
    end: TransactionEvent | None = None
    commit_lsn: int = -1
    expected: int = 0  # rows of ``tables`` the END announces
    master_expected: tuple[tuple[str, int], ...] = ()  # (master table, rows) the END announces
    master_seen: dict[int, str] = field(default_factory=dict)  # total_order -> master table
    rates: dict[int, ChangeEvent] = field(default_factory=dict)  # total_order -> rate row (rule 8)


def _row_of(names: tuple[str, ...], values: tuple[Any, ...],
            unavailable: tuple[int, ...]) -> Row:
    """A :class:`Row` back from :func:`_reduce_row`'s parts (the sentinel is a singleton)."""
    if not unavailable:
        return Row(dict(zip(names, values)))
    missing = frozenset(unavailable)
    return Row({name: UNAVAILABLE if i in missing else value
                for i, (name, value) in enumerate(zip(names, values))})


def _reduce_row(row: Row) -> tuple:
    """``copyreg``-style reduction of a :class:`Row` (it holds a read-only mapping, which does
    not pickle, and possibly :data:`UNAVAILABLE`, which must come back as itself)."""
    names = tuple(row)
    values = tuple(row.values())
    if not any(value is UNAVAILABLE for value in values):
        return (_row_of, (names, values, ()))
    unavailable = tuple(i for i, value in enumerate(values) if value is UNAVAILABLE)
    return (_row_of, (names, tuple(None if value is UNAVAILABLE else value for value in values),
                      unavailable))


#: How the values of the state mappings pickle (type -> reduce function), for a disk-backed
#: ``documents`` / ``child_parents`` mapping (:class:`~salesledger.streams.local_state.LocalState`).
STATE_REDUCERS: dict[type, Callable[[Any], tuple]] = {Row: _reduce_row}


def _xid_of(event: ChangeEvent) -> int:
    """The PostgreSQL transaction id of a streamed row (``source.txId``, else the id's head)."""
    if event.source.tx_id is not None:
        return int(event.source.tx_id)
    assert event.transaction is not None
    head = event.transaction.id.split(":", 1)[0]
    if not head.isdigit():
        raise ValueError(f"transaction id {event.transaction.id!r} has no xid")
    return int(head)


def _wall_clock_ms() -> float:
    return time.time() * 1000.0


def commit_lsn_of(transaction_id: str) -> int:
    """The LSN part of Debezium's PostgreSQL transaction id ``"<txId>:<LSN>"``; on an END
    marker it is the commit position (Debezium 3.6: the LSN just after the commit record).

    Raises:
        ValueError: the id is not of that form.
    """
    head, sep, tail = transaction_id.partition(":")
    if not sep or not tail.isdigit():
        raise ValueError(f"transaction id {transaction_id!r} is not '<txId>:<LSN>'")
    return int(tail)


class DocumentAssembler:
    """Turns decoded CDC events into :class:`DocumentEvent` s (see the module rules).

    Feed every decoded event with :meth:`on_change` / :meth:`on_transaction`; each returns the
    documents (and rejections) that became complete, in source commit order. Not thread-safe.

    ``functional_currency`` is given to documents without a currency column (write-offs).
    ``validator`` (optional): every version about to be emitted is checked first and becomes a
    :class:`DocumentRejected` (with the version) when invalid; the validator's master data is
    kept by the rows of the master-data tables (applied as they arrive; a transaction's
    documents wait for the master rows of the same transaction, rule 6) and gives invoice
    lines their ``kind``. ``master_wait`` (default True) turns rule 6 off while False.

    ``documents``: (document type, header pk) -> the document's row state (``_DocState``:
    header row, child rows, last emitted version); ``child_parents``: (child table, child pk)
    -> header pk. Both start empty; default plain dicts. Any ``MutableMapping`` will do whose
    values may be mutated in place — a disk-backed one must write cached values back (see
    the module docstring).
    """

    def __init__(self, *, functional_currency: str = "AZN",
                 tables: frozenset[str] | None = None,
                 pending_transactions_max: int = PENDING_TRANSACTIONS_MAX,
                 pending_events_max: int = PENDING_EVENTS_MAX,
                 applied_xids_max: int = APPLIED_XIDS_MAX,
                 validator: DocumentValidator | None = None,
                 exchange_rates: bool = False,
                 documents: MutableMapping[tuple[str, Any], Any] | None = None,
                 child_parents: MutableMapping[tuple[str, Any], Any] | None = None) -> None:
        assert pending_transactions_max > 0 and pending_events_max > 0 and applied_xids_max > 0
        self.functional_currency = functional_currency
        self.tables = frozenset(tables if tables is not None else DOCUMENT_TABLES)
        assert self.tables <= DOCUMENT_TABLES, "only document tables can be assembled"
        self.pending_transactions_max = pending_transactions_max
        self.pending_events_max = pending_events_max
        # (doc type, header pk) -> row state; (table, child pk) -> header pk. Caller's mappings.
        self._docs: MutableMapping[tuple[str, Any], _DocState] = \
            documents if documents is not None else {}
        self._child_parent: MutableMapping[tuple[str, Any], Any] = \
            child_parents if child_parents is not None else {}
        self._pending: dict[int, _PendingTx] = {}             # xid -> rows, END
        self._commit_queue: deque[int] = deque()              # xids in END (commit) order
        self._pending_events = 0
        self._frontier_lsn = -1                               # commit LSN of the last END done
        self._applied_xids: deque[int] = deque(maxlen=applied_xids_max)
        self._applied_xid_set: set[int] = set()
        self._snapshot_dirty: dict[tuple[str, Any], int] = {}
        self._snapshot_index = 0
        self._snapshot_source: SourcePosition | None = None
        self.validator = validator
        self.master_wait = True
        self.clock_ms: Callable[[], float] = _wall_clock_ms  # rule 6's window (tests set it)
        self.exchange_rates = exchange_rates  # rule 8
        self._master_frontier: dict[str, int] = {}  # master table -> highest sequence[0] seen

    # ---- input -----------------------------------------------------------------------------

    def on_change(self, event: ChangeEvent) -> list[Emitted]:
        """Take one row change; return what became complete (possibly nothing).

        Rows of tables outside ``tables`` (master data, heartbeat) are ignored: the END marker
        tells how many rows of each table to expect, so they need not be consumed at all.
        """
        if event.op in (Op.TRUNCATE, Op.MESSAGE) or event.source.qualified_table not in self.tables:
            if self.validator is not None:
                self.validator.master.apply(event)  # master data: current as it arrives
            if self.validator is not None or self.exchange_rates:
                return self._on_master_row(event)
            return []
        if event.transaction is None:
            return self._on_snapshot_row(event)
        xid = _xid_of(event)
        if self._already_applied(event, xid):
            return []  # re-delivered after its transaction was applied (CDC-09)
        pending = self._pending_tx(xid)
        if event.transaction.total_order not in pending.rows:
            if self._pending_events >= self.pending_events_max:
                raise AssemblyOverflow(f"{self._pending_events} buffered row events")
            pending.rows[event.transaction.total_order] = event
            self._pending_events += 1
        return self._drain()

    def on_transaction(self, event: TransactionEvent) -> list[Emitted]:
        """Take one BEGIN/END marker; return what became complete (possibly nothing).

        The END's id is ``"<xid>:<commit LSN>"`` (Debezium 3.x: the LSN after the commit record;
        BEGIN and the rows carry other LSNs), so rows are matched to it by the xid.
        """
        if event.status != "END":
            return []
        commit_lsn = commit_lsn_of(event.id)
        if commit_lsn <= self._frontier_lsn or not event.event_count:
            return []  # an END seen before, or one with event_count 0: ignored
        xid = event.tx_id
        if xid is None:
            raise ValueError(f"transaction id {event.id!r} has no xid")
        pending = self._pending_tx(xid)
        if pending.end is None:
            pending.end = event
            pending.commit_lsn = commit_lsn
            pending.expected = sum(n for table, n in event.data_collections if table in self.tables)
            pending.master_expected = tuple((table, n) for table, n in event.data_collections
                                            if table in MASTER_TABLES and n > 0)
            self._commit_queue.append(xid)
        return self._drain()

    def flush_snapshot(self) -> list[Emitted]:
        """Emit the documents snapshot rows have touched since the last flush."""
        if not self._snapshot_dirty or self._snapshot_source is None:
            return []
        touched = sorted(self._snapshot_dirty.items(), key=lambda item: item[1])
        self._snapshot_dirty.clear()
        source = self._snapshot_source
        lsn = source.lsn or 0
        out: list[Emitted] = []
        for doc_key, index in touched:
            out.extend(self._decide(self._docs.get(doc_key), (lsn, index), source, None, True))
        self._forget_deleted(doc_key for doc_key, _ in touched)
        return out

    @property
    def pending_transactions(self) -> int:
        """Transactions seen but not yet applied."""
        return len(self._pending)

    # ---- transactions ----------------------------------------------------------------------

    def _already_applied(self, event: ChangeEvent, xid: int) -> bool:
        """True for a row of a transaction whose END is done. ``source.sequence[0]`` is the
        commit LSN of the transaction before the row's own, so it is below the frontier only
        when the row's transaction is itself at or behind it."""
        if xid in self._applied_xid_set:
            return True
        sequence = event.source.sequence
        previous_commit = sequence[0] if sequence else None
        return previous_commit is not None and previous_commit < self._frontier_lsn

    def _pending_tx(self, xid: int) -> _PendingTx:
        pending = self._pending.get(xid)
        if pending is None:
            if len(self._pending) >= self.pending_transactions_max:
                raise AssemblyOverflow(f"{len(self._pending)} incomplete transactions")
            pending = self._pending[xid] = _PendingTx()
        return pending

    def _drain(self) -> list[Emitted]:
        out: list[Emitted] = []
        while self._commit_queue:
            xid = self._commit_queue[0]
            pending = self._pending[xid]
            assert pending.end is not None
            if len(pending.rows) < pending.expected or not self._master_done(pending):
                break
            assert len(pending.rows) == pending.expected, (
                f"transaction {pending.end.id}: {len(pending.rows)} events, END says "
                f"{pending.expected}")
            self._commit_queue.popleft()
            del self._pending[xid]
            self._pending_events -= len(pending.rows) + len(pending.master_seen)
            assert pending.commit_lsn > self._frontier_lsn, "ENDs arrive in commit order"
            self._frontier_lsn = pending.commit_lsn
            if len(self._applied_xids) == self._applied_xids.maxlen:
                self._applied_xid_set.discard(self._applied_xids[0])
            self._applied_xids.append(xid)
            self._applied_xid_set.add(xid)
            if pending.rows or pending.rates:
                out.extend(self.flush_snapshot())
                out.extend(self._apply_transaction(pending))
        return out

    def _on_master_row(self, event: ChangeEvent) -> list[Emitted]:
        """Count a streamed master-data row (already applied to the validator) for rule 6."""
        table = event.source.qualified_table
        if self.exchange_rates and table == RATE_TABLE and event.transaction is None:
            self._snapshot_index += 1  # a snapshot rate (rule 8): no order to keep
            source = SourcePosition(lsn=event.source.lsn, tx_id=event.source.tx_id,
                                    commit_time=event.source.commit_time)
            return self._rate(event, (event.source.lsn or 0, self._snapshot_index), source,
                              None, True)
        if event.transaction is None or table not in MASTER_TABLES or \
                event.op in (Op.TRUNCATE, Op.MESSAGE):
            return []
        sequence = event.source.sequence
        if sequence and sequence[0] is not None and \
                sequence[0] > self._master_frontier.get(table, -1):
            self._master_frontier[table] = sequence[0]
        xid = _xid_of(event)
        if not self._already_applied(event, xid):
            pending = self._pending_tx(xid)
            if event.transaction.total_order not in pending.master_seen:
                if self._pending_events >= self.pending_events_max:
                    raise AssemblyOverflow(f"{self._pending_events} buffered row events")
                pending.master_seen[event.transaction.total_order] = table
                self._pending_events += 1
                if self.exchange_rates and table == RATE_TABLE:
                    pending.rates[event.transaction.total_order] = event
        return self._drain()

    def _master_done(self, pending: _PendingTx) -> bool:
        """Rule 6: no document of ``pending`` needs master rows that have not arrived; rule 8:
        nor are its rate rows still to come."""
        if self.exchange_rates and not self._rates_done(pending):
            return False
        if not (pending.expected and pending.master_expected and self.master_wait
                and self.validator is not None):
            return True
        assert pending.end is not None
        if pending.end.ts_ms is not None and \
                self.clock_ms() - pending.end.ts_ms >= MASTER_WAIT_WINDOW_MS:
            return True  # old: its master rows may be compacted away (rule 6)
        for table, n in pending.master_expected:
            if self._master_frontier.get(table, -1) >= pending.commit_lsn:
                continue  # a later transaction's row of this table arrived: ours are behind
            if sum(1 for seen in pending.master_seen.values() if seen == table) < n:
                return False
        return True

    def _rates_done(self, pending: _PendingTx) -> bool:
        """Rule 8: every rate row the END announces arrived, or the rate topic is past it."""
        n = dict(pending.master_expected).get(RATE_TABLE, 0)
        return (len(pending.rates) >= n
                or self._master_frontier.get(RATE_TABLE, -1) >= pending.commit_lsn)

    def _apply_transaction(self, pending: _PendingTx) -> list[Emitted]:
        assert pending.end is not None
        commit_lsn, tx_id = pending.commit_lsn, pending.end.id
        touched: dict[tuple[str, Any], int] = {}
        events = [pending.rows[order] for order in sorted(pending.rows)]
        for event in events:
            doc_key = self._apply_row(event)
            if doc_key is not None:
                touched[doc_key] = event.transaction.total_order
        last = max(events + list(pending.rates.values()),
                   key=lambda event: event.transaction.total_order).source
        source = SourcePosition(lsn=commit_lsn, tx_id=last.tx_id, commit_time=last.commit_time)
        out: list[Emitted] = []
        order = sorted([(index, doc_key) for doc_key, index in touched.items()]
                       + [(index, None) for index in pending.rates], key=lambda item: item[0])
        for index, doc_key in order:
            if doc_key is None:  # rule 8: a rate among the documents, by event index
                out.extend(self._rate(pending.rates[index], (commit_lsn, index), source, tx_id,
                                      False))
            else:
                out.extend(self._decide(self._docs.get(doc_key), (commit_lsn, index), source,
                                        tx_id, False))
        self._forget_deleted(touched)
        return out

    def _rate(self, event: ChangeEvent, version: tuple[int, int], source: SourcePosition,
              tx_id: str | None, snapshot: bool) -> list[Emitted]:
        """The :class:`RateEvent` of one rate row (nothing for a delete); a row whose values
        cannot be read becomes a :class:`DocumentRejected` keyed ``rate:<currency>:<date>``."""
        if event.op is Op.DELETE or event.after is None:
            return []
        row = event.after
        key = f"rate:{_maybe(row, 'currency')}:{_maybe(row, 'date')}"
        try:
            currency, day = _text(row, "currency"), _as_date(row.value("date"), "date")
            nominal = int(row.value("nominal")) if "nominal" in row else 1
            if nominal <= 0:
                raise DocumentUnbuildable(f"{key}: nominal {nominal} is not positive")
            with localcontext(Context(prec=28)):  # rate / nominal at one fixed precision
                rate = row.money("rate") / nominal
        except (RejectedRecord, TypeError, ValueError) as error:
            if not isinstance(error, RejectedRecord):
                error = DocumentUnbuildable(f"{key}: {error}", document_id=key)
            return [DocumentRejected(key=key, error=error, version=version, source=source,
                                     transaction_id=tx_id)]
        return [RateEvent(key=f"rate:{currency}:{day.isoformat()}", currency=currency, date=day,
                          rate=rate, version=version, source=source, transaction_id=tx_id,
                          snapshot=snapshot)]

    def _on_snapshot_row(self, event: ChangeEvent) -> list[Emitted]:
        doc_key = self._apply_row(event)
        self._snapshot_index += 1
        self._snapshot_source = SourcePosition(lsn=event.source.lsn, tx_id=event.source.tx_id,
                                               commit_time=event.source.commit_time)
        if doc_key is not None:
            self._snapshot_dirty[doc_key] = self._snapshot_index
        if event.source.snapshot == _SNAPSHOT_LAST:
            return self.flush_snapshot()
        return []

    # ---- row state -------------------------------------------------------------------------

    def _apply_row(self, event: ChangeEvent) -> tuple[str, Any] | None:
        """Apply one row change to the document state; return the document it touched."""
        table = event.source.qualified_table
        if table in HEADER_TABLES:
            spec = HEADER_TABLES[table]
            image = event.row
            doc_id = image.value(spec.pk)
            state = self._state(spec.doc_type, doc_id)
            if event.op is Op.DELETE:
                state.header_deleted = True
            else:
                state.header = _resolved(event.after, state.header, event.before)
            return (spec.doc_type, doc_id)
        if table in CHILD_TABLES:
            return self._apply_child(CHILD_TABLES[table], table, event)
        return None  # master data, heartbeat: counted in the transaction, not documents

    def _apply_child(self, spec: _ChildTable, table: str, event: ChangeEvent) -> tuple[str, Any] | None:
        child_id = event.row.value(spec.pk)
        old_parent = self._child_parent.get((table, child_id))
        if event.op is Op.DELETE:
            self._child_parent.pop((table, child_id), None)
            parent = old_parent if old_parent is not None else _maybe(event.before, spec.parent)
            if parent is None:
                return None  # a child never seen (state started later) and without its parent
            self._state(spec.doc_type, parent).children.pop((table, child_id), None)
            return (spec.doc_type, parent)
        previous = None
        if old_parent is not None:
            previous = self._state(spec.doc_type, old_parent).children.get((table, child_id))
        row = _resolved(event.after, previous, event.before)
        parent = row.value(spec.parent)
        if old_parent is not None and old_parent != parent:
            self._state(spec.doc_type, old_parent).children.pop((table, child_id), None)
        self._child_parent[(table, child_id)] = parent
        self._state(spec.doc_type, parent).children[(table, child_id)] = row
        return (spec.doc_type, parent)

    def _state(self, doc_type: str, doc_id: Any) -> _DocState:
        state = self._docs.get((doc_type, doc_id))
        if state is None:
            state = self._docs[(doc_type, doc_id)] = _DocState(doc_type, doc_id)
        return state

    def _forget_deleted(self, doc_keys) -> None:
        for doc_key in list(doc_keys):
            state = self._docs.get(doc_key)
            if state is not None and state.header_deleted:
                del self._docs[doc_key]
                for child_key in state.children:
                    self._child_parent.pop(child_key, None)

    # ---- decisions -------------------------------------------------------------------------

    def _decide(self, state: _DocState | None, version: tuple[int, int], source: SourcePosition,
                tx_id: str | None, snapshot: bool) -> list[Emitted]:
        """Which event (if any) the document's new state gives; updates ``state.emitted``."""
        if state is None:
            return []
        prev = state.emitted
        prev_active = prev is not None and prev.status == "active"
        if state.header_deleted or state.header is None:
            if prev is None or prev.status == "deleted" or not state.header_deleted:
                return []
            document = dataclasses.replace(prev, status="deleted", version=version[0],
                                           source=source)
            return self._emit(state, "deleted", document, version, source, tx_id, snapshot)
        try:
            document = build_document(state.doc_type, state.header, _ordered(state.children),
                                      version=version[0], source=source,
                                      functional_currency=self.functional_currency)
        except RejectedRecord as error:
            return [DocumentRejected(key=_key_of(state), error=error, version=version,
                                     source=source, transaction_id=tx_id)]
        if self.validator is not None:
            document = self.validator.enrich(document)  # invoice lines' goods | service
        renumbered: list[Emitted] = []
        if prev is not None and prev.number != document.number:
            # The key is the number: the old key's document ends here, the new one starts.
            if prev.status != "deleted":
                gone = dataclasses.replace(prev, status="deleted", version=version[0],
                                           source=source)
                renumbered = self._emit(state, "deleted", gone, version, source, tx_id, snapshot)
            state.emitted = prev = None
            prev_active = False
        return renumbered + self._decide_status(state, document, prev, prev_active, version,
                                                source, tx_id, snapshot)

    def _decide_status(self, state: _DocState, document: AnyDocument, prev: AnyDocument | None,
                       prev_active: bool, version: tuple[int, int], source: SourcePosition,
                       tx_id: str | None, snapshot: bool) -> list[Emitted]:
        status = _SOURCE_STATUS.get(state.header.value("status"))
        if status == "active":
            if not prev_active:
                if state.doc_type in _NEEDS_LINES and not state.children:
                    return []  # posted header, lines still to come
                return self._emit(state, "created", document, version, source, tx_id, snapshot)
            if _same_content(prev, document):
                return []
            return self._emit(state, "changed", document, version, source, tx_id, snapshot)
        if prev_active:  # posted -> cancelled, or posted -> draft (taken back)
            document = dataclasses.replace(document, status="cancelled")
            return self._emit(state, "cancelled", document, version, source, tx_id, snapshot)
        return []

    def _emit(self, state: _DocState, operation: DocumentOperation, document: AnyDocument,
              version: tuple[int, int], source: SourcePosition, tx_id: str | None,
              snapshot: bool) -> list[Emitted]:
        state.emitted = document  # also when rejected: the next version is a change of it
        event = DocumentEvent(key=document.key, operation=operation, version=version,
                              document=document, source=source, transaction_id=tx_id,
                              snapshot=snapshot)
        error = self.validator.validate(document) if self.validator is not None else None
        if error is not None:
            return [DocumentRejected(key=event.key, error=error, version=version, source=source,
                                     transaction_id=tx_id, document=event)]
        return [event]


# --------------------------------------------------------------------------- rows -> documents


def _resolved(after: Row | None, previous: Row | None, before: Row | None) -> Row:
    """``after`` with every value Debezium did not send taken from the kept row, else from
    ``before``; a value known from neither stays :data:`UNAVAILABLE` (reading it raises)."""
    assert after is not None
    missing = after.unavailable_fields
    if not missing:
        return after
    values = dict(after)
    for name in missing:
        for known in (previous, before):
            if known is not None and known.get(name, UNAVAILABLE) is not UNAVAILABLE:
                values[name] = known[name]
                break
    return Row(values)


def _maybe(row: Row | None, name: str) -> Any:
    if row is None or name not in row or row.is_unavailable(name):
        return None
    return row[name]


def _ordered(children: Mapping[tuple[str, Any], Row]) -> list[Row]:
    return sorted(children.values(), key=lambda row: (row.value("line_no"),))


def _key_of(state: _DocState) -> str:
    number = _maybe(state.header, "number")
    return f"{state.doc_type}:{number}" if number else f"{state.doc_type}#{state.doc_id}"


def _same_content(a: AnyDocument | None, b: AnyDocument) -> bool:
    if a is None:
        return False
    return dataclasses.replace(a, version=b.version, source=b.source) == b


def _as_date(value: Any, column: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise DocumentUnbuildable(f"column {column!r} is not a date: {value!r}")


def _text(row: Row, column: str) -> str:
    value = row.value(column)
    if not isinstance(value, str) or not value:
        raise DocumentUnbuildable(f"column {column!r} is empty or not text: {value!r}")
    return value.strip() if column == "currency" else value


def _opt_text(row: Row, column: str) -> str | None:
    value = row.value(column)
    return value if isinstance(value, str) and value else None


def _entered_at(row: Row) -> dt.datetime | None:
    value = row.get("created_at")
    return value if isinstance(value, dt.datetime) else None


def _common(header: Row, pk: str, *, version: int, source: SourcePosition,
            currency: str) -> dict[str, Any]:
    return {
        "id": str(header.value(pk)),
        "number": _text(header, "number"),
        "date": _as_date(header.value("date"), "date"),
        "currency": currency,
        "version": version,
        "status": "active",
        "entered_at": _entered_at(header),
        "source": source,
    }


def _invoice(header: Row, children: list[Row], common: dict[str, Any]) -> Invoice:
    return Invoice(
        **common,
        branch=_opt_text(header, "branch_code"),
        customer=_text(header, "customer_code"),
        warehouse=_text(header, "warehouse_code"),
        payment_terms_days=int(header.value("payment_terms_days")),
        prices_include_vat=bool(header.value("prices_include_vat")),
        lines=tuple(
            InvoiceLine(line_no=int(r.value("line_no")), sku=_text(r, "sku"), qty=r.money("qty"),
                        unit_price=r.money("unit_price"), vat_rate=r.money("vat_rate"),
                        discount_percent=r.money("discount_percent"))
            for r in children),
    )


def _payment(header: Row, children: list[Row], common: dict[str, Any]) -> Payment:
    return Payment(
        **common,
        branch=_opt_text(header, "branch_code"),
        customer=_text(header, "customer_code"),
        method=_text(header, "method"),  # type: ignore[arg-type]
        amount=header.money("amount"),
        allocations=tuple(Allocation(document=_text(r, "invoice_number"), amount=r.money("amount"))
                          for r in children),
    )


def _return(header: Row, children: list[Row], common: dict[str, Any]) -> SalesReturn:
    return SalesReturn(
        **common,
        customer=_text(header, "customer_code"),
        warehouse=_text(header, "warehouse_code"),
        against=_text(header, "against_invoice_number"),
        lines=tuple(ReturnLine(sku=_text(r, "sku"), qty=r.money("qty"),
                               line=r.value("invoice_line_no")) for r in children),
    )


def _goods_receipt(header: Row, children: list[Row], common: dict[str, Any]) -> GoodsReceipt:
    return GoodsReceipt(
        **common,
        supplier=_text(header, "supplier_code"),
        warehouse=_text(header, "warehouse_code"),
        lines=tuple(ReceiptLine(sku=_text(r, "sku"), qty=r.money("qty"),
                                unit_cost=r.money("unit_cost"), vat_rate=r.money("vat_rate"))
                    for r in children),
    )


def _write_off(header: Row, children: list[Row], common: dict[str, Any]) -> WriteOff:
    return WriteOff(
        **common,
        warehouse=_text(header, "warehouse_code"),
        reason=_opt_text(header, "reason") or "",
        lines=tuple(WriteOffLine(sku=_text(r, "sku"), qty=r.money("qty")) for r in children),
    )


_BUILDERS: dict[str, Callable[[Row, list[Row], dict[str, Any]], AnyDocument]] = {
    "invoice": _invoice,
    "payment": _payment,
    "return": _return,
    "goods_receipt": _goods_receipt,
    "write_off": _write_off,
}


def build_document(doc_type: str, header: Row, children: list[Row], *, version: int,
                   source: SourcePosition, functional_currency: str = "AZN") -> AnyDocument:
    """The model document of ``doc_type`` from its header row and child rows (in line order),
    with ``status="active"``; amounts are the columns' exact ``Decimal`` values.

    Raises:
        RejectedRecord: a NULL / NaN / float amount (:mod:`salesledger.streams.cdc` errors), a
            value Debezium did not send, an empty key column (:class:`DocumentUnbuildable`).
    """
    currency = _text(header, "currency") if "currency" in header else functional_currency
    pk = _HEADER_PK[doc_type]
    common = _common(header, pk, version=version, source=source, currency=currency)
    try:
        return _BUILDERS[doc_type](header, children, common)
    except (TypeError, ValueError) as error:
        raise DocumentUnbuildable(f"{doc_type} {common['number']}: {error}",
                                  document_id=f"{doc_type}:{common['number']}") from error


__all__ = [
    "CHILD_TABLES",
    "DOCUMENT_TABLES",
    "HEADER_TABLES",
    "MASTER_WAIT_WINDOW_MS",
    "RATE_TABLE",
    "STATE_REDUCERS",
    "AssemblyOverflow",
    "DocumentAssembler",
    "DocumentEvent",
    "DocumentOperation",
    "DocumentRejected",
    "DocumentUnbuildable",
    "Emitted",
    "RateEvent",
    "build_document",
    "commit_lsn_of",
]
