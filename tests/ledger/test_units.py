"""Unit tests of rounding, VAT, discounts, FIFO, moving average and ageing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from pydantic import ValidationError

from salesledger.ledger import valuation
from salesledger.ledger.model import CostLayer, InvoiceLine
from salesledger.ledger.receivables import bucket
from salesledger.ledger.rules import line_figures
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import StockPosition

S = LedgerSettings()
MA = LedgerSettings(valuation="moving_average")
D0 = dt.date(2026, 1, 1)


@pytest.mark.parametrize(
    "amount, expected",
    [("2.345", "2.35"), ("2.344", "2.34"), ("-2.345", "-2.35"), ("0.005", "0.01"), ("1.9999", "2.00")],
)
def test_round_half_up_to_cent(amount, expected) -> None:
    assert S.round(D(amount)) == D(expected)


def test_other_quantum_and_mode() -> None:
    s = LedgerSettings(rounding_quantum="1", rounding_mode="ROUND_HALF_EVEN")
    assert s.round(D("2.5")) == D("2") and s.round(D("3.5")) == D("4")


@pytest.mark.parametrize(
    "bad",
    [
        {"valuation": "lifo"},
        {"currency": "azn"},
        {"rounding_quantum": 0.01},
        {"rounding_quantum": "0.05"},
        {"business_time_zone": "Mars/Olympus"},
        {"document_kinds": ["return", "payment"]},
        {"locked_period_policy": "ignore"},
        {"unknown_option": 1},
    ],
)
def test_bad_or_contradictory_settings_refused(bad) -> None:
    with pytest.raises(ValidationError):
        LedgerSettings(**bad)


def _line(qty, price, vat="18", disc="0"):
    return InvoiceLine(line_no=1, sku="A", qty=D(qty), unit_price=D(price), vat_rate=D(vat), discount_percent=D(disc))


def test_vat_on_top_per_line() -> None:
    f = line_figures(_line("3", "3.33"), False, S, None)
    assert (f.net, f.vat, f.gross) == (D("9.99"), D("1.80"), D("11.79"))


def test_vat_included_extracted_per_line() -> None:
    f = line_figures(_line("1", "9.99"), True, S, None)
    assert (f.net, f.vat) == (D("8.47"), D("1.52"))
    f = line_figures(_line("3", "11.80"), True, S, None)
    assert (f.net, f.vat) == (D("30.00"), D("5.40"))


def test_discount_on_gross_before_discount() -> None:
    f = line_figures(_line("4", "25.00", disc="10"), False, S, None)
    assert (f.net, f.vat, f.discount) == (D("90.00"), D("16.20"), D("10.00"))
    f = line_figures(_line("1", "11.80", disc="10"), True, S, None)
    # gross 10.62 -> VAT 1.62, net 9.00; undiscounted net 11.80 - 1.80 = 10.00
    assert (f.net, f.vat, f.discount) == (D("9.00"), D("1.62"), D("1.00"))


def test_fractional_quantity_rounds_gross_before_discount() -> None:
    f = line_figures(_line("0.333", "10.00"), False, S, None)
    assert f.net == D("3.33")


def test_foreign_currency_figures_converted_each() -> None:
    f = line_figures(_line("1", "100.00"), False, S, D("1.7"))
    assert (f.net, f.vat) == (D("170.00"), D("30.60"))


def _pos(*layers):
    return StockPosition(sku="A", warehouse="W1", layers=tuple(CostLayer(qty=D(q), value=D(v), origin=o, received=D0) for q, v, o in layers))


def test_fifo_partial_layer_keeps_exact_remainder() -> None:
    pos = _pos(("3", "10.00", "L1"))
    new, cost, pieces = valuation.issue(pos, D("1"), S)
    assert cost == D("3.33") and new.value == D("6.67") and new.qty == D("2")
    new2, cost2, _ = valuation.issue(new, D("2"), S)
    assert cost2 == D("6.67") and new2.qty == 0 and new2.value == 0


def test_fifo_spans_layers_oldest_first() -> None:
    pos = _pos(("5", "10.00", "L1"), ("10", "30.00", "L2"))
    new, cost, pieces = valuation.issue(pos, D("8"), S)
    assert cost == D("19.00") and [p.origin for p in pieces] == ["L1", "L2"]
    assert new.layers[0].origin == "L2" and new.value == D("21.00")


def test_reversal_restores_at_front_in_order_and_return_goes_to_end() -> None:
    pos = _pos(("5", "10.00", "L1"), ("10", "30.00", "L2"))
    new, _, pieces = valuation.issue(pos, D("8"), S)
    restored, corrections = valuation.restore_front(new, pieces, S)
    assert corrections == ()
    assert [(l.origin, l.qty, l.value) for l in restored.layers] == [
        ("restored:L1", D("5"), D("10.00")), ("restored:L2", D("3"), D("9.00")), ("L2", D("7"), D("21.00"))
    ]
    back, corrections = valuation.receive(new, D("2"), D("4.00"), "RET", D0, S)
    assert back.layers[-1].origin == "RET" and not corrections


def test_moving_average_issue_and_receipt() -> None:
    pos = StockPosition(sku="E", warehouse="W1")
    pos, _ = valuation.receive(pos, D("5"), D("10.00"), "GR-a", D0, MA)
    pos, _ = valuation.receive(pos, D("10"), D("30.00"), "GR-b", D0, MA)
    assert len(pos.layers) == 1
    pos, cost, _ = valuation.issue(pos, D("8"), MA)
    assert cost == D("21.33") and pos.value == D("18.67") and pos.qty == D("7")


def test_negative_stock_hold_raises_and_allow_costs_at_last_unit_cost() -> None:
    pos = _pos(("2", "6.00", "L1"))
    with pytest.raises(valuation.InsufficientStock):
        valuation.issue(pos, D("3"), S)
    allow = LedgerSettings(negative_stock="allow")
    new, cost, _ = valuation.issue(pos, D("3"), allow)
    assert cost == D("9.00") and new.qty == D("-1") and new.value == D("-3.00")
    after, corrections = valuation.receive(new, D("4"), D("16.00"), "GR", D0, allow)
    assert corrections[0].actual == D("4.00") and corrections[0].provisional == D("3.00")
    assert after.qty == D("3") and after.value == D("12.00")


@pytest.mark.parametrize(
    "days, name",
    [(-5, "not_due"), (0, "not_due"), (1, "1-30"), (30, "1-30"), (31, "31-60"), (60, "31-60"), (61, "61-90"),
     (90, "61-90"), (91, "91-120"), (120, "91-120"), (121, "121+"), (400, "121+")],
)
def test_ageing_buckets(days, name) -> None:
    assert bucket(days) == name


def test_business_date_in_asia_baku() -> None:
    utc = dt.timezone.utc
    assert S.business_date(dt.datetime(2026, 3, 1, 21, 30, tzinfo=utc)) == dt.date(2026, 3, 2)  # UTC+4
    assert S.business_date(dt.datetime(2026, 3, 1, 19, 59, tzinfo=utc)) == dt.date(2026, 3, 1)
    with pytest.raises(ValueError):
        S.business_date(dt.datetime(2026, 3, 1, 12, 0))


def test_entry_id_is_rfc4122_uuid5() -> None:
    import uuid

    from salesledger.ledger.model import ENTRY_NAMESPACE, entry_id_for

    for args in [("invoice", "INV-1", 1, "sale.revenue"), ("payment", "P/7", 12, "reversal:x"), ("return", "ä", 3, "r")]:
        assert entry_id_for(*args) == str(uuid.uuid5(ENTRY_NAMESPACE, f"{args[0]}:{args[1]}:v{args[2]}:{args[3]}"))


def test_restore_into_negative_stock_covers_it_and_reports_the_cost_difference() -> None:
    allow = LedgerSettings(negative_stock="allow")
    pos = _pos(("1", "2.00", "L1"))
    pos, _, pieces = valuation.issue(pos, D("1"), allow)  # the real unit, cost 2.00
    pos, _, _ = valuation.issue(pos, D("1"), allow)  # one more at the last unit cost: -1 / -2.00
    pos, _ = valuation.receive(pos, D("1"), D("1.00"), "GR", D0, allow)  # covers it; now 0 / 0
    pos, _, _ = valuation.issue(pos, D("1"), allow)  # negative again at 1.00
    restored, corrections = valuation.restore_front(pos, pieces, allow)
    assert corrections[0].actual == D("2.00") and corrections[0].provisional == D("1.00")
    assert restored.qty == 0 and restored.value == 0 and restored.layers == ()
