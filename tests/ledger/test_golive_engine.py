"""Go-live in the engine: an opening balance with open receivables and advances, the
``golive_date`` cut-off (reason ``before_golive``) and switched-off kinds (``kind_disabled``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal as D

from salesledger.ledger import engine
from salesledger.ledger.model import OpeningAdvance, OpeningReceivable
from salesledger.ledger.settings import LedgerSettings
from salesledger.streams.assembly import DocumentEvent
from salesledger.streams.documents import DOCUMENT_SUBJECT, document_datum, document_from_datum
from salesledger.streams.serde import AvroSerde

from tests.ledger.helpers import AZ, DAY, day, invoice, opening, payment, run

GOLIVE = day(0)


def _opening():
    ob = opening(("A", "20", "3.00"), date=GOLIVE)
    return replace(ob, receivables=(
        OpeningReceivable(customer="C1", document="OLD-7", document_date=day(-20), due_date=day(10),
                          amount=D("100.50")),),
        advances=(OpeningAdvance(customer="C2", payment="OLDPAY-3", received=day(-3), amount=D("40.00")),))


def _balances(entries):
    out: dict[str, D] = {}
    for entry in entries:
        assert entry.is_balanced()
        for line in entry.lines:
            out[line.account] = out.get(line.account, D(0)) + line.debit - line.credit
    return out


def test_opening_posts_stock_receivables_and_advances_against_000():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, (res,) = run(_opening(), settings=settings)
    assert res.status == "posted"
    balances = _balances(res.entries)
    inventory, receivable = AZ.account("inventory"), AZ.account("receivable")
    advances, technical = AZ.account("customer_advances"), AZ.account("opening_balance")
    assert balances[inventory] == D("60.00") and balances[receivable] == D("100.50")
    assert balances[advances] == D("-40.00") and balances[technical] == D("-120.50")
    item = state.customers["C1"].open_items["OLD-7"]
    assert item.open == D("100.50") and item.due_date == day(10)
    assert state.customers["C2"].advance_open == D("40.00")
    kinds = {(u.document, u.kind, u.amount) for u in res.receivable_updates}
    assert kinds == {("OLD-7", "opening_balance", D("100.50")), ("OLDPAY-3", "opening_balance", D("40.00"))}


def test_after_golive_payments_settle_opening_items_and_invoices_use_opening_advances():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, results = run(_opening(), payment("PAY-9", "30.50", (("OLD-7", "30.50"),), date=day(1)),
                         invoice("INV-9", (("A", "2", "10.00", "0"),), customer="C2", date=day(2)),
                         settings=settings)
    assert [r.status for r in results] == ["posted", "posted", "posted"]
    assert state.customers["C1"].open_items["OLD-7"].open == D("70.00")
    assert state.customers["C2"].advance_open == D("20.00")  # 40 advance - 20 invoice
    assert state.customers["C2"].open_items["INV-9"].open == D("0")


def test_documents_on_or_before_golive_are_refused_with_their_reason():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, _ = run(_opening(), settings=settings)
    for doc in (invoice("INV-0", date=GOLIVE), payment("PAY-0", date=day(-5))):
        same, result = engine.try_post(state, doc, settings, AZ)
        assert same is state and result.status == "error"
        assert result.errors[0].reason == "before_golive" and result.errors[0].document == doc.key
    _, result = engine.try_post(state, invoice("INV-1", date=day(1)), settings, AZ)
    assert result.status == "posted"
    # without a cut-off the same early document posts
    _, result = engine.try_post(run(_opening())[0], invoice("INV-0", date=GOLIVE), LedgerSettings(), AZ)
    assert result.status == "posted"


def test_switched_off_kind_is_refused_as_kind_disabled():
    settings = LedgerSettings(document_kinds={"invoice", "opening_balance"})
    state, _ = run(_opening(), settings=settings)
    same, result = engine.try_post(state, payment(date=day(1)), settings, AZ)
    assert same is state and result.status == "error" and result.errors[0].reason == "kind_disabled"


def test_opening_balance_round_trips_through_the_document_contract():
    ob = _opening()
    event = DocumentEvent(key=ob.key, operation="created", version=(0, 0), document=ob, source=None)
    serde = AvroSerde()
    back = document_from_datum(serde.decode(serde.encode(DOCUMENT_SUBJECT, document_datum(event)))).document
    assert back.receivables == ob.receivables and back.advances == ob.advances and back.stock == ob.stock
    assert isinstance(back.date, dt.date) and back.date == DAY == GOLIVE
