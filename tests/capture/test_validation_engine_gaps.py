"""Engine gaps found while validating captured documents: ``card`` payments, service lines,
and engine bugs dead-lettered by the posting step instead of stopping it."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

import pytest

from salesledger.ledger import engine
from salesledger.ledger.errors import SettingsError
from salesledger.ledger.settings import LedgerSettings
from tests.ledger.helpers import AZ, all_entries, invoice, opening, payment, run, sales_return, sums

OPEN = opening(("A", "20", "3.00"))


def _service(inv, *skus: str):
    return dataclasses.replace(inv, lines=tuple(
        dataclasses.replace(line, kind="service") if line.sku in skus else line
        for line in inv.lines))


def test_card_payment_debits_the_bank_role_by_default() -> None:
    state, results = run(OPEN, invoice(), payment(amount="59.00", method="card"))
    assert results[-1].status == "posted"
    assert sums(results[-1].entries, "223") == (D("59.00"), D("0"))  # az-nas bank


def test_card_role_is_a_setting_checked_against_the_chart() -> None:
    settings = LedgerSettings(card_role="cash")
    _, results = run(OPEN, invoice(), payment(amount="59.00", method="card"), settings=settings)
    assert sums(results[-1].entries, "221") == (D("59.00"), D("0"))  # az-nas cash
    assert sums(results[-1].entries, "223") == (D("0"), D("0"))
    with pytest.raises(SettingsError, match="card_role"):
        engine.check_settings(LedgerSettings(card_role="acquiring"), AZ)


def test_service_line_posts_revenue_without_stock_or_cost() -> None:
    # No opening stock of POST at all: a goods line would be held under negative_stock: hold.
    inv = _service(invoice(lines=(("A", "2", "5.00", "18"), ("POST", "1", "10.00", "18"))), "POST")
    state, results = run(OPEN, inv)
    posted = results[-1]
    assert posted.status == "posted"
    assert sums(posted.entries, "601") == (D("0"), D("20.00"))     # revenue: both lines
    assert sums(posted.entries, "701") == (D("6.00"), D("0"))      # cost: goods line only
    assert {m.sku for m in posted.movements} == {"A"}
    assert ("POST", "W1") not in state.stock or state.stock[("POST", "W1")].qty == 0


def test_service_line_return_and_cancellation_move_no_stock() -> None:
    inv = _service(invoice(lines=(("A", "2", "5.00", "18"), ("POST", "1", "10.00", "18"))), "POST")
    ret = sales_return(lines=(("POST", "1"),))
    cancel = dataclasses.replace(inv, version=2, status="cancelled")
    state, results = run(OPEN, inv, ret, cancel)
    assert [r.status for r in results[1:]] == ["posted", "posted", "posted"]
    assert all(m.sku != "POST" for r in results for m in r.movements)
    assert state.stock[("A", "W1")].qty == D("20")
    # everything reversed: inventory back to the opening value, no revenue left
    entries = all_entries(results)
    debit, credit = sums(entries, "205")
    assert debit - credit == D("60.00")


def test_an_engine_bug_becomes_an_engine_bug_dead_letter_and_later_documents_post(monkeypatch):
    from salesledger.ledger import postings
    from salesledger.streams.deadletter import HEADER_DOCUMENT_ID, HEADER_REASON
    from salesledger.streams.posting import DLQ_TOPIC, JOURNAL_TOPIC
    from tests.pipeline.test_posting_step import LoggedTable, encoded, processor, receipt
    from tests.pipeline.test_posting_step import payment as pay

    step = processor(LoggedTable())
    step.process(0, b"goods_receipt:GR-1", encoded(receipt("GR-1", "10", "5.00"), 100))
    monkeypatch.setattr(postings, "METHOD_ROLES", {})  # a rule's lookup table missing a key
    outputs = step.process(1, b"payment:PAY-1", encoded(pay("PAY-1", "20.00"), 200))
    assert [o.topic for o in outputs] == [DLQ_TOPIC]
    headers = dict(outputs[0].headers)
    assert headers[HEADER_REASON] == b"engine_bug"
    assert headers[HEADER_DOCUMENT_ID] == b"payment:PAY-1"
    monkeypatch.undo()
    later = step.process(2, b"goods_receipt:GR-2", encoded(receipt("GR-2", "10", "6.00"), 300))
    assert any(o.topic == JOURNAL_TOPIC for o in later)
    assert step.stats.dead_letters == 1


def test_an_engine_bug_on_a_release_is_dead_lettered_too(monkeypatch):
    from salesledger.ledger import engine as engine_module
    from salesledger.streams.deadletter import HEADER_REASON
    from salesledger.streams.documents import ACTION_SUBJECT, PeriodActionEvent
    from salesledger.streams.posting import DLQ_TOPIC, JOURNAL_TOPIC
    from tests.pipeline.test_posting_step import SERDE, T0, LoggedTable, encoded, processor, receipt

    def broken(*args, **kwargs):
        raise KeyError("missing")

    step = processor(LoggedTable())
    monkeypatch.setattr(engine_module, "release", broken)
    release = SERDE.encode(ACTION_SUBJECT, PeriodActionEvent(
        action="release", document_key="invoice:INV-9", actor="test", at=T0).datum())
    outputs = step.process(0, b"release", release)
    assert [o.topic for o in outputs] == [DLQ_TOPIC]
    assert dict(outputs[0].headers)[HEADER_REASON] == b"engine_bug"
    later = step.process(1, b"goods_receipt:GR-1", encoded(receipt("GR-1", "10", "5.00"), 100))
    assert any(o.topic == JOURNAL_TOPIC for o in later)
