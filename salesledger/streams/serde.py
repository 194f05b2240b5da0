"""Avro encoding of salesledger's own topics: one serde for producers and consumers.

Contracts live in ``schemas/<subject>.v<N>.avsc`` (namespace ``salesledger``); every version
ever released stays there, and :func:`compatibility_problems` checks that each version can read
data written with the previous one (the CI check, ``salesledger schemas check``).

Framing of a record value (chosen by ``SALESLEDGER_SERDE``, :meth:`AvroSerde.for_settings`,
which every producer and consumer of our topics uses):

- **registry** (``auto`` while the registry answers at start — the local stack runs one):
  Confluent framing — ``0x00``, the 4-byte big-endian schema id, then the Avro binary body.
  Subjects follow the *record-name* strategy (subject = the record's full name, e.g.
  ``salesledger.JournalEntry``), not the topic-name strategy: the documents topic carries
  three records (``SalesDocumentEvent``, ``PeriodAction``, ``ExchangeRateEvent``) and every
  stage's dead-letter topic the same ``DeadLetter``, so a subject per topic would need union
  schemas. Every catalog version is registered (latest) or looked up (older) at start.
- **single-object** (``auto`` when the registry does not answer at start): Avro *single-object
  encoding* — ``0xC3 0x01``, the writer schema's 8-byte little-endian CRC-64-AVRO fingerprint
  of its parsing canonical form, then the body (Avro 1.11 specification).
- ``registry`` mode with the registry down at start fails (:class:`RegistryUnavailable`): the
  worker exits and the supervisor restarts it. ``auto`` falls back and logs a warning; topics
  may then hold both framings, which every reader takes.

Every reader accepts both framings, told apart by the magic bytes (old topics, replays, a
mixed topic). It resolves the writer schema (by fingerprint among all known versions, or by
registry id: asked once per id, then cached; an id the registry lacks is
:class:`UnknownSchema`, a dead letter, CDC-14) and reads with the *latest* known version of
the same record as reader schema, so data written with an older version reads with defaults
applied (CDC-22). A registry unreachable while a *new* id must be resolved is
:class:`RegistryUnavailable` — an operating error, never a dead letter. Hot paths: frame
headers are computed once per schema version and readings (writer, reader, body offset)
cached per header, so encode and decode are one fastavro call plus dict lookups.

Money (CDC-04): before encoding, every ``decimal`` field is checked against its schema's scale
and precision — ``Decimal("0.105")`` into scale 2 or an amount with too many integer digits is
refused with :class:`DecimalOutOfRange`, never rounded. A caller that wants rounding says so
with :func:`quantize_amount` (ROUND_HALF_UP to the scale, the golden cases' rule). Amounts
come back as exact ``Decimal`` at the schema's scale. Conventions of ``schemas/``: money
``decimal(18,2)``; quantities, unit prices and unit costs ``decimal(18,4)``; percentages
``decimal(7,4)``; exchange rates ``decimal(18,6)``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from salesledger.streams.cdc import ConverterMismatch, DecodeError, Undecodable, sniff_format
from salesledger.streams.deadletter import RejectedRecord

__all__ = [
    "CONFLUENT_MAGIC",
    "SINGLE_OBJECT_MAGIC",
    "AvroSerde",
    "DecimalOutOfRange",
    "HttpRegistryClient",
    "RegistryClient",
    "RegistryUnavailable",
    "SchemaCatalog",
    "SchemaVersion",
    "SerdeMode",
    "UnknownSchema",
    "check_decimal",
    "compatibility_problems",
    "fingerprint64",
    "quantize_amount",
]

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = b"\x00"
_FILE_RE: Final = re.compile(r"^(?P<subject>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")
#: Bound on the nesting depth walked when validating decimals.
_DEPTH_MAX: Final = 32
_log = logging.getLogger(__name__)


class UnknownSchema(DecodeError):
    """Avro data whose writer schema is not known (fingerprint not in the catalog, registry id
    not found). Dead-lettered (CDC-14: unknown schema id)."""

    reason = "unknown_schema"


class DecimalOutOfRange(RejectedRecord):
    """A ``Decimal`` does not fit an Avro decimal field: more fractional digits than its scale
    (``0.105`` into scale 2), more digits than its precision, or not finite (CDC-04)."""

    reason = "decimal_out_of_range"


# --------------------------------------------------------------------------------------------
# Decimals
# --------------------------------------------------------------------------------------------
def quantize_amount(value: Decimal, scale: int = 2, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round ``value`` to ``scale`` fractional digits (default 0.01, ROUND_HALF_UP — the
    golden cases' rule). The only sanctioned way to make an amount fit a narrower scale.

    >>> quantize_amount(Decimal("0.105"))
    Decimal('0.11')
    """
    assert isinstance(value, Decimal) and value.is_finite(), f"not a finite Decimal: {value!r}"
    with localcontext(Context(prec=max(60, len(value.as_tuple().digits) + scale + 2))):
        return value.quantize(Decimal(1).scaleb(-scale), rounding=rounding)


