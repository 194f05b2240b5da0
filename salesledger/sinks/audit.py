"""Whole-ledger checks of the accounting store: ``ledger check`` and ``ledger-hash``.

Both read only (the reporting role suffices) and take the schema to read (default ``ledger``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from salesledger.sinks.canonical import ENTRY_FIELDS, LINE_FIELDS, entry_text

#: Rows fetched per round trip while hashing (server-side cursor).
HASH_FETCH_ROWS = 5000


@dataclass(frozen=True)
class LedgerCheck:
    """Result of :func:`check_ledger`.

    ``entries``: journal entries; ``unbalanced``: entries without lines or whose debits and
    credits differ in some currency; ``duplicates``: entries beyond the first with the same
    posting key (document type, document id, document version, rule — the inputs of the
    deterministic id), i.e. one posting stored under two ids; ``total_debit`` /
    ``total_credit``: over all lines (all currencies); ``by_currency``: the same per currency;
    ``conflicts``: open dead letters ``entry_conflict`` — an entry id delivered again with other
    content than the stored one (the pipeline disagrees with the ledger: never acceptable).
    """

    entries: int
    unbalanced: int
    duplicates: int
    total_debit: Decimal
    total_credit: Decimal
    by_currency: dict[str, tuple[Decimal, Decimal]]
    conflicts: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is off: no unbalanced, duplicated or conflicting entry, totals
        equal per currency."""
        return (self.unbalanced == 0 and self.duplicates == 0 and self.conflicts == 0
                and all(d == c for d, c in self.by_currency.values()))

    def as_json(self) -> dict[str, Any]:
        """The ``ledger check --format json`` document (amounts as decimal strings)."""
        return {
            "entries": self.entries, "unbalanced": self.unbalanced,
            "duplicates": self.duplicates, "conflicts": self.conflicts,
            "total_debit": str(self.total_debit),
            "total_credit": str(self.total_credit),
            "by_currency": {cur: {"debit": str(d), "credit": str(c)}
                            for cur, (d, c) in sorted(self.by_currency.items())},
            "ok": self.ok,
        }


def check_ledger(conn: psycopg.Connection, schema: str = "ledger") -> LedgerCheck:
    """Count entries, unbalanced, duplicated and conflicting entries, and total the lines of
    ``schema``."""
    t = {name: sql.Identifier(schema, name) for name in ("journal_entries", "journal_lines")}
    entries = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(t["journal_entries"])).fetchone()[0]
    unbalanced = conn.execute(sql.SQL(
        "SELECT count(*) FROM {e} e WHERE NOT EXISTS (SELECT FROM {l} l WHERE l.entry_id = e.entry_id)"
        " OR EXISTS (SELECT FROM {l} l WHERE l.entry_id = e.entry_id GROUP BY l.currency"
        "            HAVING sum(l.debit) <> sum(l.credit))"
    ).format(e=t["journal_entries"], l=t["journal_lines"])).fetchone()[0]
    duplicates = conn.execute(sql.SQL(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {} GROUP BY document_type,"
        " document_id, document_version, rule HAVING count(*) > 1) AS d"
    ).format(t["journal_entries"])).fetchone()[0]
    per_currency = conn.execute(sql.SQL(
        "SELECT currency, sum(debit), sum(credit) FROM {} GROUP BY currency ORDER BY currency"
    ).format(t["journal_lines"])).fetchall()
    by_currency = {cur: (d, c) for cur, d, c in per_currency}
    conflicts = conn.execute(sql.SQL(
        "SELECT count(*) FROM {} WHERE reason = 'entry_conflict' AND status = 'open'"
    ).format(sql.Identifier(schema, "dead_letters"))).fetchone()[0]
    zero = Decimal("0")
    return LedgerCheck(
        entries=entries, unbalanced=unbalanced, duplicates=int(duplicates),
        total_debit=sum((d for d, _ in by_currency.values()), zero),
        total_credit=sum((c for _, c in by_currency.values()), zero),
        by_currency=by_currency, conflicts=conflicts,
    )


def ledger_hash(conn: psycopg.Connection, schema: str = "ledger") -> tuple[str, int, int]:
    """sha256 (hex) of the canonical ledger of ``schema`` (see :mod:`salesledger.sinks.canonical`
    for the text form): entries by ``entry_id``, each followed by its lines by ``line_no``;
    ingestion timestamps and the source trace excluded. Returns (hex digest, entries, lines).
    """
    entry_cols = sql.SQL(", ").join(sql.Identifier("e", c) for c in ENTRY_FIELDS)
    line_cols = sql.SQL(", ").join(sql.Identifier("l", c) for c in LINE_FIELDS)
    query = sql.SQL(
        "SELECT {ec}, {lc} FROM {e} AS e LEFT JOIN {l} AS l ON l.entry_id = e.entry_id"
        " ORDER BY e.entry_id COLLATE \"C\", l.line_no"
    ).format(ec=entry_cols, lc=line_cols, e=sql.Identifier(schema, "journal_entries"),
             l=sql.Identifier(schema, "journal_lines"))
    digest = hashlib.sha256()
    n_entries = n_lines = 0
    width = len(ENTRY_FIELDS)
    head: tuple | None = None
    lines: list[tuple] = []
    with conn.transaction(), conn.cursor(name="ledger_hash") as cur:
        cur.itersize = HASH_FETCH_ROWS
        cur.execute(query)
        for row in cur:
            row_head, row_line = row[:width], row[width:]
            if head is None or row_head[0] != head[0]:
                if head is not None:
                    digest.update(entry_text(head, lines).encode("utf-8"))
                    n_entries += 1
                head, lines = row_head, []
            if row_line[0] is not None:
                lines.append(row_line)
                n_lines += 1
        if head is not None:
            digest.update(entry_text(head, lines).encode("utf-8"))
            n_entries += 1
    return digest.hexdigest(), n_entries, n_lines

