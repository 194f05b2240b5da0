"""Pure tests of the reconciliation's comparison (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from salesledger.reports.reconcile import DocFigures, compare_documents, group_totals

DAY = dt.date(2026, 3, 2)


def _invoice(number: str, net: str, vat: str, qty: str, branch: str | None = "B1") -> DocFigures:
    return DocFigures("invoice", number, DAY, branch, "C1", {
        "invoiced_net": D(net), "invoiced_vat": D(vat), "invoiced_gross": D(net) + D(vat),
        "goods_issued": D(qty)})


def test_equal_sides_have_no_difference_even_with_other_scales() -> None:
    source = {("invoice", "I1"): _invoice("I1", "50.00", "9.00", "10.000")}
    ledger = {("invoice", "I1"): _invoice("I1", "50", "9.0", "10")}
    assert compare_documents(source, ledger) == []


def test_a_changed_line_names_its_document_with_both_values() -> None:
    source = {("invoice", "I1"): _invoice("I1", "55.00", "9.90", "11")}
    ledger = {("invoice", "I1"): _invoice("I1", "50.00", "9.00", "10", branch=None)}
    diffs = [d.as_json() for d in compare_documents(source, ledger)]
    assert [d["check"] for d in diffs] == ["invoiced_net", "invoiced_vat", "invoiced_gross",
                                           "goods_issued"]
    assert diffs[0] == {"check": "invoiced_net", "day": "2026-03-02", "branch": "B1",
                        "customer": "C1", "document": "I1", "source": "55.00", "ledger": "50.00"}
    assert diffs[3]["source"] == "11" and diffs[3]["ledger"] == "10"


def test_missing_sides_and_reversed_documents() -> None:
    paid = DocFigures("payment", "P1", DAY, None, "C1", {"paid": D("30.00")})
    reversed_invoice = _invoice("I9", "0", "0", "0")
    diffs = compare_documents({("payment", "P1"): paid}, {("invoice", "I9"): reversed_invoice})
    assert [(d.check, d.document, d.source, d.ledger) for d in diffs] == [
        ("paid", "P1", D("30.00"), None)]
    only_ledger = compare_documents({}, {("payment", "P1"): paid})
    assert only_ledger[0].as_json()["source"] is None
    assert only_ledger[0].as_json()["ledger"] == "30.00"


def test_group_totals_sum_both_sides_per_day_branch_customer() -> None:
    source = {("invoice", "I1"): _invoice("I1", "50.00", "9.00", "10"),
              ("invoice", "I2"): _invoice("I2", "10.00", "1.80", "1")}
    ledger = {("invoice", "I1"): _invoice("I1", "50.00", "9.00", "10")}
    (group,) = group_totals(source, ledger)
    assert (group["day"], group["branch"], group["customer"]) == ("2026-03-02", "B1", "C1")
    assert group["source"]["invoiced_gross"] == "70.80"
    assert group["ledger"]["invoiced_gross"] == "59.00"
    assert group["source"]["goods_issued"] == "11" and group["source"]["paid"] == "0.00"


def test_held_reason_is_carried_on_the_difference() -> None:
    source = {("invoice", "I1"): _invoice("I1", "50.00", "9.00", "10")}
    (first, *_) = compare_documents(source, {}, {("invoice", "I1"): "period_locked"})
    assert first.as_json()["held"] == "period_locked"
    (plain, *_) = compare_documents(source, {}, {})
    assert "held" not in plain.as_json()


def test_a_document_without_rate_is_named_and_only_its_quantities_compared() -> None:
    unconvertible = _invoice("I1", "0", "0", "3")
    unconvertible.no_rate = True
    diffs = [d.as_json() for d in compare_documents({("invoice", "I1"): unconvertible}, {})]
    assert [(d["check"], d["source"], d["ledger"]) for d in diffs] == [
        ("exchange_rate", None, None), ("goods_issued", "3", None)]
