"""Small constructors of documents for the engine tests (AZN, az-nas unless told)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

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

AZ = load_chart("az-nas")
RU = load_chart("ru-1c")
DAY = dt.date(2026, 3, 2)


def day(n: int) -> dt.date:
    return DAY + dt.timedelta(days=n)


def invoice(number="INV-1", lines=(("A", "10", "5.00", "18"),), *, customer="C1", date=DAY, version=1,
            terms=30, incl=False, discount="0", warehouse="W1", status="active", currency="AZN") -> Invoice:
    return Invoice(
        id=number, number=number, date=date, currency=currency, version=version, status=status,
        customer=customer, warehouse=warehouse, payment_terms_days=terms, prices_include_vat=incl,
        lines=tuple(
            InvoiceLine(line_no=i, sku=sku, qty=D(q), unit_price=D(p) if p is not None else None, vat_rate=D(v), discount_percent=D(discount))
            for i, (sku, q, p, v) in enumerate(lines, start=1)
        ),
    )


def payment(number="PAY-1", amount="59.00", allocations=(), *, customer="C1", date=DAY, method="bank", version=1, currency="AZN") -> Payment:
    return Payment(
        id=number, number=number, date=date, currency=currency, version=version, customer=customer, method=method,
        amount=D(amount), allocations=tuple(Allocation(document=d, amount=D(a)) for d, a in allocations),
    )


def sales_return(number="RET-1", against="INV-1", lines=(("A", "2"),), *, customer="C1", date=DAY, version=1) -> SalesReturn:
    return SalesReturn(id=number, number=number, date=date, currency="AZN", version=version, customer=customer,
                       warehouse="W1", against=against, lines=tuple(ReturnLine(sku=s, qty=D(q)) for s, q in lines))


def receipt(number="GR-1", lines=(("A", "10", "3.00", "18"),), *, date=DAY, version=1, currency="AZN") -> GoodsReceipt:
    return GoodsReceipt(id=number, number=number, date=date, currency=currency, version=version, supplier="S1", warehouse="W1",
                        lines=tuple(ReceiptLine(sku=s, qty=D(q), unit_cost=D(c), vat_rate=D(v)) for s, q, c, v in lines))


def opening(*stock, date=DAY - dt.timedelta(days=1)) -> OpeningBalance:
    return OpeningBalance(id="opening", number="OPENING", date=date, currency="AZN",
                          stock=tuple(OpeningStockLine(sku=s, warehouse="W1", qty=D(q), unit_cost=D(c)) for s, q, c in stock))


def run(*docs, settings: LedgerSettings | None = None, chart=AZ, state: LedgerState | None = None):
    """Apply ``docs`` in order; returns (state, [results])."""
    settings = settings or LedgerSettings()
    state = state or LedgerState()
    results = []
    for doc in docs:
        state, res = engine.apply(state, doc, settings, chart)
        results.append(res)
    return state, results


def sums(entries, account: str) -> tuple[D, D]:
    """(Σ debit, Σ credit) of ``account`` over ``entries``."""
    d = sum((l.debit for e in entries for l in e.lines if l.account == account), D(0))
    c = sum((l.credit for e in entries for l in e.lines if l.account == account), D(0))
    return d, c


def all_entries(results):
    out = []
    for r in results:
        out += list(r.entries)
        out += all_entries(r.also)
    return out