def check_decimal(value: Any, precision: int, scale: int, path: str = "$") -> Decimal:
    """Return ``value`` at exactly ``scale`` fractional digits if it fits ``decimal(precision,
    scale)`` without rounding.

    Raises:
        DecimalOutOfRange: not a finite ``Decimal`` (a float or int is refused too: amounts are
            built as ``Decimal``), more fractional digits than ``scale``, or more than
            ``precision`` digits in total.
    """
    if type(value) is not Decimal and not isinstance(value, Decimal):
        raise DecimalOutOfRange(f"{path}: {type(value).__name__} {value!r} is not a Decimal")
    sign, digits, exponent = value.as_tuple()
    if exponent == -scale and len(digits) <= precision:  # an int exponent: finite
        return value  # already at the scale and within the precision (the usual case)
    if not value.is_finite():
        raise DecimalOutOfRange(f"{path}: {value} is not a finite amount")
    assert isinstance(exponent, int)
    excess = -scale - exponent  # fractional digits beyond the scale: must all be zeros
    if excess > 0:
        if any(digits[-excess:]):
            raise DecimalOutOfRange(
                f"{path}: {value} has more than {scale} fractional digits; quantise it "
                "explicitly first (quantize_amount, ROUND_HALF_UP)")
        digits, exponent = digits[:-excess] or (0,), -scale
    significant = tuple(digits)
    while len(significant) > 1 and significant[0] == 0:
        significant = significant[1:]
    if significant != (0,) and len(significant) + exponent + scale > precision:
        raise DecimalOutOfRange(
            f"{path}: {value} needs {len(significant) + exponent + scale} digits, "
            f"decimal({precision},{scale}) holds {precision}")
    return Decimal((sign, significant + (0,) * (exponent + scale), -scale))


def _is_decimal_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("logicalType") == "decimal" and \
        schema.get("type") in ("bytes", "fixed")


#: A compiled preparer: ``(datum, path) -> datum`` with every decimal checked and re-scaled.
_Prepare = Callable[[Any, str], Any]


def _compile_decimals(schema: Any, names: dict[str, Any], depth: int = 0) -> _Prepare | None:
    """Compile, once per schema version, the walk that checks a datum's decimals (CDC-04) and
    sets each to its schema's exact scale (fastavro refuses ``Decimal("0.100")`` for scale 2).
    Only the parts of the schema that contain decimals are walked; ``None``: no decimals."""
    assert depth < _DEPTH_MAX, f"schema nested deeper than {_DEPTH_MAX}"
    if isinstance(schema, str):
        resolved = names.get(schema)
        return None if resolved is None else _compile_decimals(resolved, names, depth + 1)
    if isinstance(schema, list):
        return _compile_union(schema, names, depth)
    if _is_decimal_schema(schema):
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        return lambda datum, path: None if datum is None else check_decimal(
            datum, precision, scale, path)
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed"):
        _define_name(schema, names)
    if kind == "record":
        subs = [(f["name"], _compile_decimals(f["type"], names, depth + 1))
                for f in schema["fields"]]
        live = [(name, sub) for name, sub in subs if sub is not None]
        if not live:
            return None

        def prepare_record(datum: Any, path: str) -> Any:
            if type(datum) is not dict and not isinstance(datum, Mapping):  # dict: fast path
                return datum  # fastavro reports the type error
            out = dict(datum)
            for name, sub in live:
                if name in out:
                    out[name] = sub(out[name], f"{path}.{name}")
            return out
        return prepare_record
    if kind in ("array", "map"):
        sub = _compile_decimals(schema["items" if kind == "array" else "values"], names, depth + 1)
        if sub is None:
            return None
        if kind == "array":
            return lambda datum, path: [sub(v, f"{path}[{i}]") for i, v in enumerate(datum)] \
                if type(datum) is list or isinstance(datum, list | tuple) else datum
        return lambda datum, path: {k: sub(v, f"{path}[{k}]") for k, v in datum.items()} \
            if isinstance(datum, Mapping) else datum
    if isinstance(kind, dict | list):
        return _compile_decimals(kind, names, depth + 1)
    return None


def _define_name(schema: dict, names: dict[str, Any]) -> None:
    name, namespace = schema["name"], schema.get("namespace") or names.get("", "")
    full = name if "." in name or not namespace else f"{namespace}.{name}"
    names.setdefault(full, schema)
    names.setdefault(full.rsplit(".", 1)[-1], schema)
    if "." in full:
        names.setdefault("", full.rsplit(".", 1)[0])  # enclosing namespace for later names


