"""Validation before emission: one test per reason code, the return view across returns,
and master data kept by CDC events."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal as D

import pytest

from salesledger.streams.validation import (
    REASONS,
    DocumentValidator,
    MasterData,
    Product,
    ValidationFailed,
)
from tests.ledger.helpers import DAY, invoice, payment, receipt, sales_return


def master() -> MasterData:
    data = MasterData()
    data.put_customer("C1")
    data.put_unit("pcs")
    data.put_product(Product(sku="A", unit="pcs", vat_rate=D("18")))
    data.put_product(Product(sku="POST", unit="pcs", vat_rate=D("18"), kind="service"))
    data.put_rate("USD", DAY - dt.timedelta(days=2), D("1.70000000"))
    return data


def reason(validator: DocumentValidator, document) -> str | None:
    error = validator.validate(document)
    assert error is None or isinstance(error, ValidationFailed)
    if error is not None:
        assert error.document_id == document.key and error.reason in REASONS
    return None if error is None else error.reason


@pytest.fixture
def validator() -> DocumentValidator:
    return DocumentValidator(master(), functional_currency="AZN", rate_max_age_days=7)


def test_valid_documents_pass(validator):
    assert reason(validator, invoice()) is None
    assert reason(validator, payment(amount="59.00", allocations=(("INV-1", "59.00"),))) is None
    assert reason(validator, receipt()) is None
    assert reason(validator, sales_return()) is None


@pytest.mark.parametrize("document, expected", [
    (invoice(customer="NOBODY"), "unknown_customer"),
    (payment(customer="NOBODY"), "unknown_customer"),
    (invoice(lines=(("NOPE", "1", "5.00", "18"),)), "unknown_sku"),
    (receipt(lines=(("NOPE", "1", "3.00", "18"),)), "unknown_sku"),
    (invoice(lines=(("A", "0", "5.00", "18"),)), "non_positive_quantity"),
    (invoice(lines=(("A", "-2", "5.00", "18"),)), "non_positive_quantity"),
    (invoice(lines=(("A", "1", "5.00", "10"),)), "vat_rate_not_allowed"),
    (invoice(currency="EUR"), "missing_exchange_rate"),
    (invoice(currency="XQZ", date=DAY + dt.timedelta(days=6)), "missing_exchange_rate"),
    (payment(amount="50.00", allocations=(("INV-1", "30.00"), ("INV-2", "30.00"))),
     "totals_mismatch"),
    (payment(amount="0"), "totals_mismatch"),
    (sales_return(against="INV-404"), "unknown_invoice"),
    (sales_return(lines=(("A", "11"),)), "return_exceeds_sold"),
])
def test_each_reason(validator, document, expected):
    validator.validate(invoice())  # INV-1: 10 x A
    assert reason(validator, document) == expected
    assert validator.failures == {expected: 1}


def test_a_known_currency_without_the_day_s_rate_passes_for_the_engine_to_hold(validator):
    """The posting stage holds it (no_exchange_rate) until the rate's event (assembly rule 8)."""
    late = invoice(currency="USD", date=DAY + dt.timedelta(days=6))  # USD rate 8 days older
    assert validator.master.rate_for("USD", late.date, 7) is None
    assert reason(validator, late) is None
    assert reason(validator, invoice(currency="USD")) is None
    assert validator.failures == {}


def test_unknown_unit_of_a_known_product(validator):
    validator.master.put_product(Product(sku="B", unit="box", vat_rate=D("18")))
    assert reason(validator, invoice(lines=(("B", "1", "5.00", "18"),))) == "unknown_unit"
    validator.master.put_unit("box")
    assert reason(validator, invoice(lines=(("B", "1", "5.00", "18"),))) is None


def test_a_receipt_carries_the_supplier_vat(validator):
    assert reason(validator, receipt(lines=(("A", "1", "3.00", "0"),))) is None


def test_rate_within_max_age_is_enough(validator):
    assert reason(validator, invoice(currency="USD")) is None  # rate two days before
    assert reason(validator, invoice(currency="USD", date=DAY + dt.timedelta(days=5))) is None


def test_returns_count_cumulatively_per_line_and_a_rejected_return_takes_nothing(validator):
    validator.validate(invoice(lines=(("A", "10", "5.00", "18"), ("A", "4", "5.00", "18"))))
    assert reason(validator, sales_return("RET-1", lines=(("A", "8"),))) is None
    assert reason(validator, sales_return("RET-2", lines=(("A", "7"),))) == "return_exceeds_sold"
    # the rejected RET-2 took nothing: 2 left on line 1 and 4 on line 2
    assert reason(validator, sales_return("RET-3", lines=(("A", "2"), ("A", "4")))) is None
    assert reason(validator, sales_return("RET-4", lines=(("A", "1"),))) == "return_exceeds_sold"


def test_a_new_version_of_a_return_replaces_its_old_quantity(validator):
    validator.validate(invoice())
    assert reason(validator, sales_return("RET-1", lines=(("A", "6"),))) is None
    assert reason(validator, sales_return("RET-1", lines=(("A", "9"),), version=2)) is None
    assert reason(validator, sales_return("RET-2", lines=(("A", "2"),))) == "return_exceeds_sold"
    cancelled = dataclasses.replace(sales_return("RET-1", lines=(("A", "9"),), version=3),
                                    status="cancelled")
    assert reason(validator, cancelled) is None  # cancellations always pass, and free the quantity
    assert reason(validator, sales_return("RET-2", lines=(("A", "10"),), version=2)) is None


def test_return_naming_a_line_of_another_sku(validator):
    validator.validate(invoice(lines=(("A", "10", "5.00", "18"), ("POST", "1", "9.00", "18"))))
    wrong = dataclasses.replace(sales_return(lines=(("A", "1"),)), lines=(
        dataclasses.replace(sales_return().lines[0], sku="A", qty=D("1"), line=2),))
    assert reason(validator, wrong) == "return_exceeds_sold"


def test_cancelled_invoice_is_no_longer_returnable(validator):
    validator.validate(invoice())
    validator.validate(dataclasses.replace(invoice(version=2), status="cancelled"))
    assert reason(validator, sales_return()) == "unknown_invoice"


def test_cancellation_of_an_invalid_document_passes(validator):
    bad = invoice(customer="NOBODY")
    assert reason(validator, bad) == "unknown_customer"
    assert reason(validator, dataclasses.replace(bad, status="deleted", version=2)) is None


def test_enrich_sets_the_line_kind_from_the_product(validator):
    inv = invoice(lines=(("A", "1", "5.00", "18"), ("POST", "1", "9.00", "18"),
                         ("NOPE", "1", "1.00", "18")))
    kinds = [line.kind for line in validator.enrich(inv).lines]
    assert kinds == ["goods", "service", "goods"]
    assert validator.enrich(payment()) == payment()
