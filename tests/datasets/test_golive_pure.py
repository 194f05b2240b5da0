"""The pure go-live computation (:mod:`salesledger.golive`): FIFO remainder layers, moving
average, opening-stock snapshots, open receivables and advances, the invoices taken over for
later returns (returnable quantities, the unit cost they left stock at, reference documents)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from salesledger import golive as gl
from salesledger.ledger.model import InvoiceLine, OpeningInvoice, OpeningInvoiceLine
from salesledger.ledger.settings import LedgerSettings

DAY = dt.date(2011, 1, 10)


def mv(kind, qty, cost=None, day=0, sku="A", wh="W1", no="X", snapshot=False):
    return gl.Movement(sku=sku, warehouse=wh, day=DAY + dt.timedelta(days=day), kind=kind, qty=D(qty),
                       unit_cost=D(cost) if cost is not None else None, order=(no, 1), snapshot=snapshot)


def test_fifo_remainder_is_the_newest_layers_oldest_first():
    moves = [mv("receipt", "10", "1.00", 0, no="G1"), mv("receipt", "5", "2.00", 1, no="G2"),
             mv("issue", "8", day=2), mv("receipt", "4", "3.00", 3, no="G3"), mv("return", "1", day=4)]
    layers, on_hand = gl.fifo_layers(moves)
    assert on_hand == D("12")  # 10 + 5 - 8 + 4 + 1
    assert layers == [(D("3"), D("1.00")), (D("5"), D("2.00")), (D("4"), D("3.00"))]


def test_fifo_nothing_on_hand_and_more_returned_than_issued():
    assert gl.fifo_layers([mv("receipt", "2", "1.00"), mv("issue", "3")]) == ([], D("-1"))
    layers, on_hand = gl.fifo_layers([mv("receipt", "2", "1.50"), mv("return", "1")])
    assert on_hand == D("3") and layers == [(D("1"), D("1.50")), (D("2"), D("1.50"))]


def test_moving_average_follows_the_sequence():
    settings = LedgerSettings(valuation="moving_average")
    moves = [mv("receipt", "10", "1.00", 0), mv("issue", "5", day=1), mv("receipt", "5", "2.00", 2),
             mv("issue", "2", day=3)]
    qty, value = gl.moving_average(moves, settings)
    # 10@1 -> issue 5 (5.00 left) -> +5@2 = 15.00/10 -> issue 2 @1.50 = 3.00
    assert (qty, value) == (D("8"), D("12.00"))
    lines, negative = gl.stock_lines(moves, settings)
    assert [(l.qty, l.unit_cost) for l in lines] == [(D("8"), D("1.5000"))] and negative == ()


def test_stock_lines_fifo_per_position_and_negatives_listed():
    moves = [mv("receipt", "3", "2.00", wh="W1"), mv("receipt", "1", "2.00", sku="B"), mv("issue", "2", sku="B")]
    lines, negative = gl.stock_lines(moves, LedgerSettings())
    assert [(l.sku, l.warehouse, l.qty, l.unit_cost) for l in lines] == [("A", "W1", D("3"), D("2.00"))]
    assert negative == (("B", "W1", D("-1")),)


def test_latest_snapshot_replaces_earlier_documents():
    moves = [mv("receipt", "5", "1.00", 0, no="old"), mv("receipt", "7", "1.10", 1, no="", snapshot=True),
             mv("receipt", "9", "9.00", -3, no="", snapshot=True), mv("issue", "2", day=1), mv("issue", "1", day=2)]
    kept = gl.after_snapshots(moves)
    assert [(m.day - DAY).days for m in kept] == [1, 2]
    assert gl.fifo_layers(kept) == ([(D("6"), D("1.10"))], D("6"))


def _invoice(number, lines, *, customer="C1", terms=30, incl=True):
    return gl.SourceInvoice(number=number, customer=customer, day=DAY, terms_days=terms, prices_include_vat=incl,
                            lines=tuple(InvoiceLine(line_no=i, sku=s, qty=D(q), unit_price=D(p), vat_rate=D("20"))
                                        for i, (s, q, p) in enumerate(lines, start=1)))


def test_receivables_gross_minus_allocations_and_returns_and_advances():
    source = gl.Source(
        invoices=[_invoice("I1", [("A", "2", "6.00"), ("B", "1", "3.33")]), _invoice("I2", [("A", "1", "10.00")], customer="C2")],
        returns=[gl.SourceReturnLine(against="I1", sku="A", qty=D("1"), invoice_line_no=None),
                 gl.SourceReturnLine(against="I2", sku="A", qty=D("1"), invoice_line_no=1)],
        payments=[gl.SourcePayment(number="P1", customer="C1", day=DAY, amount=D("20.00"),
                                   allocations=(("I1", D("5.00")), ("ELSEWHERE", D("1.00")))),
                  gl.SourcePayment(number="P2", customer="C2", day=DAY, amount=D("4.00"), allocations=(("I2", D("4.00")),)),
                  gl.SourcePayment(number="P3", customer="C3", day=DAY, amount=D("9.00"), allocations=(), in_scope=False)],
        posted_invoices={"I1", "I2"})
    settings = LedgerSettings(currency="GBP")
    items, over = gl.open_receivables(source, settings)
    # I1: 12.00 + 3.33 gross - 5.00 paid - 6.00 returned = 4.33, due +30 days
    assert [(i.document, i.amount, i.due_date) for i in items] == [("I1", D("4.33"), DAY + dt.timedelta(days=30))]
    # I2: 10.00 - 4.00 paid - 10.00 returned = -4.00: owed to the customer
    assert [(a.customer, a.payment, a.amount) for a in over] == [("C2", "I2", D("4.00"))]
    advances = gl.open_advances(source)  # P1: 20 - 5 (ELSEWHERE is no posted invoice); P3 out of scope
    assert [(a.payment, a.amount) for a in advances] == [("P1", D("15.00"))]
    opening = gl.opening_document(source, DAY, settings)
    assert opening.document.number == "OB-golive-2011-01-10" and opening.document.currency == "GBP"
    assert {a.payment for a in opening.document.advances} == {"I2", "P1"}
    assert opening.summary()["receivable_total"] == "4.33"


def test_return_of_a_sku_not_on_the_invoice_credits_nothing():
    inv = _invoice("I1", [("A", "1", "1.00")])
    assert gl.return_credit(inv, gl.SourceReturnLine("I1", "Z", D("1"), None), LedgerSettings()) == 0


@pytest.mark.parametrize("excluded", ["receipt", "issue"])
def test_positions_without_receipts_post_nothing(excluded):
    moves = [m for m in (mv("receipt", "2", "1.00"), mv("issue", "1")) if m.kind != excluded]
    lines, _ = gl.stock_lines(moves, LedgerSettings())
    assert len(lines) == (0 if excluded == "receipt" else 1)


def test_cli_refuses_a_date_other_than_the_ledger_settings_golive_date(tmp_path):
    from typer.testing import CliRunner

    from salesledger.cli import app

    ledger = tmp_path / "ledger.yaml"
    ledger.write_text("golive_date: '2011-01-09'\n")
    result = CliRunner().invoke(app, ["golive", "--date", "2011-01-10", "--profile", "test"],
                                env={"SALESLEDGER_PIPELINE_LEDGER_SETTINGS_FILE": str(ledger)})
    assert result.exit_code == 2 and "golive_date is 2011-01-09, not 2011-01-10" in result.output


# ---- invoices taken over at go-live ------------------------------------------------------------

def issue(qty, day, no, line=1, sku="A"):
    return gl.Movement(sku=sku, warehouse="W1", day=DAY + dt.timedelta(days=day), kind="issue", qty=D(qty),
                       order=(no, line), invoice=True)


def test_fifo_issue_costs_follow_the_receipt_order_net_of_returns():
    moves = [mv("receipt", "2", "2.00", 0, no="G1"), mv("receipt", "4", "3.00", 1, no="G2"),
             issue("3", 2, "I1"), mv("return", "1", day=3, no="R1"), issue("2", 4, "I2"),
             mv("issue", "1", day=5, no="WO"), issue("2", 6, "I3"), issue("1", 7, "I4")]
    costs = gl.issue_unit_costs(moves, LedgerSettings())
    # I1: units 1-3 = 2@2.00 + 1@3.00; R1 puts unit 3 back; I2: units 3-4 @3.00; the write-off
    # unit 5; I3: unit 6 @3.00 + one beyond every receipt at the last receipt's 3.00; I4 beyond
    assert costs.by_line == {("I1", 1): D("2.3333"), ("I2", 1): D("3.0000"), ("I3", 1): D("3.0000"),
                             ("I4", 1): D("3.0000")}
    assert costs.fallback == {("A", "W1"): D("2.00")}
    layers, _ = gl.fifo_layers([m for m in moves if m.kind != "issue" or m.order[0] in ("I1", "I2")])
    assert layers == [(D("2"), D("3.00"))]  # the opening stock's queue agrees: after I1, R1, I2 units 5-6 remain


def test_moving_average_issue_cost_is_the_average_at_the_issue():
    moves = [mv("receipt", "10", "1.00", 0, no="G1"), issue("5", 1, "I1"), mv("receipt", "5", "2.00", 2, no="G2"),
             issue("3", 3, "I2")]
    costs = gl.issue_unit_costs(moves, LedgerSettings(valuation="moving_average"))
    assert costs.by_line == {("I1", 1): D("1.0000"), ("I2", 1): D("1.5000")}


def test_returnable_quantities_take_returns_by_named_line_or_first_line_with_quantity_left():
    inv = _invoice("I1", [("A", "2", "6.00"), ("A", "3", "6.00"), ("B", "1", "3.00")])
    returns = [gl.SourceReturnLine("I1", "A", D("2"), None), gl.SourceReturnLine("I1", "A", D("1"), None),
               gl.SourceReturnLine("I1", "B", D("1"), 3), gl.SourceReturnLine("I9", "A", D("1"), None)]
    assert gl.returnable_quantities(inv, returns) == {1: D("0"), 2: D("2"), 3: D("0")}


def test_reference_invoices_carry_returnable_lines_at_their_issue_cost():
    inv = _invoice("I1", [("A", "3", "6.00"), ("SV", "1", "2.00")])
    inv = gl.SourceInvoice(number="I1", customer="C1", day=DAY, terms_days=30, prices_include_vat=True,
                           warehouse="W1", lines=(inv.lines[0], InvoiceLine(line_no=2, sku="SV", qty=D("1"),
                                                  unit_price=D("2.00"), vat_rate=D("20"), kind="service")))
    done = gl.SourceInvoice(number="I0", customer="C1", day=DAY - dt.timedelta(days=40), terms_days=30,
                            prices_include_vat=True, warehouse="W1",
                            lines=(InvoiceLine(line_no=1, sku="A", qty=D("1"), unit_price=D("6.00"), vat_rate=D("20")),))
    source = gl.Source(movements=[mv("receipt", "10", "2.50", -50, no="G1"), issue("1", -40, "I0"), issue("3", 0, "I1")],
                       invoices=[done, inv], returns=[gl.SourceReturnLine("I1", "A", D("1"), None)])
    opening = gl.opening_document(source, DAY, LedgerSettings(currency="GBP"))
    (doc,) = opening.references
    assert doc.number == f"OB-golive-{DAY}-invoices-1" and doc.stock == () and doc.receivables == ()
    by_number = {r.number: r for r in doc.invoices}
    assert set(by_number) == {"I0", "I1"}
    ref = by_number["I1"]
    assert (ref.customer, ref.warehouse, ref.date, ref.prices_include_vat) == ("C1", "W1", DAY, True)
    assert [(l.line_no, l.sku, l.qty, l.unit_price, l.vat_rate, l.kind, l.unit_cost) for l in ref.lines] == [
        (1, "A", D("2"), D("6.00"), D("20"), "goods", D("2.5000")), (2, "SV", D("1"), D("2.00"), D("20"), "service", D("0"))]
    assert opening.summary()["invoices_taken_over"] == 2 and opening.documents == (opening.document, doc)
    # only the last 30 days: I0 (40 days before) is not taken over
    recent = gl.opening_document(source, DAY, LedgerSettings(currency="GBP"), returnable_days=30)
    assert [r.number for d in recent.references for r in d.invoices] == ["I1"]


def test_reference_documents_split_by_lines_never_an_invoice(monkeypatch):
    monkeypatch.setattr(gl, "REFERENCE_LINES_PER_DOCUMENT", 3)
    line = lambda n: OpeningInvoiceLine(line_no=n, sku="A", qty=D("1"), unit_price=D("1"), vat_rate=D("20"))
    refs = [OpeningInvoice(number=f"I{k}", customer="C", warehouse="W", date=DAY, lines=tuple(line(n) for n in range(1, size + 1)))
            for k, size in enumerate((2, 1, 2, 4))]
    docs = gl.reference_documents(refs, DAY, "GBP")
    assert [[r.number for r in d.invoices] for d in docs] == [["I0", "I1"], ["I2"], ["I3"]]
    assert [d.number for d in docs] == [f"OB-golive-{DAY}-invoices-{n}" for n in (1, 2, 3)]
    monkeypatch.setattr(gl, "REFERENCE_DOCUMENTS_MAX", 2)
    with pytest.raises(gl.GoliveError, match="--returnable-days"):
        gl.reference_documents(refs, DAY, "GBP")
