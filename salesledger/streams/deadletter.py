"""Dead letters: the record of an input the pipeline could not process, and why.

A processor that cannot decode, validate or post an input does not crash and does not drop it:
it catches the error inside its loop (Faust acknowledges an event whose processing raised, so a
crash would lose it) and produces a dead letter to the dead-letter topic (CDC-14). A dead letter
keeps the original key and value bytes untouched, so ``dlq retry`` can replay exactly what came
in once the cause is fixed.

This module is pure: it builds the record, its Avro datum (schema ``salesledger.DeadLetter``,
``schemas/dead_letter.v1.avsc``) and its Kafka headers; it imports no Kafka client.

Every error that should end as a dead letter derives from :class:`RejectedRecord` and carries a
machine-readable ``reason`` code (lower snake case, stable: dashboards and ``dlq list`` group by
it). Reason codes defined by the capture layer (``salesledger.streams.cdc`` and ``serde``):

==========================  ===============================================================
``converter_mismatch``      bytes in a format other than the converter configured (CDC-21)
``undecodable``             bytes that are no known format at all (garbage, truncated)
``malformed_envelope``      well-formed JSON/Avro that is not a valid Debezium envelope
``unknown_logical_type``    a Connect/Debezium logical type this decoder does not know
``float_money``             a money field carried as a binary float (CDC-01)
``null_amount``             a money field that is NULL — also PostgreSQL ``'NaN'`` (CDC-03)
``nan_amount``              a money field that is NaN or infinite (string/double modes)
``unavailable_value``       a field read whose value Debezium did not send (TOAST, CDC-05)
``unknown_schema``          Avro data whose writer schema is unknown (fingerprint / id)
``decimal_out_of_range``    a Decimal that does not fit an Avro decimal's precision/scale
==========================  ===============================================================

Validation before emission (:mod:`salesledger.streams.validation`) adds ``unknown_customer``,
``unknown_sku``, ``unknown_unit``, ``non_positive_quantity``, ``vat_rate_not_allowed``,
``missing_exchange_rate``, ``totals_mismatch``, ``unknown_invoice``, ``return_exceeds_sold``
(its dead letters carry the document record itself, for ``dlq retry``); the posting stage adds
the engine's error reasons (among them ``before_golive``: dated on or before the go-live date;
``kind_disabled``: a document kind not switched on) and ``engine_bug`` (any other exception
raised inside the engine) and ``state_too_large`` (a step whose state or outputs would not fit
in a Kafka message; the dead letter carries no record value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "HEADER_DOCUMENT_ID",
    "HEADER_REASON",
    "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TOPIC",
    "DeadLetter",
    "RejectedRecord",
    "build_dead_letter",
]

#: Full name of the Avro schema dead letters are encoded with.
DEAD_LETTER_SCHEMA = "salesledger.DeadLetter"

#: Kafka header names set on every dead-letter record (values are UTF-8 text).
HEADER_SOURCE_TOPIC = "dlq.source.topic"
HEADER_SOURCE_PARTITION = "dlq.source.partition"
HEADER_SOURCE_OFFSET = "dlq.source.offset"
HEADER_REASON = "dlq.reason"
HEADER_DOCUMENT_ID = "dlq.document.id"

_REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: Bound on the human message kept in a dead letter (characters).
MESSAGE_CHARS_MAX = 2000


def _check_reason(reason: str) -> str:
    assert _REASON_RE.match(reason), f"reason code must be lower snake case: {reason!r}"
    return reason


class RejectedRecord(Exception):
    """Base of every error after which the input goes to the dead-letter topic.

    Subclasses set the class attribute ``reason`` (a stable machine-readable code); an instance
    may override it. ``document_id`` is set when the failing input could be tied to a sales
    document (e.g. ``"invoice:INV-0001"``), else ``None``.
    """

    reason: ClassVar[str] = "rejected"

    def __init__(self, message: str, *, reason: str | None = None,
                 document_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = _check_reason(reason)  # type: ignore[misc]
        self.document_id = document_id

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One input the pipeline could not process.

    Fields: ``reason`` (code, see module doc), ``message`` (for a human, at most
    ``MESSAGE_CHARS_MAX`` characters), the input's Kafka coordinates ``source_topic`` /
    ``source_partition`` / ``source_offset``, ``document_id`` if known, the original ``key`` and
    ``value`` bytes (``None`` when the record had none), ``first_seen`` (aware UTC datetime, when
    the pipeline first failed on it) and ``error_type`` (the exception class name).
    """

    reason: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    document_id: str | None
    key: bytes | None
    value: bytes | None
    first_seen: datetime
    error_type: str = ""

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        assert self.source_partition >= 0 and self.source_offset >= 0, "Kafka coordinates"
        assert self.first_seen.tzinfo is not None, "first_seen must be timezone-aware"
        assert len(self.message) <= MESSAGE_CHARS_MAX

    @property
    def record_key(self) -> bytes:
        """Kafka key of the dead-letter record: the document id when known, else the source
        coordinates ``topic/partition/offset`` (UTF-8) — so retries of one document stay in
        order on one partition."""
        if self.document_id:
            return self.document_id.encode()
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}".encode()

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers for the dead-letter record (CDC-14): source topic, partition, offset,
        reason and, when known, document id; values UTF-8 text."""
        items = [
            (HEADER_SOURCE_TOPIC, self.source_topic.encode()),
            (HEADER_SOURCE_PARTITION, str(self.source_partition).encode()),
            (HEADER_SOURCE_OFFSET, str(self.source_offset).encode()),
            (HEADER_REASON, self.reason.encode()),
        ]
        if self.document_id:
            items.append((HEADER_DOCUMENT_ID, self.document_id.encode()))
        return items

    def to_avro(self) -> dict[str, Any]:
        """The Avro datum for ``salesledger.DeadLetter`` (``schemas/dead_letter.v1.avsc``)."""
        return {
            "reason": self.reason,
            "message": self.message,
            "error_type": self.error_type,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "document_id": self.document_id,
            "key": self.key,
            "value": self.value,
            "first_seen": self.first_seen,
        }

    @classmethod
    def from_avro(cls, datum: dict[str, Any]) -> DeadLetter:
        """Inverse of :meth:`to_avro` (accepts a datum read with any later schema version)."""
        first_seen = datum["first_seen"]
        if first_seen.tzinfo is None:
            first_seen = first_seen.replace(tzinfo=UTC)
        return cls(
            reason=datum["reason"], message=datum["message"],
            source_topic=datum["source_topic"], source_partition=datum["source_partition"],
            source_offset=datum["source_offset"], document_id=datum.get("document_id"),
            key=datum.get("key"), value=datum.get("value"), first_seen=first_seen,
            error_type=datum.get("error_type", ""),
        )


def build_dead_letter(
    error: RejectedRecord | str,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    message: str | None = None,
    document_id: str | None = None,
    first_seen: datetime | None = None,
) -> DeadLetter:
    """Build the dead letter for the input at ``topic``/``partition``/``offset``.

    ``error`` is the :class:`RejectedRecord` raised while processing it, or a bare reason code
    (then ``message`` should say what went wrong). ``document_id`` defaults to the error's.
    ``first_seen`` defaults to now (UTC); a retry that fails again passes the original one.
    Any exception that is not a ``RejectedRecord`` is a bug and should not be dead-lettered
    silently: the caller decides (this function asserts the type).
    """
    if isinstance(error, RejectedRecord):
        reason, text, error_type = error.reason, message or error.message, type(error).__name__
        document_id = document_id or error.document_id
    else:
        assert isinstance(error, str), f"not a RejectedRecord or reason code: {error!r}"
        reason, text, error_type = error, message or error, ""
    if len(text) > MESSAGE_CHARS_MAX:
        text = text[: MESSAGE_CHARS_MAX - 1] + "…"
    return DeadLetter(
        reason=reason, message=text, source_topic=topic, source_partition=partition,
        source_offset=offset, document_id=document_id, key=key, value=value,
        first_seen=first_seen or datetime.now(UTC), error_type=error_type,
    )
