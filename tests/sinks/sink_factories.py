"""Factories of ledger facts and small helpers shared by the sink tests."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
from psycopg import sql

from salesledger.ledger.model import (
    DocumentRef,
    JournalEntry,
    JournalLine,
    SourcePosition,
    entry_id_for,
)
from salesledger.sinks.records import LedgerRecord, Position


def make_entry(n: int, amount: str = "118.00", *, unbalanced_by: str = "0",
               currency: str = "AZN", rule: str = "sale.revenue", version: int = 1) -> JournalEntry:
    """Entry ``n``: Dr 211 gross / Cr 601 net, Cr 521 VAT (18 % of net, ROUND_HALF_UP to 0.01,
    AZN); ``unbalanced_by`` adds that much to the debit so the entry does not balance."""
    gross = Decimal(amount)
    net = (gross / Decimal("1.18")).quantize(Decimal("0.01"))
    vat = gross - net
    ref = DocumentRef(type="invoice", id=str(n), number=f"INV-{n}", version=version,
                      source=SourcePosition(lsn=1000 + n, tx_id=500 + n,
                                            commit_time=dt.datetime(2026, 1, 5, tzinfo=dt.UTC)))
    return JournalEntry(
        entry_id=entry_id_for("invoice", str(n), version, rule), rule=rule, kind="revenue",
        accounting_date=dt.date(2026, 1, 5), document=ref,
        lines=(
            JournalLine(account="211", debit=gross + Decimal(unbalanced_by), credit=Decimal("0"),
                        currency=currency, customer="C1", open_item=f"INV-{n}"),
            JournalLine(account="601", debit=Decimal("0"), credit=net, currency=currency,
                        branch="B1", sku="SKU-1"),
            JournalLine(account="521", debit=Decimal("0"), credit=vat, currency=currency),
        ))


def records(facts, topic: str = "sltest.ledger.journal-entries", partition: int = 0,
            first_offset: int = 0) -> list[LedgerRecord]:
    """Wrap facts as records read at consecutive offsets of one partition."""
    return [LedgerRecord(Position(topic, partition, first_offset + i), fact)
            for i, fact in enumerate(facts)]


def count(conn: psycopg.Connection, schema: str, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(schema, table))).fetchone()[0]
