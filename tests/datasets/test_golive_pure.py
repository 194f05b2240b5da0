"""The pure go-live computation (:mod:`salesledger.golive`): FIFO remainder layers, moving
average, opening-stock snapshots, open receivables and advances."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from salesledger import golive as gl
from salesledger.ledger.model import InvoiceLine
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
