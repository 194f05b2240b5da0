"""What the sink writes: ledger facts with the Kafka position they were read at, and their rows.

A :class:`LedgerRecord` is one decoded Kafka record: its :class:`Position` (topic, partition,
offset) and its ``fact`` — an output of the posting engine (:class:`~salesledger.ledger.model.
JournalEntry`, ``StockMovement``, ``ReceivableUpdate``, ``HeldItem``, ``PeriodLock``,
``Release``), a :class:`PeriodAction` (lock / unlock / release with who and when), a
:class:`HeldEvent` (held / released / posted, the held topic), or a
:class:`~salesledger.streams.deadletter.DeadLetter`.

:func:`rows_of` turns a fact into rows of the accounting store's tables (``TABLES`` gives the
column names and PostgreSQL types). Every row has a deterministic natural key: the engine's
``entry_id`` / ``movement_id``, or — for facts without one — a uuid5 of the fact's content under
``SINK_NAMESPACE`` (same fact, same id, so re-delivery is harmless: CDC-09).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union

from salesledger.ledger.model import (
    DocumentRef,
    HeldItem,
    JournalEntry,
    PeriodLock,
    ReceivableUpdate,
    Release,
    StockMovement,
)
from salesledger.sinks import canonical
from salesledger.streams.deadletter import DeadLetter

#: Namespace of the ids the sink derives itself (receivable items, advances, held events, actions).
SINK_NAMESPACE = uuid.UUID("0b7d4f8e-6a3c-5e21-9d4b-51c7ed9e1a02")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a record was read: Kafka ``topic``, ``partition`` (>= 0) and ``offset`` (>= 0)."""

    topic: str
    partition: int
    offset: int

    def __post_init__(self) -> None:
        assert self.topic and self.partition >= 0 and self.offset >= 0, f"bad position {self}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodAction:
    """An audited period action (``schemas/period_action``, the control topic): ``action`` is
    ``lock`` / ``unlock`` (with ``through``, the last locked day) or ``release`` (with
    ``document_key``, ``"<type>:<number>"``); ``actor`` who, ``at`` when (tz-aware);
    ``action_id`` the request's id (empty: derived from the content)."""

    action: str
    through: dt.date | None = None
    document_key: str | None = None
    actor: str | None = None
    at: dt.datetime | None = None
    action_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldEvent:
    """A change of the held queue (``schemas/held_document``, the held topic): ``status``
    ``held`` | ``released`` (by ``changed_by``) | ``posted`` (left by itself) of the document
    ``document_key`` at ``version``, waiting for ``reason``; ``since`` when it was held,
    ``changed_at`` when the status changed (tz-aware)."""

    document_key: str
    status: str
    reason: str
    detail: str = ""
    version: int | None = None
    since: dt.datetime | None = None
    changed_by: str | None = None
    changed_at: dt.datetime | None = None


