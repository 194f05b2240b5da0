"""Period locks and the held queue, live: the CLI's actions travel on the documents topic,
ordered with the documents; a late document is held, listed, released by a named user and
posted into the first open day; every action is audited on the control topic (who, when)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from salesledger.ledger.model import GoodsReceipt, Invoice, InvoiceLine, ReceiptLine
from tests.pipeline.helpers import SERDE, produce, read_topic
from tests.pipeline.test_posting_step import encoded


def _cli(pipeline, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "salesledger"), *args],
                          env=pipeline.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.stack
def test_lock_holds_a_late_document_release_posts_it_into_the_open_period(pipeline):
    from decimal import Decimal

    receipt = GoodsReceipt(id="GR-L1", number="GR-L1", date=dt.date(2026, 5, 2), currency="AZN",
                           supplier="S1", warehouse="W1",
                           lines=(ReceiptLine(sku="L1", qty=Decimal(10), unit_cost=Decimal("2.00")),))
    late = Invoice(id="INV-L1", number="INV-L1", date=dt.date(2026, 5, 20), currency="AZN",
                   customer="C1", warehouse="W1", lines=(InvoiceLine(
                       line_no=1, sku="L1", qty=Decimal(1), unit_price=Decimal("10.00"),
                       vat_rate=Decimal(18)),))
    bootstrap, documents = pipeline.settings.kafka_bootstrap, pipeline.topic("documents")
    pipeline.start(workers=1)
    produce(bootstrap, documents, [encoded(receipt, 100)])
    pipeline.wait_for("the receipt posted", lambda: pipeline.query(
        "SELECT 1 FROM journal_entries WHERE document_number = 'GR-L1'"))

    assert "lock through 2026-05-31 requested by auditor" in _cli(
        pipeline, "period", "lock", "--through", "2026-05-31", "--by", "auditor")
    produce(bootstrap, documents, [encoded(late, 200)])
    listed = pipeline.wait_for("INV-L1 in `held list`", lambda: (
        lambda out: out if "invoice:INV-L1\tperiod_locked" in out else None)(
            _cli(pipeline, "held", "list")))
    assert "1 held" in listed
    assert not pipeline.query("SELECT 1 FROM journal_entries WHERE document_number = 'INV-L1'")

    _cli(pipeline, "held", "release", "invoice:INV-L1", "--by", "chief")
    dates = pipeline.wait_for("INV-L1 posted after the release", lambda: pipeline.query(
        "SELECT DISTINCT accounting_date FROM journal_entries WHERE document_number = 'INV-L1'"))
    assert dates == [(dt.date(2026, 6, 1),)]  # the first open day
    assert "0 held" in _cli(pipeline, "held", "list")

    audit = [SERDE.decode(m.value()) for m in read_topic(bootstrap, pipeline.topic("control"))]
    assert [(a["action"], a["actor"]) for a in audit] == [("lock", "auditor"), ("release", "chief")]
    assert all(a["at"] is not None and a["action_id"] for a in audit)

    _cli(pipeline, "period", "unlock", "--by", "auditor")
    pipeline.wait_for("the unlock audited", lambda: len(
        read_topic(bootstrap, pipeline.topic("control"))) == 3)
