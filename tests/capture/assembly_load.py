"""A steady stream of CDC transactions for the assembler's memory and CPU figures (CDC-20):
master data, then per document one transaction — an invoice (header and three lines), every
fifth document a return of one unit against the invoice before it, every seventh an edit of an
earlier invoice's line and every eleventh a header delete of an earlier invoice."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Iterator

from salesledger.streams.assembly import DocumentAssembler, DocumentRejected
from salesledger.streams.cdc import ChangeEvent, TransactionEvent
from tests.capture.test_assembly_rules import Tx, header, line
from tests.capture.test_validation_assembly import master_tx, product

Event = ChangeEvent | TransactionEvent
SKUS = ("A", "B", "C")


def _return(return_id: int, against: str, status: str = "posted") -> dict:
    return {"return_id": return_id, "number": f"RET-{return_id}", "date": dt.date(2026, 3, 3),
            "customer_code": "C1", "warehouse_code": "W1", "against_invoice_number": against,
            "status": status, "created_at": None, "updated_at": None}


def _return_line(line_id: int, return_id: int, sku: str) -> dict:
    return {"return_line_id": line_id, "return_id": return_id, "line_no": 1, "sku": sku,
            "qty": Decimal("1.000"), "invoice_line_no": None}


def _events(tx: Tx) -> list[Event]:
    return [tx.begin(), *tx.events, tx.end()]


def transactions(documents: int, *, first: int = 1) -> Iterator[list[Event]]:
    """The events of ``documents`` transactions (master data first when ``first`` is 1), each
    a list in the order Debezium's topics would interleave them (BEGIN, rows, END)."""
    lsn = 1000 * first
    if first == 1:
        yield _events(master_tx(1, lsn, *(product(i, sku) for i, sku in enumerate(SKUS, 1))))
    for n in range(first, first + documents):
        previous, lsn = lsn, lsn + 1000
        tx = Tx(n + 1, lsn, previous_commit=previous)
        if n % 5 == 0 and n > 1:
            tx.row("returns", "c", _return(n, f"INV-{n - 1}"))
            tx.row("return_lines", "c", _return_line(n, n, SKUS[(n - 1) % 3]))
        elif n % 7 == 0 and n > 7:
            old = n - 6
            tx.row("invoice_lines", "u", line(3 * old, old, 1, SKUS[0], qty="9"),
                   before=line(3 * old, old, 1, SKUS[0]))
        elif n % 11 == 0 and n > 11:
            tx.row("invoices", "d", before=header(n - 10, f"INV-{n - 10}"))
        else:
            tx.row("invoices", "c", header(n, f"INV-{n}"))
            for k, sku in enumerate(SKUS):
                tx.row("invoice_lines", "c", line(3 * n + k, n, k + 1, sku))
        yield _events(tx)


def comparable(emitted: list) -> list:
    """``emitted`` with each rejection's error (compared by identity) as (type, reason,
    message), so two runs compare structurally."""
    return [dataclasses.replace(e, error=(type(e.error).__name__, e.error.reason, str(e.error)))
            if isinstance(e, DocumentRejected) else e for e in emitted]


def feed_all(assembler: DocumentAssembler, batches) -> list:
    """Every event of ``batches`` into ``assembler``; everything it emitted, in order."""
    out: list = []
    for events in batches:
        for event in events:
            if isinstance(event, TransactionEvent):
                out += assembler.on_transaction(event)
            else:
                out += assembler.on_change(event)
    return out