Fact = Union[JournalEntry, StockMovement, ReceivableUpdate, HeldItem, HeldEvent, PeriodLock,
             Release, PeriodAction, DeadLetter]


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One decoded Kafka record for the sink: ``position``, ``fact`` and the raw ``key`` /
    ``value`` bytes (kept so a rejected record can be dead-lettered untouched)."""

    position: Position
    fact: Fact
    key: bytes | None = None
    value: bytes | None = None

    @property
    def document_id(self) -> str | None:
        """``"<type>:<number>"`` of the document behind the fact, when there is one."""
        fact = self.fact
        for ref in (getattr(fact, "by", None), getattr(fact, "document", None)):
            if isinstance(ref, DocumentRef):
                return f"{ref.type}:{ref.number}"
        if isinstance(fact, (HeldItem, HeldEvent)):
            return fact.document_key
        if isinstance(fact, PeriodAction) and fact.document_key:
            return fact.document_key
        if isinstance(fact, DeadLetter):
            return fact.document_id
        return None


# Table -> ((column, PostgreSQL type), ...), in insert order. The first column is the natural key
# except for dead_letters, keyed by (source_topic, source_partition, source_offset).
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "accounts": (("code", "text"),),
    "journal_entries": (
        ("entry_id", "text"), ("kind", "text"), ("accounting_date", "date"),
        ("document_type", "text"), ("document_id", "text"), ("document_number", "text"),
        ("document_version", "bigint"), ("rule", "text"), ("reverses", "text"),
        ("exchange_rate", "numeric"), ("original_currency", "text"), ("source_lsn", "bigint"),
        ("source_txid", "bigint"), ("source_commit_at", "timestamptz"),
        ("content_sha256", "text"),
    ),
    "journal_lines": (
        ("entry_id", "text"), ("line_no", "integer"), ("account", "text"), ("debit", "numeric"),
        ("credit", "numeric"), ("currency", "text"), ("branch", "text"), ("warehouse", "text"),
        ("customer", "text"), ("sku", "text"), ("open_item", "text"), ("advance", "text"),
    ),
    "stock_ledger": (
        ("movement_id", "text"), ("kind", "text"), ("accounting_date", "date"), ("sku", "text"),
        ("warehouse", "text"), ("quantity", "numeric"), ("value", "numeric"),
        ("currency", "text"), ("by_type", "text"), ("by_id", "text"), ("by_number", "text"),
        ("by_version", "bigint"), ("source_lsn", "bigint"),
    ),
    "receivable_items": (
        ("item_id", "text"), ("kind", "text"), ("customer", "text"),
        ("document_number", "text"), ("accounting_date", "date"), ("due_date", "date"),
        ("amount", "numeric"), ("currency", "text"), ("by_type", "text"), ("by_id", "text"),
        ("by_number", "text"), ("by_version", "bigint"), ("source_lsn", "bigint"),
    ),
    "advances": (
        ("advance_id", "text"), ("kind", "text"), ("customer", "text"),
        ("document_number", "text"), ("accounting_date", "date"), ("amount", "numeric"),
        ("currency", "text"), ("by_type", "text"), ("by_id", "text"), ("by_number", "text"),
        ("by_version", "bigint"), ("source_lsn", "bigint"),
    ),
    "held_documents": (
        ("event_id", "text"), ("action", "text"), ("document_key", "text"),
        ("document_version", "bigint"), ("reason", "text"), ("detail", "text"),
        ("actor", "text"), ("occurred_at", "timestamptz"), ("payload", "jsonb"),
    ),
    "period_actions": (
        ("action_id", "text"), ("action", "text"), ("through_date", "date"),
        ("document_key", "text"), ("actor", "text"), ("occurred_at", "timestamptz"),
    ),
    "dead_letters": (
        ("source_topic", "text"), ("source_partition", "integer"), ("source_offset", "bigint"),
        ("reason", "text"), ("message", "text"), ("error_type", "text"),
        ("document_id", "text"), ("record_key", "bytea"), ("payload", "bytea"),
        ("first_seen", "timestamptz"),
    ),
}

Row = tuple[Any, ...]


def rows_of(fact: Fact) -> list[tuple[str, Row]]:
    """The store rows of one fact as ``(table, row)`` pairs, row values in ``TABLES`` order.

    Raises:
        TypeError: an unknown fact type, or an amount that is not a ``Decimal``.
    """
    if isinstance(fact, JournalEntry):
        return _entry_rows(fact)
    if isinstance(fact, StockMovement):
        return [("stock_ledger", _movement_row(fact))]
    if isinstance(fact, ReceivableUpdate):
        return [_receivable_row(fact)]
    if isinstance(fact, HeldItem):
        return [("held_documents", _held_row(fact))]
    if isinstance(fact, HeldEvent):
        return [("held_documents", _held_event_row(fact))]
    if isinstance(fact, PeriodLock):
        return _action_rows(PeriodAction(action="lock", through=fact.through, actor=fact.by,
                                         at=fact.at))
    if isinstance(fact, Release):
        return _action_rows(PeriodAction(action="release", document_key=fact.document_key,
                                         actor=fact.by, at=fact.at))
    if isinstance(fact, PeriodAction):
        return _action_rows(fact)
    if isinstance(fact, DeadLetter):
        return [("dead_letters", dead_letter_row(fact))]
    raise TypeError(f"the sink does not store {type(fact).__name__}")


def entry_canonical(entry: JournalEntry) -> tuple[Row, list[Row]]:
    """The entry and its lines as tuples in ``canonical.ENTRY_FIELDS`` / ``LINE_FIELDS`` order
    (lines numbered 1.. in the entry's order)."""
    doc = entry.document
    head = (entry.entry_id, entry.kind, entry.accounting_date, doc.type, doc.id, doc.number,
            doc.version, entry.rule, entry.reverses, entry.exchange_rate, entry.original_currency)
    lines = []
    for line_no, line in enumerate(entry.lines, start=1):
        _require_decimal(line.debit, line.credit)
        lines.append((entry.entry_id, line_no, line.account, line.debit, line.credit,
                      line.currency, line.branch, line.warehouse, line.customer, line.sku,
                      line.open_item, line.advance))
    return head, lines


def _entry_rows(entry: JournalEntry) -> list[tuple[str, Row]]:
    head, lines = entry_canonical(entry)
    src = entry.document.source
    trace = (src.lsn, src.tx_id, src.commit_time) if src else (None, None, None)
    rows: list[tuple[str, Row]] = [
        ("journal_entries", head + trace + (canonical.entry_sha256(head, lines),))
    ]
    rows.extend(("accounts", (code,)) for code in sorted({line[2] for line in lines}))
    rows.extend(("journal_lines", line) for line in lines)
    return rows


def _by(ref: Any) -> Row:
    return (ref.type, ref.id, ref.number, ref.version, ref.source.lsn if ref.source else None)


def _movement_row(m: StockMovement) -> Row:
    _require_decimal(m.qty, m.value)
    return (m.movement_id, m.kind, m.accounting_date, m.sku, m.warehouse, m.qty, m.value,
            m.currency) + _by(m.document)


def _receivable_row(u: ReceivableUpdate) -> tuple[str, Row]:
    _require_decimal(u.amount)
    key = "|".join(canonical.render_value(v) for v in (
        u.by.type, u.by.id, u.by.version, u.kind, u.customer, u.document, u.accounting_date,
        u.amount, u.currency, u.is_advance))
    row_id = str(uuid.uuid5(SINK_NAMESPACE, ("advance|" if u.is_advance else "item|") + key))
    if u.is_advance:
        return "advances", (row_id, u.kind, u.customer, u.document, u.accounting_date, u.amount,
                            u.currency) + _by(u.by)
    return "receivable_items", (row_id, u.kind, u.customer, u.document, u.accounting_date,
                                u.due_date, u.amount, u.currency) + _by(u.by)


def _held_row(h: HeldItem) -> Row:
    version = getattr(h.document, "version", None)
    event_id = str(uuid.uuid5(SINK_NAMESPACE, f"held|{h.document_key}|v{version}|{h.reason}"))
    payload = None
    if dataclasses.is_dataclass(h.document):
        payload = json.dumps(dataclasses.asdict(h.document), default=str, sort_keys=True)
    return (event_id, "held", h.document_key, version, h.reason, h.detail or None, None, h.since,
            payload)


def _held_event_row(h: HeldEvent) -> Row:
    if h.status not in ("held", "released", "posted"):
        raise ValueError(f"unknown held status {h.status!r}")
    changed = h.changed_at.isoformat() if h.changed_at else None
    event_id = str(uuid.uuid5(SINK_NAMESPACE,
                              f"held|{h.document_key}|v{h.version}|{h.status}|{changed}"))
    return (event_id, h.status, h.document_key, h.version, h.reason, h.detail or None,
            h.changed_by, h.changed_at or h.since, None)


def _action_rows(a: PeriodAction) -> list[tuple[str, Row]]:
    if a.action not in ("lock", "unlock", "release"):
        raise ValueError(f"unknown period action {a.action!r}")
    at = a.at.isoformat() if a.at else None
    action_id = a.action_id or str(uuid.uuid5(
        SINK_NAMESPACE, f"{a.action}|{a.through}|{a.document_key}|{a.actor}|{at}"))
    # The held queue itself changes through HeldEvent records (the held topic), not here.
    return [("period_actions", (action_id, a.action, a.through, a.document_key, a.actor, a.at))]


def dead_letter_row(d: DeadLetter) -> Row:
    """The ``dead_letters`` row of a dead letter."""
    return (d.source_topic, d.source_partition, d.source_offset, d.reason, d.message,
            d.error_type, d.document_id, d.key, d.value, d.first_seen)


def _require_decimal(*amounts: Any) -> None:
    for amount in amounts:
        if not isinstance(amount, Decimal):
            raise TypeError(f"amount {amount!r} is {type(amount).__name__}, not Decimal")
