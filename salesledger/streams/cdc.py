"""Decoding Debezium change events from Kafka records.

Input: the key and value bytes of a record on a Debezium topic, as Kafka Connect's converter
wrote them. Our connector uses ``JsonConverter`` with ``schemas.enable=true`` (each value is
``{"schema": ..., "payload": ...}``); Confluent-framed Avro (``AvroConverter``, magic byte 0x00
+ 4-byte schema id) is decoded too when a schema lookup is given. Output: one of

- :class:`ChangeEvent` — a row change (op ``c``/``u``/``d``/``r``/``t``/``m``) with its
  ``before`` / ``after`` :class:`Row` images, the :class:`SourceInfo` block (LSN, txId, commit
  time, snapshot flag, schema, table) and the :class:`TransactionRef` block;
- :class:`TransactionEvent` — a transaction metadata event (``BEGIN`` / ``END`` with
  ``event_count`` and per-table counts), from the ``<prefix>.transaction`` topic;
- :class:`Heartbeat` — from ``__debezium-heartbeat.<prefix>``;
- :class:`Tombstone` — a null value (Kafka log compaction marker after a delete): skipped by
  processors, never an error (CDC-07).

Field values are decoded from their Connect schema (reference: Debezium PostgreSQL connector
documentation, "Data type mappings"; Kafka Connect ``Decimal``):

- ``org.apache.kafka.connect.data.Decimal`` — base64 of the big-endian two's-complement
  unscaled integer, scale in the schema parameters (``decimal.handling.mode=precise``) →
  :class:`decimal.Decimal`, exactly (CDC-01);
- ``io.debezium.data.VariableScaleDecimal`` — struct ``{scale, value}`` for ``NUMERIC``
  without a declared scale → ``Decimal`` with that record's scale (CDC-02);
- ``io.debezium.time.Date`` / Connect ``Date`` (days) → ``date``; ``Time``/``MicroTime``/
  ``NanoTime`` → ``time``; ``Timestamp``/``MicroTimestamp``/``NanoTimestamp`` (wall clock of
  a ``timestamp without time zone``) → naive ``datetime``; ``ZonedTimestamp`` → aware
  ``datetime``; ``MicroDuration`` → ``timedelta``;
- ``__debezium_unavailable_value`` (an unchanged TOASTed column, CDC-05) → :data:`UNAVAILABLE`,
  a sentinel that refuses to be used as data;
- any other named (logical) type on a primitive → :class:`UnknownLogicalType`, loudly.

A float (``float64``, from ``decimal.handling.mode=double`` or a ``double precision`` column) is
decoded as a float, but :meth:`Row.money` refuses it (CDC-01); a NULL money value — which is
also how Debezium's precise mode sends PostgreSQL ``'NaN'`` — raises :class:`NullAmount`
(CDC-03). Every error is a :class:`~salesledger.streams.deadletter.RejectedRecord` with a
``reason`` code: the processor dead-letters the input and keeps running.

Key and value decoders are configured separately (:class:`ConnectDecoder`); handing a decoder
bytes in another converter's format raises :class:`ConverterMismatch` saying what the bytes
look like (CDC-21).

Pure: no Kafka client, no I/O (an Avro schema lookup, if any, is injected).
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NoReturn

from salesledger.streams.deadletter import DeadLetter, RejectedRecord, build_dead_letter

__all__ = [
    "UNAVAILABLE",
    "UNAVAILABLE_PLACEHOLDER",
    "ChangeEvent",
    "ChangeEventDecoder",
    "ConnectDecoder",
    "Converter",
    "ConverterMismatch",
    "Decoded",
    "DecodeError",
    "FloatMoney",
    "Heartbeat",
    "MalformedEnvelope",
    "NaNAmount",
    "NullAmount",
    "Op",
    "Row",
    "SourceInfo",
    "Tombstone",
    "TransactionEvent",
    "TransactionRef",
    "Unavailable",
    "UnavailableValue",
    "Undecodable",
    "UnknownLogicalType",
    "decode_connect_value",
    "decode_record",
    "sniff_format",
]

#: Debezium's default ``unavailable.value.placeholder``.
UNAVAILABLE_PLACEHOLDER: Final = "__debezium_unavailable_value"

_EPOCH_DATE: Final = date(1970, 1, 1)
_EPOCH: Final = datetime(1970, 1, 1)
#: Bound on nesting depth of Connect schemas (arrays of structs of ...).
_DEPTH_MAX: Final = 32
#: Bound on compiled schemas cached per decoder (one per table and schema version).
_SCHEMA_CACHE_MAX: Final = 256


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class DecodeError(RejectedRecord):
    """Base of the capture layer's decoding errors (all dead-lettered)."""

    reason = "decode_error"


class ConverterMismatch(DecodeError):
    """The bytes are in another converter's format than this decoder is configured for."""

    reason = "converter_mismatch"


class Undecodable(DecodeError):
    """The bytes are no known format at all (garbage, truncated record)."""

    reason = "undecodable"


class MalformedEnvelope(DecodeError):
    """Valid JSON/Avro, but not a well-formed Connect/Debezium record (missing field, a value
    that does not match its schema type such as ``"amount": "abc"``)."""

    reason = "malformed_envelope"