def _compile_union(branches: list, names: dict[str, Any], depth: int) -> _Prepare | None:
    compiled = []
    for branch in branches:
        sub = _compile_decimals(branch, names, depth + 1)  # also defines named branches
        resolved = names.get(branch, branch) if isinstance(branch, str) else branch
        if sub is not None:
            compiled.append((resolved, sub))
    if not compiled:
        return None
    decimal_branch = next((sub for r, sub in compiled if _is_decimal_schema(r)), None)
    records = [(r["name"].rsplit(".", 1)[-1], {f["name"] for f in r["fields"]},
                {f["name"] for f in r["fields"] if "default" not in f}, sub)
               for r, sub in compiled if isinstance(r, dict) and r.get("type") == "record"]

    def prepare_union(datum: Any, path: str) -> Any:
        if datum is None:
            return None
        if isinstance(datum, Decimal) and decimal_branch is not None:
            return decimal_branch(datum, path)
        if isinstance(datum, tuple) and len(datum) == 2 and isinstance(datum[0], str):
            short = datum[0].rsplit(".", 1)[-1]  # fastavro's (name, value) union notation
            for name, _, _, sub in records:
                if name == short:
                    return (datum[0], sub(datum[1], path))
            return datum
        if type(datum) is dict or isinstance(datum, Mapping):
            keys = datum.keys()
            for _, fields, required, sub in records:  # first record branch the datum fits
                if required <= keys <= fields:
                    return sub(datum, path)
        return datum
    return prepare_union


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------
def fingerprint64(schema: Any) -> int:
    """CRC-64-AVRO (Rabin) fingerprint of the schema's parsing canonical form, as the unsigned
    integer the Avro specification defines (written little-endian in single-object encoding)."""
    canonical = to_parsing_canonical_form(schema)
    return int.from_bytes(bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO")), "little")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of one contract: ``subject`` (file stem, ``journal_entry``), ``version``
    (1, 2, ...), ``full_name`` (``salesledger.JournalEntry``), the ``schema`` as written (JSON
    object), the ``parsed`` fastavro schema and the ``fingerprint`` (CRC-64-AVRO)."""

    subject: str
    version: int
    full_name: str
    schema: Mapping[str, Any]
    parsed: Any
    fingerprint: int

    @classmethod
    def from_schema(cls, subject: str, version: int, schema: Mapping[str, Any]) -> SchemaVersion:
        """Build from a JSON schema object (validated by fastavro)."""
        schema = json.loads(json.dumps(schema))  # a private deep copy
        parsed = fastavro.parse_schema(schema)
        namespace, name = schema.get("namespace"), schema["name"]
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        return cls(subject, version, full, schema, parsed, fingerprint64(schema))


class SchemaCatalog:
    """Every known version of every contract, from a directory of ``<subject>.v<N>.avsc``.

    Raises (from the constructor): ``ValueError`` on a badly named file, a gap in versions or a
    subject whose versions change the record's full name.
    """

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        self._by_subject: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[int, SchemaVersion] = {}
        for v in versions:
            self._by_subject.setdefault(v.subject, []).append(v)
            self._by_fingerprint.setdefault(v.fingerprint, v)
        self._latest_by_name: dict[str, SchemaVersion] = {}
        for subject, items in self._by_subject.items():
            items.sort(key=lambda v: v.version)
            if [v.version for v in items] != list(range(1, len(items) + 1)):
                raise ValueError(f"{subject}: versions must be 1..n without gaps")
            if len({v.full_name for v in items}) != 1:
                raise ValueError(f"{subject}: all versions must keep the record's full name")
            self._latest_by_name[items[-1].full_name] = items[-1]

    @classmethod
    def from_directory(cls, directory: Path | str | None = None) -> SchemaCatalog:
        """Load ``directory`` (default: the shipped ``schemas/``)."""
        if directory is None:
            from salesledger.resources import resource_path

            directory = resource_path("schemas")
        versions = []
        for path in sorted(Path(directory).glob("*.avsc")):
            match = _FILE_RE.match(path.name)
            if not match:
                raise ValueError(f"{path.name}: schema files are named <subject>.v<N>.avsc")
            versions.append(SchemaVersion.from_schema(
                match["subject"], int(match["version"]), json.loads(path.read_text())))
        return cls(versions)

    @property
    def subjects(self) -> list[str]:
        """Subjects (file stems) in alphabetical order."""
        return sorted(self._by_subject)

    def versions(self, subject: str) -> list[SchemaVersion]:
        """All versions of ``subject``, oldest first (``KeyError`` if unknown)."""
        return list(self._by_subject[subject])

    def latest(self, subject_or_name: str) -> SchemaVersion:
        """Latest version by subject (``journal_entry``) or record full name.

        Raises:
            UnknownSchema: neither a subject nor a full name of this catalog.
        """
        if subject_or_name in self._by_subject:
            return self._by_subject[subject_or_name][-1]
        if subject_or_name in self._latest_by_name:
            return self._latest_by_name[subject_or_name]
        raise UnknownSchema(f"no schema {subject_or_name!r} in the catalog")

    def by_fingerprint(self, fingerprint: int) -> SchemaVersion:
        """The version with this CRC-64-AVRO fingerprint.

        Raises:
            UnknownSchema: no known version has it.
        """
        try:
            return self._by_fingerprint[fingerprint]
        except KeyError:
            raise UnknownSchema(f"no known schema has fingerprint {fingerprint:#018x}") from None


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
class RegistryUnavailable(RuntimeError):
    """The schema registry could not be reached (refused, timed out, answered 5xx). An
    operating error, never a dead letter: the record is fine, the registry is not."""


class RegistryClient(Protocol):
    """What the serde needs from a Confluent-compatible schema registry."""

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register (idempotently) and return the schema id."""

    def schema_by_id(self, schema_id: int) -> Mapping[str, Any]:
        """The schema with this id (``KeyError`` if none)."""


class HttpRegistryClient:
    """A small client of the Confluent-compatible REST API (Confluent Schema Registry, or
    Apicurio's ``/apis/ccompat/v7``): ``POST /subjects/{subject}/versions`` (register),
    ``POST /subjects/{subject}`` (lookup), ``GET /schemas/ids/{id}`` and ``GET /subjects``
    (ping). Results are cached (ids are immutable), so are ids the registry does not have (at
    most ``missing_max``: a poison-pill stream costs one request per distinct id).
    ``timeout_s`` bounds each request. Blocking: call it at start-up (register) or from a
    thread, not in an agent loop — lookups after the first are served from the cache.

    Raises (every method): :class:`RegistryUnavailable` when the registry cannot be reached.
    """

    missing_max: Final = 1024

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._ids: dict[tuple[str, int], int] = {}
        self._schemas: dict[int, Mapping[str, Any]] = {}
        self._missing: set[int] = set()
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, body: Any = None, *,
                 timeout_s: float | None = None) -> Any:
        """JSON reply of one request; ``urllib.error.HTTPError`` for a 4xx answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json",
                     "Accept": "application/vnd.schemaregistry.v1+json, application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise
            raise RegistryUnavailable(f"{method} {self.base_url}{path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, timeout, not JSON
            raise RegistryUnavailable(f"{method} {self.base_url}{path}: {exc}") from None

    def ping(self, timeout_s: float = 2.0) -> None:
        """Return when the registry answers ``GET /subjects`` within ``timeout_s``."""
        self._request("GET", "/subjects", timeout_s=timeout_s)

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        key = (subject, fingerprint64(schema))
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        reply = self._request("POST", f"/subjects/{urllib.request.quote(subject, safe='')}/versions",
                              {"schemaType": "AVRO", "schema": json.dumps(schema)})
        schema_id = int(reply["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._schemas[schema_id] = schema
        return schema_id

    def lookup(self, subject: str, schema: Mapping[str, Any]) -> int | None:
        """The id of ``schema`` if it is registered under ``subject``, else None (nothing is
        registered)."""
        key = (subject, fingerprint64(schema))
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        try:
            reply = self._request("POST", f"/subjects/{urllib.request.quote(subject, safe='')}",
                                  {"schemaType": "AVRO", "schema": json.dumps(schema)})
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise RegistryUnavailable(f"lookup {subject}: HTTP {exc.code}") from None
        schema_id = int(reply["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._schemas[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> Mapping[str, Any]:
        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
            if schema_id in self._missing:
                raise KeyError(schema_id)
        try:
            reply = self._request("GET", f"/schemas/ids/{schema_id}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise RegistryUnavailable(f"schema id {schema_id}: HTTP {exc.code}") from None
            with self._lock:
                if len(self._missing) >= self.missing_max:
                    self._missing.clear()
                self._missing.add(schema_id)
            raise KeyError(schema_id) from None
        schema = json.loads(reply["schema"])
        with self._lock:
            self._schemas[schema_id] = schema
        return schema


# --------------------------------------------------------------------------------------------
# The serde
# --------------------------------------------------------------------------------------------
#: ``SALESLEDGER_SERDE`` values (see :meth:`AvroSerde.for_settings`).
SerdeMode = Literal["auto", "registry", "single-object"]
Framing = Literal["confluent", "single-object"]
#: Bound on the cached frame headers (schema versions seen); the cache starts over past it.
_READINGS_MAX: Final = 4096
_FOR_SETTINGS: dict[tuple[str, str], AvroSerde] = {}
_FOR_SETTINGS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Reading:
    """How to read the records of one frame header: the writer version, where the body
    starts, the reader version (latest of the writer's record) and whether decimal defaults
    need fixing (reader differs from writer)."""

    writer: SchemaVersion
    start: int
    reader: SchemaVersion
    reader_parsed: Any  # None: read with the writer schema alone
    fix_defaults: bool


class AvroSerde:
    """Encode and decode salesledger's Avro records.

    ``catalog``: the known schema versions (default: shipped ``schemas/``). ``registry``: a
    registry client; ``framing`` of encoded records: ``"confluent"`` (the default when a
    registry is given: ``0x00`` + 4-byte id, subjects by record name) or ``"single-object"``
    (the default otherwise). ``subject_prefix`` is prepended to registry subjects — for tests
    and side-by-side environments. ``registry_url``: where a serde without a registry client
    resolves the ids of Confluent-framed records it is asked to decode, lazily, once per id
    (without either, such a record is :class:`UnknownSchema`).

    Production code builds its serde with :meth:`for_settings`. :meth:`encode` writes with
    the latest version of a subject; :meth:`decode` reads either framing (told apart by the
    magic bytes) and any version, with the latest version of the writer's record as reader.
    Frame headers are computed once per schema version and readings cached per header, so
    neither encoding nor decoding talks to the registry per record.
    """

    def __init__(self, catalog: SchemaCatalog | None = None, *,
                 registry: RegistryClient | None = None,
                 subject_prefix: str = "", framing: Framing | None = None,
                 registry_url: str | None = None) -> None:
        self.catalog = catalog or SchemaCatalog.from_directory()
        self.registry = registry
        self.framing: Framing = framing or ("confluent" if registry is not None else "single-object")
        assert self.framing in ("confluent", "single-object"), self.framing
        assert self.framing == "single-object" or registry is not None, "confluent needs a registry"
        self.subject_prefix = subject_prefix
        self.registry_url = registry_url
        self._preparers: dict[int, _Prepare | None] = {}
        self._headers: dict[int, bytes] = {}         # writer fingerprint -> frame header
        self._readings: dict[bytes, _Reading] = {}   # frame header -> how to read
        self._subject_names: dict[str, str] = {}     # subject or full name -> record full name
        self._lock = threading.Lock()

    @classmethod
    def for_registry_url(cls, registry_url: str | None, *,
                         catalog: SchemaCatalog | None = None) -> AvroSerde:
        """Confluent framing through the registry at ``registry_url`` (e.g. Apicurio's
        ``http://127.0.0.1:18081/apis/ccompat/v7``); single-object encoding when it is
        ``None`` or empty. Readers of both kinds decode single-object records either way."""
        registry = HttpRegistryClient(registry_url) if registry_url else None
        return cls(catalog, registry=registry)

    @classmethod
    def for_settings(cls, settings: Any, *, catalog: SchemaCatalog | None = None) -> AvroSerde:
        """The serde of salesledger's own topics for ``settings`` (``settings.serde``,
        ``SALESLEDGER_SERDE``; ``settings.registry_url``). One instance per (mode, URL) per
        process when ``catalog`` is the shipped one.

        - ``registry``: Confluent framing; every schema version of the catalog is registered
          (latest) or looked up (older) now, under the record-name subject
          (``salesledger.JournalEntry``), so no record needs a registry call later.
        - ``single-object``: single-object encoding; the registry is not contacted unless a
          Confluent-framed record has to be decoded.
        - ``auto`` (default): ``registry`` when the registry answers within 2 s, else
          ``single-object`` with a warning in the log.

        Raises:
            RegistryUnavailable: mode ``registry`` and the registry cannot be reached.
        """
        mode: str = getattr(settings, "serde", "auto")
        url: str = settings.registry_url
        if mode not in ("auto", "registry", "single-object"):
            raise ValueError(f"SALESLEDGER_SERDE={mode!r}: auto | registry | single-object")
        if catalog is not None:
            return cls._build_for(mode, url, catalog)
        with _FOR_SETTINGS_LOCK:
            serde = _FOR_SETTINGS.get((mode, url))
            if serde is None:
                serde = _FOR_SETTINGS[(mode, url)] = cls._build_for(mode, url, None)
            return serde

    @classmethod
    def _build_for(cls, mode: str, url: str, catalog: SchemaCatalog | None) -> AvroSerde:
        if mode == "single-object":
            return cls(catalog, registry_url=url)
        client = HttpRegistryClient(url)
        try:
            client.ping()
            serde = cls(catalog, registry=client, framing="confluent", registry_url=url)
            serde.register_catalog()
            return serde
        except RegistryUnavailable as exc:
            if mode == "registry":
                raise RegistryUnavailable(
                    f"SALESLEDGER_SERDE=registry but the schema registry is unreachable "
                    f"({exc}); start it (salesledger stack up) or set SALESLEDGER_SERDE=auto "
                    "or single-object") from None
            _log.warning("schema registry unreachable (%s): SALESLEDGER_SERDE=auto falls back "
                         "to single-object encoding", exc)
            return cls(catalog, registry_url=url)

    def register_catalog(self) -> None:
        """Register the latest version of every subject and look up the older ones, filling
        the header and reading caches (Confluent framing only; blocking: call at start-up).

        Raises:
            RegistryUnavailable: the registry cannot be reached.
        """
        assert self.framing == "confluent" and self.registry is not None
        for subject in self.catalog.subjects:
            *older, latest = self.catalog.versions(subject)
            self._header_of(latest)
            lookup = getattr(self.registry, "lookup", None)
            for version in older if lookup is not None else ():
                schema_id = lookup(self.subject_prefix + version.full_name, version.schema)
                if schema_id is not None:
                    self._remember(CONFLUENT_MAGIC + struct.pack(">I", schema_id), version, 5)

    def encode(self, subject: str, datum: Mapping[str, Any]) -> bytes:
        """Encode ``datum`` (a dict shaped like the schema; ``dataclasses.asdict`` of a
        ``salesledger.ledger.model`` output record fits) with the latest version of
        ``subject`` (file stem or record full name).

        Raises:
            DecimalOutOfRange: an amount does not fit its field (CDC-04).
            UnknownSchema: no such subject.
            RegistryUnavailable: Confluent framing, a version not registered yet, and the
                registry unreachable (not after :meth:`register_catalog`).
            ValueError / TypeError: the datum does not match the schema (a bug upstream).
        """
        writer = self.catalog.latest(subject)
        return self.encode_with(writer, datum)

    def encode_with(self, writer: SchemaVersion, datum: Mapping[str, Any]) -> bytes:
        """Encode ``datum`` with a given schema version (tests, replays of old versions)."""
        fp = writer.fingerprint
        try:
            prepare = self._preparers[fp]
        except KeyError:
            prepare = self._preparers[fp] = _compile_decimals(writer.schema, {})
        header = self._headers.get(fp) or self._header_of(writer)
        out = io.BytesIO()
        out.write(header)
        fastavro.schemaless_writer(out, writer.parsed, datum if prepare is None else prepare(datum, "$"))
        return out.getvalue()

    def _header_of(self, writer: SchemaVersion) -> bytes:
        """The frame header of ``writer`` in this serde's framing (registers it once)."""
        if self.framing == "confluent":
            assert self.registry is not None
            schema_id = self.registry.register(self.subject_prefix + writer.full_name,
                                               writer.schema)
            header, start = CONFLUENT_MAGIC + struct.pack(">I", schema_id), 5
        else:
            header, start = SINGLE_OBJECT_MAGIC + struct.pack("<Q", writer.fingerprint), 10
        self._remember(header, writer, start)
        self._headers[writer.fingerprint] = header
        return header

    def _remember(self, header: bytes, writer: SchemaVersion, start: int) -> _Reading:
        try:
            reader = self.catalog.latest(writer.full_name)
        except UnknownSchema:
            reader = writer
        same = reader.fingerprint == writer.fingerprint
        reading = _Reading(writer, start, reader, None if same else reader.parsed, not same)
        with self._lock:
            if len(self._readings) >= _READINGS_MAX:
                self._readings.clear()
            self._readings[header] = reading
        return reading

    def _reading(self, data: bytes) -> _Reading:
        """The cached reading of ``data``'s frame header (resolved on first sight).

        Raises:
            UnknownSchema, ConverterMismatch, Undecodable; RegistryUnavailable.
        """
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            header = data[:10]
            reading = self._readings.get(header)
            if reading is None:
                (fp,) = struct.unpack("<Q", data[2:10])
                reading = self._remember(header, self.catalog.by_fingerprint(fp), 10)
            return reading
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            header = data[:5]
            reading = self._readings.get(header)
            if reading is None:
                reading = self._remember(header, self._registry_version(data), 5)
            return reading
        if len(data) < 5:
            raise Undecodable(f"not an Avro record: {sniff_format(data)}")
        raise ConverterMismatch(f"converter mismatch: expected Avro, got {sniff_format(data)}")

    def _registry_version(self, data: bytes) -> SchemaVersion:
        (schema_id,) = struct.unpack(">I", data[1:5])
        registry = self.registry
        if registry is None:
            if not self.registry_url:
                raise UnknownSchema(f"Confluent-framed record (schema id {schema_id}) but no "
                                    "registry is configured")
            registry = self.registry = HttpRegistryClient(self.registry_url)  # decoding only
        try:
            schema = registry.schema_by_id(schema_id)
        except KeyError:
            raise UnknownSchema(f"unknown schema id {schema_id}: the registry has none") from None
        try:
            return self.catalog.by_fingerprint(fingerprint64(schema))
        except UnknownSchema:
            name = schema.get("name", "?")
            namespace = schema.get("namespace")
            full = f"{namespace}.{name}" if namespace and "." not in name else name
            return SchemaVersion.from_schema(full, 0, schema)

    def writer_of(self, data: bytes) -> tuple[SchemaVersion, int]:
        """The writer schema of ``data`` and where its body starts.

        Raises:
            UnknownSchema (CDC-14: unknown fingerprint or schema id), ConverterMismatch,
            Undecodable; RegistryUnavailable (a new schema id and no registry to ask).
        """
        reading = self._reading(data)
        return reading.writer, reading.start

    def decode(self, data: bytes | None, subject: str | None = None) -> dict[str, Any] | None:
        """Decode a value of either framing; ``None`` for a tombstone. With ``subject``, refuse
        data of another record (``ConverterMismatch``). Amounts come back as ``Decimal`` at the
        schema scale.

        Raises:
            UnknownSchema, ConverterMismatch, Undecodable; RegistryUnavailable (operating
            error, not a dead letter: a new schema id and the registry unreachable).
        """
        if data is None:
            return None
        reading = self._reading(data)
        if subject is not None:
            expected = self._subject_names.get(subject)
            if expected is None:
                expected = self._subject_names[subject] = self.catalog.latest(subject).full_name
            if expected != reading.reader.full_name:
                raise ConverterMismatch(f"expected {subject} but the record is "
                                        f"{reading.writer.full_name}")
        body = io.BytesIO(data)
        body.seek(reading.start)
        try:
            datum = fastavro.schemaless_reader(body, reading.writer.parsed, reading.reader_parsed)
        except Exception as exc:  # fastavro raises many types on a body that is not its schema
            raise Undecodable(f"{reading.writer.full_name} v{reading.writer.version} body "
                              f"unreadable: {exc}") from None
        if reading.fix_defaults:
            datum = _decimal_defaults(reading.reader.schema, datum, {})
        return datum


def _decimal_defaults(schema: Any, datum: Any, names: dict[str, Any], depth: int = 0) -> Any:
    """fastavro hands a decimal field's *default* over raw (the JSON string of the unscaled
    bytes, e.g. ``"\\u0000"``) when the writer lacked the field; turn it into the ``Decimal`` the
    reader schema means."""
    assert depth < _DEPTH_MAX
    if isinstance(schema, str):
        schema = names.get(schema, names.get(schema.rsplit(".", 1)[-1], schema))
    if datum is None or isinstance(schema, str):
        return datum
    if isinstance(schema, list):
        for branch in schema:
            if isinstance(branch, dict) and branch.get("type") == "record":
                names.setdefault(branch["name"], branch)
        records = [b for b in schema if isinstance(names.get(b, b) if isinstance(b, str) else b, dict)]
        if isinstance(datum, dict):
            for branch in records:  # a record branch whose field names match
                resolved = names.get(branch, branch) if isinstance(branch, str) else branch
                if resolved.get("type") == "record" and \
                        {f["name"] for f in resolved["fields"]} == set(datum):
                    return _decimal_defaults(resolved, datum, names, depth + 1)
        for branch in records:
            resolved = names.get(branch, branch) if isinstance(branch, str) else branch
            if _is_decimal_schema(resolved):
                return _decimal_defaults(resolved, datum, names, depth + 1)
        return datum
    if _is_decimal_schema(schema):
        if isinstance(datum, str | bytes):
            raw = datum.encode("latin-1") if isinstance(datum, str) else datum
            unscaled = int.from_bytes(raw, "big", signed=True)
            return Decimal(unscaled).scaleb(-int(schema.get("scale", 0)))
        return datum
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed"):
        names.setdefault(schema["name"], schema)
    if kind == "record" and isinstance(datum, dict):
        types = {f["name"]: f["type"] for f in schema["fields"]}
        return {k: _decimal_defaults(types[k], v, names, depth + 1) if k in types else v
                for k, v in datum.items()}
    if kind == "array" and isinstance(datum, list):
        return [_decimal_defaults(schema["items"], v, names, depth + 1) for v in datum]
    if kind == "map" and isinstance(datum, dict):
        return {k: _decimal_defaults(schema["values"], v, names, depth + 1) for k, v in datum.items()}
    if isinstance(kind, dict | list):
        return _decimal_defaults(kind, datum, names, depth + 1)
    return datum


# --------------------------------------------------------------------------------------------
# Backward compatibility (the CI check)
# --------------------------------------------------------------------------------------------
def compatibility_problems(old: SchemaVersion, new: SchemaVersion, *, samples: int = 50) -> list[str]:
    """Why a reader with ``new`` could not read data written with ``old`` (empty: compatible).

    Two checks: (1) structural — every field ``new`` adds to a record has a default, no
    decimal changes its scale or lowers its precision (Avro would silently rescale the
    amount), the record keeps its full name; (2) empirical — ``samples`` generated data
    written with ``old`` (fastavro ``generate_many``) must read with ``new`` as reader, and
    every field both versions share must keep its value.
    """
    problems = _structural_problems(old.schema, new.schema, "$", {}, {})
    if old.full_name != new.full_name:
        problems.append(f"record renamed {old.full_name} -> {new.full_name}")
    if problems:
        return problems
    from fastavro.utils import generate_many

    for i, datum in enumerate(generate_many(old.schema, samples)):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old.parsed, datum)
        try:
            as_old = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), old.parsed, None)
            as_new = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), old.parsed, new.parsed)
        except Exception as exc:  # fastavro's resolution errors
            return [f"sample {i} written with v{old.version} unreadable with v{new.version}: {exc}"]
        for name, value in as_old.items():
            if name in as_new and not _shared_values_equal(value, as_new[name]):
                problems.append(f"sample {i}: field {name!r} changed value on reading")
    return problems


