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
from typing import Any

from salesledger.ledger.model import JournalEntry, ReceivableUpdate, StockMovement
from salesledger.sinks.records import LedgerRecord, Position
from salesledger.streams.deadletter import DeadLetter, RejectedRecord

#: Topic suffix -> (Avro subject, fact class). The sink's default topics.
TOPIC_SUBJECTS: dict[str, tuple[str, type]] = {
    "ledger.journal-entries": ("journal_entry", JournalEntry),
    "ledger.stock-movements": ("stock_movement", StockMovement),
    "ledger.receivable-updates": ("receivable_update", ReceivableUpdate),
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
def _serde() -> Any:
    from salesledger.streams.serde import AvroSerde

    return AvroSerde()


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
    datum = _serde().decode(value, subject)
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
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in datum:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"{cls.__name__}.{f.name} missing")
            continue
        kwargs[f.name] = _convert(hints[f.name], datum[f.name], f"{cls.__name__}.{f.name}")
    return cls(**kwargs)


@lru_cache(maxsize=64)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            assert type(None) in typing.get_args(hint), f"{path} may not be null"
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value, path)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return from_datum(hint, value)
    if hint is Decimal:
        if not isinstance(value, Decimal):
            raise TypeError(f"{path} is {type(value).__name__}, not Decimal")
        return value
    if hint is dt.date and isinstance(value, dt.datetime):
        raise TypeError(f"{path} is a timestamp, not a date")
    if hint in (str, int, bool, dt.date, dt.datetime) and not isinstance(value, hint):
        raise TypeError(f"{path} is {type(value).__name__}, not {hint.__name__}")
    if hint is dt.datetime and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value
