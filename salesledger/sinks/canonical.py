"""The canonical text of journal entries: one form for hashing an entry and the whole ledger.

The same function renders an entry built in Python (the writer's ``content_sha256``, which detects
a re-delivered id with other content) and an entry read back from the store (``ledger-hash``), so
the two always agree.

Form (UTF-8, one record per line, fields separated by TAB, each line ending in LF)::

    entry <entry_id> <kind> <accounting_date> <document_type> <document_id> <document_number>
          <document_version> <rule> <reverses> <exchange_rate> <original_currency>
    line  <entry_id> <line_no> <account> <debit> <credit> <currency> <branch> <warehouse>
          <customer> <sku> <open_item> <advance>

- An entry's ``line`` records follow its ``entry`` record, in ``line_no`` order; entries are in
  ``entry_id`` order (byte order of the UTF-8 id, i.e. ``ORDER BY entry_id COLLATE "C"``).
- NULL is ``\\N``; in text, backslash, TAB, LF and CR are escaped as ``\\\\``, ``\\t``, ``\\n``,
  ``\\r`` (PostgreSQL COPY text rules).
- Dates are ISO ``YYYY-MM-DD``. Decimals are normalised: plain notation, trailing fractional
  zeros removed, so ``10.50``, ``10.5000`` and ``10.5`` all read ``10.5``; zero is ``0``.
- Left out on purpose: ``ingested_at`` (when the sink wrote it), ``content_sha256`` (derived),
  and the source trace ``source_lsn`` / ``source_txid`` / ``source_commit_at`` (where the change
  was captured is provenance, not content: two runs of the same documents give the same hash).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
import re
from typing import Any, Callable, Iterable, Sequence

ENTRY_FIELDS: tuple[str, ...] = (
    "entry_id", "kind", "accounting_date", "document_type", "document_id", "document_number",
    "document_version", "rule", "reverses", "exchange_rate", "original_currency",
)
LINE_FIELDS: tuple[str, ...] = (
    "entry_id", "line_no", "account", "debit", "credit", "currency", "branch", "warehouse",
    "customer", "sku", "open_item", "advance",
)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def render_value(value: Any) -> str:
    """One field in canonical text (see module doc). Floats and timestamps are refused: money
    is Decimal, and times are not part of the canonical ledger.

    Raises:
        TypeError: a value of another type.
    """
    render = _RENDERERS.get(type(value))
    if render is None:
        raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")
    return render(value)


def _text(value: str) -> str:
    return value.translate(_ESCAPES) if _NEEDS_ESCAPE.search(value) else value


def normalise_decimal(value: Decimal) -> str:
    """``Decimal`` in plain notation without trailing fractional zeros (``-0`` is ``0``).

    Raises:
        ValueError: NaN or infinity (never a valid amount).
    """
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_RENDERERS: dict[type, Callable[[Any], str]] = {
    type(None): lambda _: "\\N",
    str: _text,
    int: str,
    bool: lambda v: "true" if v else "false",
    Decimal: normalise_decimal,
    dt.date: dt.date.isoformat,
}


def entry_text(entry: Sequence[Any], lines: Iterable[Sequence[Any]]) -> str:
    """Canonical text of one entry: ``entry`` is a tuple in ``ENTRY_FIELDS`` order, ``lines``
    tuples in ``LINE_FIELDS`` order, already sorted by ``line_no``."""
    parts = ["entry\t" + "\t".join(render_value(v) for v in entry) + "\n"]
    parts.extend("line\t" + "\t".join(render_value(v) for v in line) + "\n" for line in lines)
    return "".join(parts)


def entry_sha256(entry: Sequence[Any], lines: Iterable[Sequence[Any]]) -> str:
    """sha256 (hex) of :func:`entry_text`."""
    return hashlib.sha256(entry_text(entry, lines).encode("utf-8")).hexdigest()