class UnknownLogicalType(DecodeError):
    """A named Connect/Debezium logical type this decoder does not know."""

    reason = "unknown_logical_type"


class FloatMoney(DecodeError):
    """A money field arrived as a binary float (CDC-01): refused, never rounded."""

    reason = "float_money"


class NullAmount(DecodeError):
    """A money field is NULL; Debezium's precise mode also sends ``'NaN'::numeric`` as NULL
    (CDC-03). Never read as zero."""

    reason = "null_amount"


class NaNAmount(DecodeError):
    """A money field is NaN or infinite (``decimal.handling.mode`` string or double)."""

    reason = "nan_amount"


class UnavailableValue(DecodeError):
    """A field was read as data whose value Debezium did not send (unchanged TOAST, CDC-05)."""

    reason = "unavailable_value"


# --------------------------------------------------------------------------------------------
# The UNAVAILABLE sentinel
# --------------------------------------------------------------------------------------------
class Unavailable:
    """Type of :data:`UNAVAILABLE`: a column value Debezium did not send (an unchanged TOASTed
    column under ``REPLICA IDENTITY`` that does not log it, CDC-05).

    It is not data: it equals only itself, it has no truth value, no string form, no number
    form, and Avro encoding rejects it. Use :meth:`Row.resolve_unavailable` to fill such
    fields from a previously known image, or :meth:`Row.is_unavailable` to test.
    """

    _instance: Unavailable | None = None
    __slots__ = ()

    def __new__(cls) -> Unavailable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNAVAILABLE"

    def _refuse(self, *_: Any) -> NoReturn:
        raise TypeError("UNAVAILABLE (a value Debezium did not send) is not data")

    __bool__ = _refuse
    __str__ = _refuse
    __format__ = _refuse
    __int__ = _refuse
    __float__ = _refuse
    __len__ = _refuse
    __iter__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse

    def __reduce__(self) -> str:
        return "UNAVAILABLE"


#: The one instance of :class:`Unavailable`.
UNAVAILABLE: Final = Unavailable()


# --------------------------------------------------------------------------------------------
# Decoded values
# --------------------------------------------------------------------------------------------
class Row(Mapping[str, Any]):
    """An immutable row image (``before`` or ``after``): column name → decoded value.

    Values are ``Decimal``, ``int``, ``str``, ``bool``, ``bytes``, ``date``, ``time``,
    ``datetime``, ``timedelta``, ``float`` (only for float columns), tuples (arrays), ``None``
    (SQL NULL) or :data:`UNAVAILABLE`. Plain ``row[name]`` returns the raw decoded value; the
    typed accessors below refuse what is not data.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = MappingProxyType(dict(values))

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(self._values)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._values.keys() == other._values.keys() and all(
            self._values[k] is other._values[k] or (
                self._values[k] is not UNAVAILABLE and other._values[k] is not UNAVAILABLE
                and self._values[k] == other._values[k])
            for k in self._values)

    __hash__ = None  # type: ignore[assignment]

    def is_unavailable(self, name: str) -> bool:
        """True if Debezium did not send this column's value (``KeyError`` if no such column)."""
        return self._values[name] is UNAVAILABLE

    @property
    def unavailable_fields(self) -> frozenset[str]:
        """Names of the columns whose value Debezium did not send."""
        return frozenset(k for k, v in self._values.items() if v is UNAVAILABLE)

    def value(self, name: str) -> Any:
        """The column's value, ``None`` for SQL NULL.

        Raises:
            MalformedEnvelope: no such column.
            UnavailableValue: Debezium did not send the value (resolve it first).
        """
        try:
            value = self._values[name]
        except KeyError:
            raise MalformedEnvelope(f"row has no column {name!r}") from None
        if value is UNAVAILABLE:
            raise UnavailableValue(f"column {name!r} was not sent by Debezium (unchanged TOAST)")
        return value

    def money(self, name: str) -> Decimal:
        """The column as an exact, finite ``Decimal`` amount (money, quantity, rate).

        Raises:
            FloatMoney: the value is a binary float (CDC-01).
            MalformedEnvelope: text that is not a number (``"abc"``), or a struct/bytes.
            NullAmount: SQL NULL, which includes PostgreSQL ``'NaN'`` in precise mode (CDC-03).
            NaNAmount: NaN or infinite.
            UnavailableValue, MalformedEnvelope: see :meth:`value`.
        """
        value = self.value(name)
        if value is None:
            raise NullAmount(f"amount column {name!r} is NULL (or NaN in the source)")
        if isinstance(value, float):
            raise FloatMoney(f"amount column {name!r} arrived as a float ({value!r}); "
                             "configure decimal.handling.mode=precise")
        if isinstance(value, str):  # decimal.handling.mode=string: exact decimal text
            try:
                value = Decimal(value)
            except InvalidOperation:
                raise MalformedEnvelope(f"amount column {name!r} is not a number: "
                                        f"{value[:40]!r}") from None
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise MalformedEnvelope(f"amount column {name!r} is not a number: {value!r:.40}")
        amount = Decimal(value)
        if not amount.is_finite():
            raise NaNAmount(f"amount column {name!r} is {amount}")
        return amount

    def resolve_unavailable(self, previous: Mapping[str, Any] | None) -> Row:
        """This row with every :data:`UNAVAILABLE` field taken from ``previous`` (the last
        known image of the same row, e.g. kept state or the event's ``before``).

        Raises:
            UnavailableValue: a field is unavailable here and unknown (or also unavailable)
                in ``previous``.
        """
        missing = self.unavailable_fields
        if not missing:
            return self
        values = dict(self._values)
        for name in missing:
            old = UNAVAILABLE if previous is None else previous.get(name, UNAVAILABLE)
            if old is UNAVAILABLE:
                raise UnavailableValue(f"column {name!r} was not sent and no earlier value is known")
            values[name] = old
        return Row(values)


