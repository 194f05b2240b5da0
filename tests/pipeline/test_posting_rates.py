"""The posting step applies exchange-rate records of the documents topic (``set_rate``): a
foreign-currency invoice held for ``no_exchange_rate`` posts when its rate arrives (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from salesledger.ledger.model import SourcePosition
from salesledger.streams.assembly import RateEvent
from salesledger.streams.documents import RATE_SUBJECT, rate_datum
from salesledger.streams.posting import HELD_TOPIC, JOURNAL_TOPIC
from tests.pipeline.test_posting_step import (
    SERDE,
    T0,
    LoggedTable,
    encoded,
    invoice,
    processor,
    receipt,
)

DAY = dt.date(2026, 3, 3)  # the invoice's date


def rate_record(rate: str, lsn: int, day: dt.date = DAY, currency: str = "USD") -> bytes:
    event = RateEvent(key=f"rate:{currency}:{day}", currency=currency, date=day,
                      rate=Decimal(rate), version=(lsn, 1),
                      source=SourcePosition(lsn=lsn, tx_id=lsn // 10, commit_time=T0))
    return SERDE.encode(RATE_SUBJECT, rate_datum(event))


def entries(outputs) -> list[dict]:
    return [SERDE.decode(o.value) for o in outputs if o.topic == JOURNAL_TOPIC]


def sums(entry: dict) -> dict[str, tuple[Decimal, Decimal]]:
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for line in entry["lines"]:
        debit, credit = out.get(line["account"], (Decimal(0), Decimal(0)))
        out[line["account"]] = (debit + line["debit"], credit + line["credit"])
    return out


def usd_invoice():
    return dataclasses.replace(invoice("INV-USD", "4", "12.50"), currency="USD")


def test_a_held_usd_invoice_posts_at_the_rate_when_the_rate_record_arrives():
    p = processor(LoggedTable())
    p.process(0, b"k", encoded(receipt("GR-1", "10", "5.00"), 100))
    held = p.process(1, b"k", encoded(usd_invoice(), 200, 1))
    assert entries(held) == []
    assert [SERDE.decode(o.value)["reason"] for o in held if o.topic == HELD_TOPIC] == [
        "no_exchange_rate"]
    out = p.process(2, b"rate:USD:2026-03-03", rate_record("1.702500", 300))
    posted = {e["kind"]: e for e in entries(out)}
    assert set(posted) == {"revenue", "cogs"}
    # 4 x 12.50 = 50.00 USD net, VAT 9.00 USD; each figure converted and rounded (HALF_UP)
    assert sums(posted["revenue"]) == {"211": (Decimal("100.45"), 0), "601": (0, Decimal("85.13")),
                                      "521": (0, Decimal("15.32"))}
    assert posted["revenue"]["exchange_rate"] == Decimal("1.702500")
    assert posted["revenue"]["original_currency"] == "USD"
    assert sums(posted["cogs"]) == {"701": (Decimal("20.00"), 0), "205": (0, Decimal("20.00"))}
    assert [SERDE.decode(o.value)["status"] for o in out if o.topic == HELD_TOPIC] == ["posted"]
    assert len(p.state.held) == 0 and p.state.rates["USD"] == ((DAY, Decimal("1.702500")),)
    assert p.process(2, b"rate:USD:2026-03-03", rate_record("1.702500", 300)) == out  # re-delivery


def test_a_rate_of_another_day_or_currency_leaves_it_held_and_a_bad_rate_is_a_dead_letter():
    p = processor(LoggedTable())
    p.process(0, b"k", encoded(receipt("GR-1", "10", "5.00"), 100))
    p.process(1, b"k", encoded(usd_invoice(), 200, 1))
    assert entries(p.process(2, b"k", rate_record("1.7", 300, day=DAY + dt.timedelta(days=1)))) == []
    assert entries(p.process(3, b"k", rate_record("1.9", 400, currency="EUR"))) == []
    assert [h.reason for h in p.state.held.values()] == ["no_exchange_rate"]
    before = p.state
    dead = p.process(4, b"k", rate_record("0", 500))
    assert [o.topic for o in dead] == ["dlq"] and p.state is before
    assert SERDE.decode(dead[0].value)["reason"] == "invalid_document"
    assert entries(p.process(5, b"k", rate_record("1.7", 600, day=DAY - dt.timedelta(days=7))))
