"""Assembly rule 8: ``sales.currency_rates`` rows become rate events in commit order with the
documents, and the assembly agent puts them on the documents topic (hand-built events)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from salesledger.streams.assembly import DocumentAssembler, DocumentEvent, RateEvent
from salesledger.streams.assembly_agent import AssemblyProcessor
from salesledger.streams.documents import ExchangeRateEvent, decode_documents_record
from salesledger.streams.posting import DLQ_TOPIC
from salesledger.streams.serde import AvroSerde
from tests.capture.test_assembly_rules import Tx, feed, header, line

DAY = dt.date(2026, 3, 2)


def rate_row(currency="USD", day=DAY, rate="1.70000000", nominal=1) -> dict:
    return {"currency": currency, "date": day, "rate": Decimal(rate), "nominal": nominal}


def kinds(out) -> list[str]:
    return [item.key for item in out]


def test_a_rate_only_transaction_is_one_rate_event_per_row_rate_per_one_unit():
    a = DocumentAssembler(exchange_rates=True)
    tx = (Tx(10, 1000).row("currency_rates", "c", rate_row())
          .row("currency_rates", "c", rate_row("JPY", rate="1.13500000", nominal=100)))
    out = feed(a, tx)
    assert [type(item) for item in out] == [RateEvent, RateEvent]
    usd, jpy = out
    assert (usd.key, usd.currency, usd.date, usd.rate) == ("rate:USD:2026-03-02", "USD", DAY,
                                                           Decimal("1.7"))
    assert jpy.rate == Decimal("0.011350") and usd.version == (1000, 1) and jpy.version == (1000, 2)
    assert usd.source.lsn == 1000


def test_rates_and_documents_leave_in_commit_order_within_and_across_transactions():
    a = DocumentAssembler(exchange_rates=True)
    first = (Tx(10, 1000).row("invoices", "c", header(currency="USD"))
             .row("invoice_lines", "c", line(1)).row("currency_rates", "c", rate_row()))
    second = Tx(11, 2000, previous_commit=1000).row("currency_rates", "u", rate_row(rate="1.71"),
                                                    before=rate_row())
    out = feed(a, first) + feed(a, second)
    assert kinds(out) == ["invoice:INV-1", "rate:USD:2026-03-02", "rate:USD:2026-03-02"]
    assert [item.version for item in out] == [(1000, 2), (1000, 3), (2000, 1)]
    assert out[2].rate == Decimal("1.71")


def test_an_end_before_its_rate_row_waits_and_holds_back_later_documents():
    a = DocumentAssembler(exchange_rates=True)
    rates = Tx(10, 1000).row("currency_rates", "c", rate_row())
    invoice = (Tx(11, 2000, previous_commit=1000).row("invoices", "c", header())
               .row("invoice_lines", "c", line(1)))
    assert a.on_transaction(rates.end()) == []
    assert feed(a, invoice) == []  # complete, but after a transaction still waiting
    out = a.on_change(rates.events[0])
    assert kinds(out) == ["rate:USD:2026-03-02", "invoice:INV-1"]


def test_while_rebuilding_a_rate_row_after_its_end_still_waits_and_is_not_dropped():
    """The replay stops at the committed offsets: an END may be replayed while its rate row
    (not consumed by the last run) only comes live afterwards."""
    a = DocumentAssembler(exchange_rates=True)
    a.master_wait = False  # as the agent's rebuild sets it
    rates = Tx(10, 1000).row("currency_rates", "c", rate_row())
    assert a.on_transaction(rates.end()) == []
    a.master_wait = True
    assert kinds(a.on_change(rates.events[0])) == ["rate:USD:2026-03-02"]


def test_a_deleted_rate_row_emits_nothing_and_re_delivery_emits_once():
    a = DocumentAssembler(exchange_rates=True)
    insert = Tx(10, 1000).row("currency_rates", "c", rate_row())
    delete = Tx(11, 2000, previous_commit=1000).row("currency_rates", "d", before=rate_row())
    assert len(feed(a, insert)) == 1
    assert feed(a, delete) == []
    assert feed(a, insert) == []  # CDC-09: a re-delivered transaction


def test_a_rate_row_compacted_away_does_not_hold_the_queue():
    """The rate topic is compacted: a re-read may lack an old row; a row of a later
    transaction on that topic tells the assembler the old one will not come."""
    a = DocumentAssembler(exchange_rates=True)
    old = Tx(10, 1000).row("currency_rates", "c", rate_row())
    invoice = Tx(11, 2000, previous_commit=1000).row("invoices", "c", header()).row(
        "invoice_lines", "c", line(1))
    newer = Tx(12, 3000, previous_commit=2000).row("currency_rates", "u", rate_row(rate="1.8"),
                                                   before=rate_row())
    assert a.on_transaction(old.end()) == []
    assert feed(a, invoice) == []
    out = feed(a, newer)
    assert kinds(out) == ["invoice:INV-1", "rate:USD:2026-03-02"]
    assert out[1].rate == Decimal("1.8")


def test_without_the_option_rates_are_not_events():
    a = DocumentAssembler()
    tx = Tx(10, 1000).row("currency_rates", "c", rate_row()).row("invoices", "c", header()).row(
        "invoice_lines", "c", line(1))
    assert [type(item) for item in feed(a, tx)] == [DocumentEvent]


def test_the_agent_step_puts_a_rate_on_the_documents_topic_or_dead_letters_it():
    serde = AvroSerde()
    step = AssemblyProcessor(DocumentAssembler(exchange_rates=True), serde=serde)
    a = step.assembler
    good = Tx(10, 1000).row("currency_rates", "c", rate_row(rate="1.70250000"))
    out = [o for item in feed(a, good) for o in [step._rate(item, "t", 0, 1, b"k", b"v")]]
    assert [(o.topic, o.key) for o in out] == [("documents", b"rate:USD:2026-03-02")]
    event = decode_documents_record(serde, out[0].value)
    assert isinstance(event, ExchangeRateEvent)
    assert (event.rate.currency, event.rate.date, event.rate.rate) == ("USD", DAY,
                                                                      Decimal("1.702500"))
    assert event.version == (1000, 1) and event.key == "rate:USD:2026-03-02"
    fine = Tx(11, 2000, previous_commit=1000).row(
        "currency_rates", "c", rate_row("EUR", rate="1.23456789"))  # 8 decimals: scale is 6
    (item,) = feed(a, fine)
    dead = step._rate(item, "t.cdc.sales.currency_rates", 0, 7, b"k", b"v")
    assert dead.topic == DLQ_TOPIC and step.dead_letters == 1
    assert dict(dead.headers)["dlq.reason"] == b"decimal_out_of_range"
