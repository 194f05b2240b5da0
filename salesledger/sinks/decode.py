"""Kafka record -> :class:`LedgerRecord`: the one place the sink decodes (swap it here).

Values are Avro, framed and read by :class:`salesledger.streams.serde.AvroSerde`; the datum's
fields mirror the dataclasses of :mod:`salesledger.ledger.model` (the schemas in ``schemas/``
are written that way), so :func:`from_datum` builds the model object field by field, recursing
into nested records (``DocumentRef``, ``SourcePosition``, ``JournalLine``).

Which record a topic carries is fixed by ``TOPIC_SUBJECTS`` (topic suffix after the profile
prefix, see ``deploy/topics.yaml``). Anything that cannot be decoded raises a
:class:`~salesledger.streams.deadletter.RejectedRecord` with a reason code: the worker turns it
into a dead letter (CDC-14), never a crash, never a silent drop.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

from salesledger.ledger.model import JournalEntry, ReceivableUpdate, StockMovement
from salesledger.sinks.records import HeldEvent, LedgerRecord, PeriodAction, Position
from salesledger.streams.deadletter import DeadLetter, RejectedRecord

#: Topic suffix -> (Avro subject, fact class). The sink's default topics.
TOPIC_SUBJECTS: dict[str, tuple[str, type]] = {
    "ledger.journal-entries": ("journal_entry", JournalEntry),
    "ledger.stock-movements": ("stock_movement", StockMovement),
    "ledger.receivable-updates": ("receivable_update", ReceivableUpdate),
    "held": ("held_document", HeldEvent),
    "control": ("period_action", PeriodAction),
    "dlq": ("dead_letter", DeadLetter),
}


class InvalidLedgerRecord(RejectedRecord):
    """A record that decodes as Avro but does not make a valid ledger fact (missing field,
    wrong type, a float where money belongs)."""

    reason = "invalid_record"


class UnexpectedTopic(RejectedRecord):
    """A record from a topic the sink has no decoder for."""

    reason = "unexpected_topic"


@lru_cache(maxsize=1)
def shared_serde() -> Any:
    """The process's :class:`~salesledger.streams.serde.AvroSerde` (schema catalog loaded once;
    framing from the process settings, ``SALESLEDGER_SERDE``)."""
    from salesledger.config import get_settings
    from salesledger.streams.serde import AvroSerde

    return AvroSerde.for_settings(get_settings())


def topic_suffix(topic: str) -> str:
    """``"sl.ledger.journal-entries"`` -> ``"ledger.journal-entries"`` (drops the prefix)."""
    return topic.split(".", 1)[1] if "." in topic else topic


def subject_of(topic: str) -> tuple[str, type] | None:
    """(subject, fact class) for ``topic``: its suffix is a ``TOPIC_SUBJECTS`` key, or starts
    with one and a dot (``sltest.ledger.journal-entries.t1`` for a test's own topic)."""
    suffix = topic_suffix(topic)
    for key, spec in TOPIC_SUBJECTS.items():
        if suffix == key or suffix.startswith(key + "."):
            return spec
    return None


def decode_record(topic: str, partition: int, offset: int, key: bytes | None,
                  value: bytes | None) -> LedgerRecord | None:
    """Decode one Kafka record into a :class:`LedgerRecord`; ``None`` for a tombstone.

    Raises:
        RejectedRecord: (a subclass with its reason code) when the bytes are not a valid fact.
    """
    spec = subject_of(topic)
    if spec is None:
        raise UnexpectedTopic(f"the sink has no decoder for topic {topic!r}")
    subject, cls = spec
    datum = shared_serde().decode(value, subject)
    if datum is None:
        return None
    try:
        fact = DeadLetter.from_avro(datum) if cls is DeadLetter else from_datum(cls, datum)
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        raise InvalidLedgerRecord(f"{subject}: {type(err).__name__}: {err}") from None
    return LedgerRecord(Position(topic, partition, offset), fact, key, value)


def from_datum(cls: type, datum: Any) -> Any:
    """Build the frozen dataclass ``cls`` from an Avro datum (dict) of the same field names.

    Raises:
        TypeError: a field has the wrong type (e.g. a float amount); KeyError: a required field
        is missing.
    """
    return _builder(cls)(datum, cls.__name__)


Convert = Callable[[Any, str], Any]


@lru_cache(maxsize=64)
def _builder(cls: type) -> Convert:
    """A compiled builder of ``cls``: one converter per field, resolved once per class."""
    hints = typing.get_type_hints(cls)
    plan = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        plan.append((f.name, required, _converter(hints[f.name])))

    def build(datum: Any, path: str) -> Any:
        kwargs = {}
        for name, required, convert in plan:
            if name in datum:
                kwargs[name] = convert(datum[name], f"{path}.{name}")
            elif required:
                raise KeyError(f"{path}.{name} missing")
        return cls(**kwargs)

    return build


def _converter(hint: Any) -> Convert:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(options) < len(typing.get_args(hint))
        inner = _converter(options[0])

        def optional(value: Any, path: str) -> Any:
            if value is None:
                if not nullable:
                    raise TypeError(f"{path} may not be null")
                return None
            return inner(value, path)
        return optional
    if origin is tuple:
        item = _converter(typing.get_args(hint)[0])
        return lambda value, path: tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _builder(hint)
    if hint is dt.datetime:
        return _datetime
    if hint is dt.date:
        return _date
    if hint in (str, int, bool, Decimal):
        return _exact(hint)
    return lambda value, path: value


def _exact(kind: type) -> Convert:
    def check(value: Any, path: str) -> Any:
        if type(value) is not kind and not isinstance(value, kind):
            raise TypeError(f"{path} is {type(value).__name__}, not {kind.__name__}")
        if kind is int and isinstance(value, bool):
            raise TypeError(f"{path} is bool, not int")
        return value
    return check


def _date(value: Any, path: str) -> dt.date:
    if type(value) is not dt.date:
        raise TypeError(f"{path} is {type(value).__name__}, not date")
    return value


def _datetime(value: Any, path: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{path} is {type(value).__name__}, not datetime")
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
