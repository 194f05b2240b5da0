"""Go-live in the engine: an opening balance with open receivables and advances, the
``golive_date`` cut-off (reason ``before_golive``) and switched-off kinds (``kind_disabled``);
invoices taken over at go-live and later returns against them; a posted document edited back
to a date on or before go-live (reversed, and a ``before_golive`` error)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal as D

from salesledger.ledger import engine
from salesledger.ledger.model import (
    OpeningAdvance,
    OpeningBalance,
    OpeningInvoice,
    OpeningInvoiceLine,
    OpeningReceivable,
)
from salesledger.ledger.settings import LedgerSettings
from salesledger.streams.assembly import DocumentEvent
from salesledger.streams.documents import DOCUMENT_SUBJECT, document_datum, document_from_datum
from salesledger.streams.serde import AvroSerde

from tests.ledger.helpers import AZ, DAY, day, invoice, opening, payment, receipt, run, sales_return, sums

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


# ---- invoices taken over at go-live: later returns against them ------------------------------

def _reference(number="OLD-7", customer="C1", lines=(("A", "4", "10.00", "18", "3.0000"),), **kw):
    return OpeningInvoice(number=number, customer=customer, warehouse="W1", date=day(-20), lines=tuple(
        OpeningInvoiceLine(line_no=i, sku=s, qty=D(q), unit_price=D(p), vat_rate=D(v), unit_cost=D(c))
        for i, (s, q, p, v, c) in enumerate(lines, start=1)), **kw)


def _with_references(*refs, number="OB-golive-refs-1"):
    return OpeningBalance(id=number, number=number, date=GOLIVE, currency="AZN", stock=(), invoices=refs)


def test_a_reference_invoice_posts_nothing_and_a_later_partial_return_posts_against_the_opening_item():
    settings = LedgerSettings(golive_date=GOLIVE)
    # OLD-7: 4 x 10.00 + 18 % returnable, 100.50 of it still open at go-live
    state, (ob, refs) = run(_opening(), _with_references(_reference()), settings=settings)
    assert refs.status == "posted" and refs.entries == () and refs.movements == () and refs.receivable_updates == ()
    assert state.documents["invoice:OLD-7"].posted
    state, (ret,) = run(sales_return("RET-9", "OLD-7", (("A", "1"),), date=day(2)), settings=settings, state=state)
    assert ret.status == "posted"
    returns, vat = AZ.account("sales_returns"), AZ.account("vat_payable")
    receivable, inventory, cogs = AZ.account("receivable"), AZ.account("inventory"), AZ.account("cost_of_sales")
    assert sums(ret.entries, returns) == (D("10.00"), D(0)) and sums(ret.entries, vat) == (D("1.80"), D(0))
    assert sums(ret.entries, receivable) == (D(0), D("11.80"))
    assert sums(ret.entries, inventory) == (D("3.00"), D(0)) and sums(ret.entries, cogs) == (D(0), D("3.00"))
    assert all(e.accounting_date == day(2) for e in ret.entries)
    assert state.customers["C1"].open_items["OLD-7"].open == D("88.70")  # 100.50 - 11.80
    assert state.stock[("A", "W1")].qty == D("21") and state.stock[("A", "W1")].value == D("63.00")
    # the rest of the line: exactly what is left; one more unit is refused
    state, (last,) = run(sales_return("RET-10", "OLD-7", (("A", "3"),), date=day(3)), settings=settings, state=state)
    assert sums(last.entries, returns) == (D("30.00"), D(0)) and sums(last.entries, receivable) == (D(0), D("35.40"))
    _, refused = engine.try_post(state, sales_return("RET-11", "OLD-7", (("A", "1"),), date=day(4)), settings, AZ)
    assert refused.status == "error" and refused.errors[0].rule == "return.line"


def test_a_return_against_an_invoice_settled_before_golive_becomes_an_advance():
    settings = LedgerSettings(golive_date=GOLIVE)
    ref = _reference("PAID-1", "C3", (("A", "2", "5.00", "18", "2.5000"), ("SV", "1", "7.00", "18", "0")))
    ref = replace(ref, lines=(ref.lines[0], replace(ref.lines[1], kind="service")))
    state, _ = run(_opening(), _with_references(ref), settings=settings)
    state, (ret,) = run(sales_return("RET-P", "PAID-1", (("A", "1"), ("SV", "1")), customer="C3", date=day(1)),
                        settings=settings, state=state)
    advances = AZ.account("customer_advances")
    assert ret.status == "posted" and sums(ret.entries, advances) == (D(0), D("14.16"))  # 5.90 + 8.26
    assert sums(ret.entries, AZ.account("receivable")) == (D(0), D(0))
    assert state.customers["C3"].advance_open == D("14.16") and "PAID-1" not in state.customers["C3"].open_items
    assert [(m.sku, m.qty, m.value) for m in ret.movements] == [("A", D("1"), D("2.50"))]  # the service restocks nothing


def test_a_return_that_arrives_before_its_reference_waits_and_posts_when_it_comes():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, _ = run(_opening(), settings=settings)
    state, (held,) = run(sales_return("RET-9", "OLD-7", (("A", "1"),), date=day(1)), settings=settings, state=state)
    assert held.status == "held" and held.held[0].reason == "awaiting_original"
    state, (refs,) = run(_with_references(_reference()), settings=settings, state=state)
    assert [r.status for r in refs.also] == ["posted"] and not state.held


def test_a_referenced_invoice_changes_only_as_a_dead_letter():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, _ = run(_opening(), _with_references(_reference()), settings=settings)
    for doc, reason in ((invoice("OLD-7", date=day(-20), version=2, status="cancelled"), "before_golive"),
                        (invoice("OLD-7", date=day(1), version=3), "invalid_document")):
        same, result = engine.try_post(state, doc, settings, AZ)
        assert same is state and result.status == "error" and result.errors[0].reason == reason


def test_a_reference_of_an_invoice_the_engine_already_knows_keeps_its_record():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, _ = run(_opening(), invoice("INV-5", date=day(1)), settings=settings)
    before = state.documents["invoice:INV-5"]
    state, _ = run(_with_references(_reference("INV-5")), settings=settings, state=state)
    assert state.documents["invoice:INV-5"] is before


# ---- a document posted after go-live, edited back to a date on or before it ------------------

def test_an_invoice_edited_back_before_golive_is_reversed_and_refused():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, (_, posted) = run(_opening(), invoice("INV-9", (("A", "2", "10.00", "18"),), date=day(3)), settings=settings)
    moved = invoice("INV-9", (("A", "2", "10.00", "18"),), date=GOLIVE, version=2)
    state, result = engine.try_post(state, moved, settings, AZ)
    assert result.status == "withdrawn" and result.errors[0].reason == "before_golive"
    assert result.errors[0].document == "invoice:INV-9"
    assert [e.reverses for e in result.entries] == [e.entry_id for e in posted.entries]
    assert {e.accounting_date for e in result.entries} == {day(3)}  # where the reversed entries were
    assert _balances(posted.entries + result.entries).get(AZ.account("revenue"), D(0)) == 0
    rec = state.documents["invoice:INV-9"]
    assert not rec.posted and rec.document == moved
    assert state.stock[("A", "W1")].qty == D("20") and state.customers["C1"].open_items["INV-9"].open == 0
    # the same version again: a plain dead letter, nothing changes
    same, again = engine.try_post(state, moved, settings, AZ)
    assert same is state and again.status == "error" and again.errors[0].reason == "before_golive"
    # moved forward again: posts as new
    state, back = engine.try_post(state, replace(moved, date=day(4), version=3), settings, AZ)
    assert back.status == "posted" and state.documents["invoice:INV-9"].posted


def test_a_held_document_edited_back_before_golive_leaves_the_queue():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, (_, held) = run(_opening(), invoice("INV-8", (("A", "50", "1.00", "18"),), date=day(1)), settings=settings)
    assert held.status == "held" and "invoice:INV-8" in state.held
    state, result = engine.try_post(state, invoice("INV-8", (("A", "5", "1.00", "18"),), date=GOLIVE, version=2),
                                    settings, AZ)
    assert result.status == "withdrawn" and result.errors[0].reason == "before_golive" and not result.entries
    assert "invoice:INV-8" not in state.held
    # a later receipt lets nothing of it through
    state, (gr,) = run(receipt("GR-8", (("A", "100", "1.00", "18"),), date=day(2)), settings=settings, state=state)
    assert gr.also == () and not state.documents["invoice:INV-8"].posted


def test_a_posted_return_edited_back_before_golive_gives_the_quantity_back_to_its_invoice():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, _ = run(_opening(), _with_references(_reference()),
                   sales_return("RET-9", "OLD-7", (("A", "1"),), date=day(2)), settings=settings)
    state, result = engine.try_post(state, sales_return("RET-9", "OLD-7", (("A", "1"),), date=day(-1), version=2),
                                    settings, AZ)
    assert result.status == "withdrawn" and result.errors[0].reason == "before_golive"
    assert state.documents["invoice:OLD-7"].lines[0].returned_qty == 0
    assert state.customers["C1"].open_items["OLD-7"].open == D("100.50")


def test_a_cancellation_dated_before_golive_of_a_posted_document_is_a_plain_reversal():
    settings = LedgerSettings(golive_date=GOLIVE)
    state, _ = run(_opening(), invoice("INV-9", date=day(3)), settings=settings)
    state, result = engine.try_post(state, invoice("INV-9", date=GOLIVE, version=2, status="cancelled"), settings, AZ)
    assert result.status == "posted" and result.errors == () and {e.kind for e in result.entries} == {"reversal"}


def test_opening_invoices_round_trip_through_the_document_contract():
    ob = _with_references(_reference(), _reference("OLD-8", prices_include_vat=True))
    event = DocumentEvent(key=ob.key, operation="created", version=(0, 0), document=ob, source=None)
    serde = AvroSerde()
    back = document_from_datum(serde.decode(serde.encode(DOCUMENT_SUBJECT, document_datum(event)))).document
    assert back.invoices == ob.invoices and back.stock == ()
