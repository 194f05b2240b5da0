"""Throughput of the posting engine alone (no Kafka, no database): documents per second on one
core, over a generated, deterministic stream of invoices, payments, goods receipts and returns.

Used by ``salesledger golden bench``; the figure is reported in the README of the issue.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from decimal import Decimal

from salesledger.ledger import engine
from salesledger.ledger.charts import load_chart
from salesledger.ledger.model import (
    Allocation,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    OpeningBalance,
    OpeningStockLine,
    Payment,
    ReceiptLine,
    ReturnLine,
    SalesReturn,
)
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import LedgerState


def generate(documents: int, customers: int, skus: int, seed: int = 7) -> tuple[OpeningBalance, list]:
    """A deterministic stream: ~60 % invoices (1-4 lines), 25 % payments, 10 % receipts,
    5 % returns; one document date per 50 documents."""
    rnd = random.Random(seed)
    start = dt.date(2026, 1, 1)
    opening = OpeningBalance(
        id="opening", number="OPENING", date=start - dt.timedelta(days=1), currency="AZN",
        stock=tuple(OpeningStockLine(sku=f"S{i}", warehouse="W1", qty=Decimal(100_000), unit_cost=Decimal(rnd.randint(100, 5000)) / 100) for i in range(skus)),
    )
    docs: list = []
    invoices: list[Invoice] = []
    for n in range(documents):
        day = start + dt.timedelta(days=n // 50)
        roll = rnd.random()
        cust = f"C{rnd.randrange(customers)}"
        if roll < 0.60 or not invoices:
            lines = tuple(
                InvoiceLine(line_no=i, sku=f"S{rnd.randrange(skus)}", qty=Decimal(rnd.randint(1, 5)), unit_price=Decimal(rnd.randint(100, 20000)) / 100,
                            vat_rate=Decimal(18), discount_percent=Decimal(rnd.choice([0, 0, 5, 10])))
                for i in range(1, rnd.randint(1, 4) + 1)
            )
            doc = Invoice(id=f"I{n}", number=f"INV-{n}", date=day, currency="AZN", customer=cust, warehouse="W1",
                          payment_terms_days=rnd.choice([0, 14, 30]), prices_include_vat=rnd.random() < 0.3, lines=lines)
            invoices.append(doc)
        elif roll < 0.85:
            target = rnd.choice(invoices[-50:])
            amount = Decimal(rnd.randint(1000, 50000)) / 100
            doc = Payment(id=f"P{n}", number=f"PAY-{n}", date=day, currency="AZN", customer=target.customer, method="bank", amount=amount,
                          allocations=(Allocation(document=target.number, amount=amount),) if rnd.random() < 0.7 else ())
        elif roll < 0.95:
            doc = GoodsReceipt(id=f"G{n}", number=f"GR-{n}", date=day, currency="AZN", supplier="S", warehouse="W1",
                               lines=tuple(ReceiptLine(sku=f"S{rnd.randrange(skus)}", qty=Decimal(rnd.randint(10, 100)), unit_cost=Decimal(rnd.randint(100, 5000)) / 100, vat_rate=Decimal(18)) for _ in range(2)))
        else:
            target = invoices.pop(rnd.randrange(len(invoices)))
            line = target.lines[0]
            doc = SalesReturn(id=f"R{n}", number=f"RET-{n}", date=day, currency="AZN", customer=target.customer, warehouse="W1",
                              against=target.number, lines=(ReturnLine(sku=line.sku, qty=Decimal(1), line=line.line_no),))
        docs.append(doc)
    return opening, docs


def run_bench(documents: int = 20_000, customers: int = 200, skus: int = 100, valuation: str = "fifo") -> dict:
    """Post the generated stream from an empty state on this one thread; returns documents,
    wall seconds and docs/s, CPU seconds and docs per CPU second (less sensitive to other load
    on the machine), entries produced."""
    settings = LedgerSettings(valuation=valuation)
    chart = load_chart("az-nas")
    opening, docs = generate(documents, customers, skus)
    state, _ = engine.post(LedgerState(), opening, settings, chart)
    entries = 0
    began, began_cpu = time.perf_counter(), time.process_time()
    for doc in docs:
        state, result = engine.post(state, doc, settings, chart)
        entries += len(result.entries)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    return {
        "documents": documents, "seconds": round(seconds, 3), "documents_per_s": round(documents / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 3), "documents_per_cpu_s": round(documents / cpu_seconds, 1),
        "entries": entries, "valuation": valuation, "customers": customers, "skus": skus,
    }