def _shared_values_equal(old: Any, new: Any) -> bool:
    """``old`` read as ``new`` kept every value both versions share, at any depth (a nested
    record field only ``new`` has — added with its default — or only ``old`` has is skipped)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return all(k not in new or _shared_values_equal(v, new[k]) for k, v in old.items())
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(map(_shared_values_equal, old, new))
    return old == new


def _record_fields(schema: Any) -> dict[str, Any]:
    return {f["name"]: f for f in schema.get("fields", [])}


def _structural_problems(old: Any, new: Any, path: str, old_names: dict, new_names: dict) -> list[str]:
    old = old_names.get(old, old) if isinstance(old, str) else old
    new = new_names.get(new, new) if isinstance(new, str) else new
    problems: list[str] = []
    if isinstance(old, list) or isinstance(new, list):
        old_b = old if isinstance(old, list) else [old]
        new_b = new if isinstance(new, list) else [new]
        for ob in old_b:  # each old branch must still be readable by some new branch of its kind
            candidates = [nb for nb in new_b if _kind(nb, new_names) == _kind(ob, old_names)]
            if not candidates:
                problems.append(f"{path}: union branch {_kind(ob, old_names)} dropped")
            else:
                problems += _structural_problems(ob, candidates[0], path, old_names, new_names)
        return problems
    if not isinstance(old, dict) or not isinstance(new, dict):
        return problems  # primitives: fastavro's resolution check covers promotions
    for named, names in ((old, old_names), (new, new_names)):
        if named.get("type") in ("record", "enum", "fixed"):
            names.setdefault(named["name"], named)
    if _is_decimal_schema(old) or _is_decimal_schema(new):
        if not (_is_decimal_schema(old) and _is_decimal_schema(new)):
            problems.append(f"{path}: decimal logical type added or removed")
        elif old.get("scale", 0) != new.get("scale", 0):
            problems.append(f"{path}: decimal scale changed {old.get('scale', 0)} -> "
                            f"{new.get('scale', 0)} (amounts would be rescaled)")
        elif new["precision"] < old["precision"]:
            problems.append(f"{path}: decimal precision lowered")
        return problems
    kind = old.get("type")
    if kind == "record" and new.get("type") == "record":
        old_fields, new_fields = _record_fields(old), _record_fields(new)
        for name, field in new_fields.items():
            aliases = set(field.get("aliases", ()))
            source = old_fields.get(name) or next(
                (old_fields[a] for a in aliases if a in old_fields), None)
            if source is None:
                if "default" not in field:
                    problems.append(f"{path}.{name}: added without a default")
                continue
            problems += _structural_problems(source["type"], field["type"], f"{path}.{name}",
                                             old_names, new_names)
    elif kind == "array" and new.get("type") == "array":
        problems += _structural_problems(old["items"], new["items"], f"{path}[]", old_names, new_names)
    elif kind == "map" and new.get("type") == "map":
        problems += _structural_problems(old["values"], new["values"], f"{path}{{}}", old_names, new_names)
    elif kind == "enum" and new.get("type") == "enum":
        missing = set(old["symbols"]) - set(new["symbols"])
        if missing and "default" not in new:
            problems.append(f"{path}: enum symbols removed without a default: {sorted(missing)}")
    elif isinstance(kind, dict | list):
        problems += _structural_problems(kind, new.get("type"), path, old_names, new_names)
    return problems


def _kind(schema: Any, names: dict) -> str:
    schema = names.get(schema, schema) if isinstance(schema, str) else schema
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            return str(schema["name"]).rsplit(".", 1)[-1]
        return str(schema.get("type"))
    return "union"