class Op(StrEnum):
    """Debezium's ``op`` field."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot read
    TRUNCATE = "t"
    MESSAGE = "m"  # pg_logical_emit_message


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Debezium's PostgreSQL ``source`` block.

    ``lsn``: the change's WAL position (bytes, int); ``tx_id``: the PostgreSQL transaction id;
    ``ts_ms``: the commit time (ms since epoch, UTC); ``snapshot``: ``"false"`` for streamed
    changes, else ``"true"``/``"first"``/``"last"``/``"incremental"``/…; ``sequence``:
    ``(last_committed_lsn, lsn)`` when sent. ``name`` is the connector's topic prefix.
    """

    connector: str
    name: str
    db: str
    schema: str
    table: str
    ts_ms: int
    snapshot: str = "false"
    lsn: int | None = None
    tx_id: int | None = None
    sequence: tuple[int | None, int | None] | None = None
    version: str = ""

    @property
    def is_snapshot(self) -> bool:
        """True for rows read by a snapshot (they carry no transaction block)."""
        return self.snapshot not in ("false", "")

    @property
    def commit_time(self) -> datetime:
        """``ts_ms`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC)

    @property
    def qualified_table(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True, slots=True)
class TransactionRef:
    """The ``transaction`` block of a change event: the transaction ``id`` (PostgreSQL:
    ``"<txId>:<LSN>"``), the event's 1-based position among all events of the transaction
    (``total_order``) and among its table's (``data_collection_order``)."""

    id: str
    total_order: int
    data_collection_order: int

    @property
    def tx_id(self) -> int | None:
        """The PostgreSQL transaction id, parsed from ``id``. Match row events to their
        BEGIN/END by this, not by ``id``: measured on Debezium 3.6, the LSN part of a row
        event's ``transaction.id`` differs from the END event's (``3884:463021520`` vs
        ``3884:463021896``)."""
        return _tx_id_of(self.id)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change. ``before``/``after`` are ``None`` where Debezium sends none (``before``
    of an insert; ``after`` of a delete; ``before`` of an update without ``REPLICA IDENTITY
    FULL``); a delete under ``REPLICA IDENTITY DEFAULT`` has only the key in ``before``."""

    op: Op
    before: Row | None
    after: Row | None
    source: SourceInfo
    transaction: TransactionRef | None
    ts_ms: int | None
    key: Mapping[str, Any] | None = None

    @property
    def row(self) -> Row:
        """The image that describes the row: ``after``, or ``before`` for a delete.

        Raises:
            MalformedEnvelope: neither image is present (truncate, message).
        """
        image = self.after if self.after is not None else self.before
        if image is None:
            raise MalformedEnvelope(f"op {self.op.value} carries no row image")
        return image

    @property
    def table(self) -> str:
        """``schema.table`` of the source row."""
        return self.source.qualified_table


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """A transaction metadata event. ``status`` ``"BEGIN"`` or ``"END"``; ``event_count`` and
    ``data_collections`` (``(("public.invoices", 1), ...)``) only on ``END``."""

    status: str
    id: str
    ts_ms: int | None
    event_count: int | None = None
    data_collections: tuple[tuple[str, int], ...] = ()

    @property
    def tx_id(self) -> int | None:
        """The PostgreSQL transaction id, parsed from ``id`` (``"571:53195829"`` → 571)."""
        return _tx_id_of(self.id)


def _tx_id_of(text: str) -> int | None:
    head = text.split(":", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A Debezium heartbeat: ``ts_ms`` is when it was emitted; ``server_name`` the prefix."""

    ts_ms: int
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A record with a null value (log compaction marker after a delete). Skip it (CDC-07)."""

    key: Any = None


Decoded = ChangeEvent | TransactionEvent | Heartbeat | Tombstone


# --------------------------------------------------------------------------------------------
# Connect schema + payload → Python values
# --------------------------------------------------------------------------------------------
def _decimal_from_unscaled(raw: bytes, scale: int) -> Decimal:
    unscaled = int.from_bytes(raw, byteorder="big", signed=True)
    return Decimal(unscaled).scaleb(-scale)


def _raw_bytes(value: Any, path: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedEnvelope(f"{path}: not base64: {value[:40]!r}") from None
    raise MalformedEnvelope(f"{path}: expected bytes (base64 text), got {type(value).__name__}")


class _Decoder:
    """Compiles Connect schemas into decoders of their payloads (logical types, placeholders)."""

    def __init__(self, placeholder: str) -> None:
        self.placeholder = placeholder
        self.placeholder_bytes = placeholder.encode()

    def value(self, schema: Mapping[str, Any], value: Any, path: str, depth: int = 0) -> Any:
        """Decode one ``value`` of ``schema`` (compiles the schema; see :meth:`compile`)."""
        return self.compile(schema, path, depth)(value)

    def compile(self, schema: Mapping[str, Any], path: str = "$",
                depth: int = 0) -> Callable[[Any], Any]:
        """Compile the walk of ``schema`` once; the result decodes any payload of it.

        Raises:
            UnknownLogicalType: at compile time, so even a null value of such a type is loud.
        """
        assert depth < _DEPTH_MAX, f"{path}: schema nested deeper than {_DEPTH_MAX}"
        name, kind = schema.get("name"), schema.get("type")
        handler = _LOGICAL.get(name) if name is not None else None
        if name is not None and handler is None and kind != "struct" and name not in _PASSTHROUGH:
            raise UnknownLogicalType(f"{path}: logical type {name!r} (on {kind}) is not known")
        placeholder = self.placeholder
        body: Callable[[Any], Any]
        if handler is not None:
            body = functools.partial(handler, self, schema, path=path)
        elif kind == "struct":
            fields = tuple((f["field"], self.compile(f, f"{path}.{f['field']}", depth + 1))
                           for f in schema.get("fields") or ())

            def body(value: Any) -> Any:
                if not isinstance(value, dict):
                    raise MalformedEnvelope(f"{path}: expected a struct, got {type(value).__name__}")
                return {fname: decode(value.get(fname)) for fname, decode in fields}
        elif kind == "array":
            item = self.compile(schema.get("items") or {}, f"{path}[]", depth + 1)

            def body(value: Any) -> Any:
                if not isinstance(value, list):
                    raise MalformedEnvelope(f"{path}: expected an array")
                if value and all(v == placeholder for v in value):
                    return UNAVAILABLE
                return tuple(item(v) for v in value)
        elif kind == "map":
            body = functools.partial(self.map, schema, path=path, depth=depth)
        else:
            body = functools.partial(self.primitive, kind, path=path)

        if kind == "string":
            return lambda value: None if value is None else body(value)

        def decode(value: Any) -> Any:
            if value is None:
                return None
            if value.__class__ is str and value == placeholder:
                return UNAVAILABLE  # a non-text column with the text placeholder (arrays, json)
            return body(value)
        return decode

    def map(self, schema: Mapping[str, Any], value: Any, *, path: str, depth: int) -> dict:
        values = schema.get("values") or {}
        if isinstance(value, dict):  # string keys: a JSON object
            return {k: self.value(values, v, f"{path}[{k}]", depth + 1) for k, v in value.items()}
        if isinstance(value, list):  # non-string keys: [[k, v], ...]
            keys = schema.get("keys") or {}
            return {self.value(keys, k, path, depth + 1): self.value(values, v, path, depth + 1)
                    for k, v in value}
        raise MalformedEnvelope(f"{path}: expected a map")

    def primitive(self, kind: Any, value: Any, *, path: str) -> Any:
        match kind:
            case "int8" | "int16" | "int32" | "int64":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise MalformedEnvelope(f"{path}: expected {kind}, got {value!r:.40}")
                return value
            case "float32" | "float64" | "float" | "double":
                if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                    if value in ("NaN", "Infinity", "-Infinity"):
                        return float(value)
                    raise MalformedEnvelope(f"{path}: expected {kind}, got {value!r:.40}")
                return float(value)
            case "boolean":
                if not isinstance(value, bool):
                    raise MalformedEnvelope(f"{path}: expected boolean, got {value!r:.40}")
                return value
            case "string":
                if not isinstance(value, str):
                    raise MalformedEnvelope(f"{path}: expected string, got {value!r:.40}")
                return UNAVAILABLE if value == self.placeholder else value
            case "bytes":
                raw = _raw_bytes(value, path)
                return UNAVAILABLE if raw == self.placeholder_bytes else raw
        raise MalformedEnvelope(f"{path}: unknown Connect schema type {kind!r}")

    # --- logical types -------------------------------------------------------------------
    def decimal(self, schema: Mapping[str, Any], value: Any, *, path: str) -> Any:
        params = schema.get("parameters") or {}
        try:
            scale = int(params["scale"])
        except (KeyError, ValueError):
            raise MalformedEnvelope(f"{path}: Decimal schema without an integer scale") from None
        if isinstance(value, Decimal):  # Avro converter, already exact
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise FloatMoney(f"{path}: Decimal sent as a JSON number {value!r} "
                             "(JsonConverter decimal.format must be BASE64)")
        raw = _raw_bytes(value, path)
        if raw == self.placeholder_bytes:
            return UNAVAILABLE
        return _decimal_from_unscaled(raw, scale)

    def variable_scale_decimal(self, schema: Mapping[str, Any], value: Any, *, path: str) -> Any:
        if not isinstance(value, dict) or "scale" not in value or "value" not in value:
            raise MalformedEnvelope(f"{path}: VariableScaleDecimal must be {{scale, value}}")
        scale = value["scale"]
        if isinstance(scale, bool) or not isinstance(scale, int):
            raise MalformedEnvelope(f"{path}: VariableScaleDecimal scale {scale!r}")
        raw = _raw_bytes(value["value"], f"{path}.value")
        if raw == self.placeholder_bytes:
            return UNAVAILABLE
        return _decimal_from_unscaled(raw, scale)

    def epoch(self, schema: Mapping[str, Any], value: Any, *, path: str) -> Any:
        name = schema["name"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedEnvelope(f"{path}: {name} expects an integer, got {value!r:.40}")
        unit = _EPOCH_UNITS[name]
        if unit == "days":
            return _EPOCH_DATE + timedelta(days=value)
        micros = value * 1000 if unit == "ms" else value // 1000 if unit == "ns" else value
        delta = timedelta(microseconds=micros)
        if name in _TIME_OF_DAY:
            return (datetime.min + delta).time()
        if name == "io.debezium.time.MicroDuration":
            return delta
        return _EPOCH + delta  # naive wall clock of a timestamp without time zone

    def iso_text(self, schema: Mapping[str, Any], value: Any, *, path: str) -> Any:
        name = schema["name"]
        if not isinstance(value, str):
            raise MalformedEnvelope(f"{path}: {name} expects ISO-8601 text")
        if value == self.placeholder:
            return UNAVAILABLE
        try:
            if name in ("io.debezium.time.ZonedTimestamp", "io.debezium.time.IsoTimestamp"):
                return datetime.fromisoformat(value)
            if name in ("io.debezium.time.ZonedTime", "io.debezium.time.IsoTime"):
                return time.fromisoformat(value)
            return date.fromisoformat(value)
        except ValueError:
            raise MalformedEnvelope(f"{path}: {name} value {value!r:.40} is not ISO-8601") from None


_EPOCH_UNITS: Final = {
    "io.debezium.time.Date": "days",
    "org.apache.kafka.connect.data.Date": "days",
    "io.debezium.time.Time": "ms",
    "org.apache.kafka.connect.data.Time": "ms",
    "io.debezium.time.MicroTime": "us",
    "io.debezium.time.NanoTime": "ns",
    "io.debezium.time.Timestamp": "ms",
    "org.apache.kafka.connect.data.Timestamp": "ms",
    "io.debezium.time.MicroTimestamp": "us",
    "io.debezium.time.NanoTimestamp": "ns",
    "io.debezium.time.MicroDuration": "us",
}
_TIME_OF_DAY: Final = frozenset({
    "io.debezium.time.Time", "org.apache.kafka.connect.data.Time",
    "io.debezium.time.MicroTime", "io.debezium.time.NanoTime",
})
_LOGICAL: Final[dict[str, Callable[..., Any]]] = {
    "org.apache.kafka.connect.data.Decimal": _Decoder.decimal,
    "io.debezium.data.VariableScaleDecimal": _Decoder.variable_scale_decimal,
    **{name: _Decoder.epoch for name in _EPOCH_UNITS},
    **{name: _Decoder.iso_text for name in (
        "io.debezium.time.ZonedTimestamp", "io.debezium.time.ZonedTime",
        "io.debezium.time.IsoTimestamp", "io.debezium.time.IsoTime", "io.debezium.time.IsoDate")},
}
#: Named types whose value is the plain primitive (text/bytes kept as such).
_PASSTHROUGH: Final = frozenset({
    "io.debezium.data.Json", "io.debezium.data.Uuid", "io.debezium.data.Enum",
    "io.debezium.data.EnumSet", "io.debezium.data.Xml", "io.debezium.data.Ltree",
    "io.debezium.data.Bits", "io.debezium.time.Interval",
    "io.debezium.connector.postgresql.Source",
})


def decode_connect_value(schema: Mapping[str, Any], payload: Any, *,
                         placeholder: str = UNAVAILABLE_PLACEHOLDER, path: str = "$") -> Any:
    """Decode a Connect ``payload`` by its ``schema`` (JsonConverter's ``schema`` object).

    Structs become ``dict``, arrays ``tuple``, logical types as listed in the module doc.

    Raises:
        UnknownLogicalType, MalformedEnvelope, FloatMoney: see the module doc.
    """
    return _Decoder(placeholder).value(schema, payload, path)


# --------------------------------------------------------------------------------------------
# Converters (CDC-21)
# --------------------------------------------------------------------------------------------
class Converter(StrEnum):
    """What Kafka Connect converter wrote the bytes."""

    JSON_SCHEMA = "json-schema"  # JsonConverter, schemas.enable=true
    JSON = "json"  # JsonConverter, schemas.enable=false (keys only: no types, no decimals)
    AVRO_CONFLUENT = "avro-confluent"  # AvroConverter: 0x00 + 4-byte schema id + Avro body


def sniff_format(data: bytes) -> str:
    """A short description of what ``data`` looks like, for error messages."""
    if len(data) >= 5 and data[0] == 0:
        (schema_id,) = struct.unpack(">I", data[1:5])
        return f"Confluent-framed Avro (magic byte 0x00, schema id {schema_id})"
    if data[:2] == b"\xc3\x01" and len(data) >= 10:
        return "Avro single-object encoding (0xC3 0x01 + fingerprint)"
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return f"{len(data)} bytes that are neither JSON nor framed Avro ({data[:8].hex()})"
    if isinstance(parsed, dict) and set(parsed) == {"schema", "payload"}:
        return "JSON with a schema/payload envelope (JsonConverter schemas.enable=true)"
    return "plain JSON without a schema (JsonConverter schemas.enable=false)"


def _loads(data: bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


#: ``schema_id -> Avro writer schema`` (e.g. a schema-registry client's cached lookup).
SchemaLookup = Callable[[int], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class ConnectValue:
    """Converter output: the Connect schema (``None`` for schemaless JSON) and the payload
    with logical types decoded."""

    schema: Mapping[str, Any] | None
    payload: Any


class ConnectDecoder:
    """Turns the key *or* the value bytes of a record into a :class:`ConnectValue`.

    Configure one per side (a connector may use different key and value converters).
    ``schema_lookup`` is required for ``AVRO_CONFLUENT``. ``decode(None)`` returns ``None``.

    Raises (from :meth:`decode`): :class:`ConverterMismatch` when the bytes are another
    converter's format, :class:`Undecodable` for bytes of no known format, plus the errors of
    :func:`decode_connect_value`.
    """

    def __init__(self, converter: Converter | str, *, schema_lookup: SchemaLookup | None = None,
                 placeholder: str = UNAVAILABLE_PLACEHOLDER) -> None:
        self.converter = Converter(converter)
        if self.converter is Converter.AVRO_CONFLUENT and schema_lookup is None:
            raise ValueError("the avro-confluent converter needs a schema_lookup")
        self._schema_lookup = schema_lookup
        self._decoder = _Decoder(placeholder)
        # schema text (JSON) or Avro schema id -> (Connect schema, compiled decoder)
        self._compiled: dict[bytes | int, tuple[Mapping[str, Any], Callable[[Any], Any]]] = {}
        self._avro_parsed: dict[int, Any] = {}

    def decode(self, data: bytes | None) -> ConnectValue | None:
        """Decode one key or value; ``None`` for a null (tombstone value, keyless record)."""
        if data is None:
            return None
        if self.converter is Converter.AVRO_CONFLUENT:
            return self._decode_avro(data)
        if len(data) >= 5 and data[0] == 0 or data[:2] == b"\xc3\x01":
            raise self._mismatch(data)
        if self.converter is Converter.JSON_SCHEMA:
            fast = self._decode_split(data)
            if fast is not None:
                return fast
        try:
            parsed = _loads(data)
        except (UnicodeDecodeError, ValueError):
            raise Undecodable(f"expected {self.converter.value} but got {sniff_format(data)}") from None
        if parsed is None:  # JSON "null" written by JsonConverter for a null
            return None
        is_envelope = isinstance(parsed, dict) and set(parsed) == {"schema", "payload"}
        if self.converter is Converter.JSON:
            if is_envelope:
                raise self._mismatch(data)
            return ConnectValue(None, parsed)
        if not is_envelope:
            raise self._mismatch(data)
        schema = parsed["schema"]
        if schema is None:
            return ConnectValue(None, parsed["payload"])
        if not isinstance(schema, dict) or "type" not in schema:
            raise MalformedEnvelope("JsonConverter schema is not a Connect schema object")
        return ConnectValue(schema, self._decoder.value(schema, parsed["payload"], "$"))

    def _decode_split(self, data: bytes) -> ConnectValue | None:
        """Fast path for JsonConverter's compact output ``{"schema":S,"payload":P}``: the schema
        text S repeats record after record, so its compiled decoder is cached by that text and
        only P is parsed. ``None`` when the bytes do not split cleanly (the caller then parses
        the whole record)."""
        if not (data.startswith(b'{"schema":{') and data.endswith(b"}")):
            return None
        cut = data.find(b',"payload":')
        if cut < 0:
            return None
        schema_text = data[10:cut]
        cached = self._compiled.get(schema_text)
        if cached is None:
            try:
                schema = _loads(schema_text)
            except (UnicodeDecodeError, ValueError):
                return None
            if not isinstance(schema, dict) or "type" not in schema:
                return None
            if len(self._compiled) >= _SCHEMA_CACHE_MAX:
                self._compiled.clear()
            cached = self._compiled[schema_text] = (schema, self._decoder.compile(schema))
        try:
            payload = _loads(data[cut + 11:-1])
        except (UnicodeDecodeError, ValueError):
            return None
        schema, decode = cached
        return ConnectValue(schema, decode(payload))

    def _mismatch(self, data: bytes) -> ConverterMismatch:
        return ConverterMismatch(
            f"converter mismatch: decoder configured for {self.converter.value} but the record "
            f"is {sniff_format(data)}")

    def _decode_avro(self, data: bytes) -> ConnectValue:
        import fastavro  # the JSON path does not need it

        if len(data) < 5 or data[0] != 0:
            if len(data) < 5:
                raise Undecodable(f"expected avro-confluent but got {sniff_format(data)}")
            raise self._mismatch(data)
        (schema_id,) = struct.unpack(">I", data[1:5])
        assert self._schema_lookup is not None
        try:
            avro_schema = self._schema_lookup(schema_id)
        except KeyError:
            from salesledger.streams.serde import UnknownSchema

            raise UnknownSchema(f"no Avro schema with id {schema_id}") from None
        cached = self._compiled.get(schema_id)
        if cached is None:
            parsed = fastavro.parse_schema(
                dict(avro_schema) if isinstance(avro_schema, Mapping) else avro_schema)
            schema = _connect_schema_from_avro(avro_schema, {})
            if len(self._compiled) >= _SCHEMA_CACHE_MAX:
                self._compiled.clear()
                self._avro_parsed.clear()
            cached = self._compiled[schema_id] = (schema, self._decoder.compile(schema))
            self._avro_parsed[schema_id] = parsed
        try:
            datum = fastavro.schemaless_reader(io.BytesIO(data[5:]), self._avro_parsed[schema_id])
        except Exception as exc:  # fastavro raises many types on a body that is not its schema
            raise Undecodable(f"Avro body does not match schema id {schema_id}: {exc}") from None
        schema, decode = cached
        return ConnectValue(schema, decode(datum))


_AVRO_PRIMITIVES: Final = {"int": "int32", "long": "int64", "string": "string",
                           "bytes": "bytes", "boolean": "boolean", "float": "float32",
                           "double": "float64", "null": "null"}


def _connect_schema_from_avro(avro: Any, names: dict[str, dict]) -> dict[str, Any]:
    """Map an Avro schema written by Confluent's AvroConverter back to a Connect schema
    (``connect.name`` / ``connect.parameters`` annotations carry the logical type)."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise MalformedEnvelope(f"Avro union {avro!r:.80} is not an optional type")
        return {**_connect_schema_from_avro(branches[0], names), "optional": "null" in avro}
    if isinstance(avro, str):
        if avro in _AVRO_PRIMITIVES:
            return {"type": _AVRO_PRIMITIVES[avro]}
        if avro in names or avro.rsplit(".", 1)[-1] in names:
            return names.get(avro) or names[avro.rsplit(".", 1)[-1]]
        raise MalformedEnvelope(f"Avro schema refers to unknown type {avro!r}")
    kind = avro.get("type")
    out: dict[str, Any]
    if kind == "record":
        out = {"type": "struct", "fields": []}
        names[avro["name"]] = out
        if avro.get("namespace"):
            names[f"{avro['namespace']}.{avro['name']}"] = out
        for f in avro["fields"]:
            out["fields"].append({**_connect_schema_from_avro(f["type"], names), "field": f["name"]})
    elif kind == "array":
        out = {"type": "array", "items": _connect_schema_from_avro(avro["items"], names)}
    elif kind == "map":
        out = {"type": "map", "keys": {"type": "string"},
               "values": _connect_schema_from_avro(avro["values"], names)}
    elif kind == "enum":
        out = {"type": "string"}
    else:
        out = dict(_connect_schema_from_avro(kind, names))
        if avro.get("connect.type"):
            out["type"] = avro["connect.type"]
    if avro.get("connect.name"):
        out["name"] = avro["connect.name"]
    if avro.get("connect.parameters"):
        out["parameters"] = avro["connect.parameters"]
    return out


# --------------------------------------------------------------------------------------------
# Debezium records → events
# --------------------------------------------------------------------------------------------
_TX_METADATA_NAMES: Final = frozenset({
    "io.debezium.connector.common.TransactionMetadataValue"})
_HEARTBEAT_NAMES: Final = frozenset({"io.debezium.connector.common.Heartbeat"})


def _require(mapping: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = mapping.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MalformedEnvelope(f"{where}: field {name!r} missing or not {kind}: {value!r:.40}")
    return value


def _parse_sequence(text: Any) -> tuple[int | None, int | None] | None:
    if not isinstance(text, str):
        return None
    try:
        items = json.loads(text)
        first, second = (int(x) if x is not None else None for x in items)
    except (ValueError, TypeError):
        raise MalformedEnvelope(f"source.sequence {text!r:.60} is not [lsn, lsn]") from None
    return first, second


def _source(block: Any) -> SourceInfo:
    if not isinstance(block, Mapping):
        raise MalformedEnvelope("change event without a source block")
    snapshot = block.get("snapshot")
    snapshot = "false" if snapshot in (None, False) else "true" if snapshot is True else str(snapshot)
    return SourceInfo(
        connector=str(block.get("connector") or ""),
        name=str(block.get("name") or ""),
        db=str(block.get("db") or ""),
        schema=str(block.get("schema") or ""),
        table=str(block.get("table") or ""),
        ts_ms=_require(block, "ts_ms", int, "source"),
        snapshot=snapshot,
        lsn=block.get("lsn"),
        tx_id=block.get("txId"),
        sequence=_parse_sequence(block.get("sequence")),
        version=str(block.get("version") or ""),
    )


def _transaction_ref(block: Any) -> TransactionRef | None:
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise MalformedEnvelope("transaction block is not a struct")
    return TransactionRef(
        id=_require(block, "id", str, "transaction"),
        total_order=_require(block, "total_order", int, "transaction"),
        data_collection_order=_require(block, "data_collection_order", int, "transaction"),
    )


def _row(image: Any, where: str) -> Row | None:
    if image is None:
        return None
    if not isinstance(image, Mapping):
        raise MalformedEnvelope(f"{where} image is not a struct")
    return Row(image)


class ChangeEventDecoder:
    """Decodes a record of any Debezium topic into a :data:`Decoded` event.

    ``key_converter`` / ``value_converter`` configure the two sides separately (defaults: our
    connector's JsonConverter with schemas). The value converter must carry schemas
    (``json-schema`` or ``avro-confluent``): without them decimals cannot be decoded exactly.

    :meth:`decode` raises only :class:`DecodeError` subclasses (dead-letter the record); it
    returns a :class:`Tombstone` for a null value.
    """

    def __init__(self, *, key_converter: Converter | str = Converter.JSON_SCHEMA,
                 value_converter: Converter | str = Converter.JSON_SCHEMA,
                 schema_lookup: SchemaLookup | None = None,
                 placeholder: str = UNAVAILABLE_PLACEHOLDER) -> None:
        if Converter(value_converter) is Converter.JSON:
            raise ValueError("the value converter must carry schemas (json-schema or "
                             "avro-confluent): schemaless JSON cannot give exact decimals")
        lookup = schema_lookup
        self.keys = ConnectDecoder(key_converter, schema_lookup=lookup, placeholder=placeholder)
        self.values = ConnectDecoder(value_converter, schema_lookup=lookup, placeholder=placeholder)

    def decode(self, key: bytes | None, value: bytes | None) -> Decoded:
        """Decode one Kafka record's key and value bytes."""
        decoded_key = self.keys.decode(key)
        key_payload = decoded_key.payload if decoded_key is not None else None
        decoded = self.values.decode(value)
        if decoded is None:
            return Tombstone(key=key_payload)
        payload, schema_name = decoded.payload, (decoded.schema or {}).get("name") or ""
        if not isinstance(payload, Mapping):
            raise MalformedEnvelope(f"value payload is not a struct: {payload!r:.60}")
        if schema_name in _TX_METADATA_NAMES or "status" in payload and "op" not in payload:
            return self._transaction(payload)
        if schema_name in _HEARTBEAT_NAMES or set(payload) == {"ts_ms"}:
            return Heartbeat(ts_ms=_require(payload, "ts_ms", int, "heartbeat"),
                             server_name=(key_payload or {}).get("serverName")
                             if isinstance(key_payload, Mapping) else None)
        return self._change(payload, key_payload)

    @staticmethod
    def _transaction(payload: Mapping[str, Any]) -> TransactionEvent:
        status = _require(payload, "status", str, "transaction metadata")
        if status not in ("BEGIN", "END"):
            raise MalformedEnvelope(f"transaction status {status!r}")
        collections = tuple(
            (_require(c, "data_collection", str, "data_collections"),
             _require(c, "event_count", int, "data_collections"))
            for c in payload.get("data_collections") or ())
        count = payload.get("event_count")
        if status == "END" and not isinstance(count, int):
            raise MalformedEnvelope("transaction END without event_count")
        return TransactionEvent(status=status, id=_require(payload, "id", str, "transaction"),
                                ts_ms=payload.get("ts_ms"), event_count=count,
                                data_collections=collections)

    @staticmethod
    def _change(payload: Mapping[str, Any], key: Any) -> ChangeEvent:
        op_text = _require(payload, "op", str, "envelope")
        try:
            op = Op(op_text)
        except ValueError:
            raise MalformedEnvelope(f"unknown op {op_text!r}") from None
        event = ChangeEvent(
            op=op, before=_row(payload.get("before"), "before"),
            after=_row(payload.get("after"), "after"), source=_source(payload.get("source")),
            transaction=_transaction_ref(payload.get("transaction")),
            ts_ms=payload.get("ts_ms"), key=key if isinstance(key, Mapping) else None)
        if op in (Op.CREATE, Op.READ, Op.UPDATE) and event.after is None:
            raise MalformedEnvelope(f"op {op.value} without an after image")
        if op is Op.DELETE and event.before is None:
            raise MalformedEnvelope("delete without a before image (not even the key)")
        return event


def decode_record(decoder: ChangeEventDecoder, *, topic: str, partition: int, offset: int,
                  key: bytes | None, value: bytes | None) -> Decoded | DeadLetter:
    """Decode one Kafka record, or return the :class:`DeadLetter` to produce instead.

    The shape of a processor's first step (CDC-14, CDC-21): a :class:`Tombstone` is returned
    as such (the caller skips it), any :class:`DecodeError` becomes a dead letter carrying the
    record's topic/partition/offset and original bytes; other exceptions are bugs and
    propagate.
    """
    try:
        return decoder.decode(key, value)
    except DecodeError as error:
        return build_dead_letter(error, topic=topic, partition=partition, offset=offset,
                                 key=key, value=value)
