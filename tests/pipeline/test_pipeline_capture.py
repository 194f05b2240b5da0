"""The assembly stage on the real stack: a restart keeps what the assembler held (rebuild by
replay of the CDC topics), and a poison pill on a CDC topic is dead-lettered while the documents
around it post (CDC-14)."""

from __future__ import annotations

import os
import signal

import pytest
from confluent_kafka import Producer

from salesledger.streams.deadletter import (
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from salesledger.streams.documents import DocumentVersionEvent
from tests.pipeline.conftest import unique
from tests.pipeline.helpers import SERDE, documents_on_topic, group_lag, read_topic, store_entries
from tests.pipeline.test_pipeline_smoke import MASTER_DATA, post_receipt_and_invoice


def _documents(pipeline, numbers: set[str]) -> list[DocumentVersionEvent]:
    return [d for d in documents_on_topic(pipeline.settings.kafka_bootstrap,
                                          pipeline.topic("documents"))
            if isinstance(d, DocumentVersionEvent) and d.document.number in numbers]


@pytest.mark.stack
def test_assembly_restart_keeps_a_header_whose_lines_come_later(captured_pipeline, pg_connect):
    pipeline = captured_pipeline
    sales = pg_connect("sales")
    sales.execute(MASTER_DATA)
    pipeline.start(workers=1)
    receipt, first = unique("RGR"), unique("RINV")
    post_receipt_and_invoice(sales, receipt, first)
    pipeline.wait_for("the first documents", lambda: len(_documents(pipeline, {receipt, first})) == 2)

    number = unique("RLATE")
    invoice_id = sales.execute(
        "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, branch_code, "
        "status) VALUES (%s, '2026-03-05', 'PC1', 'PW1', 'PB1', 'posted') RETURNING invoice_id",
        (number,)).fetchone()[0]
    # the header's CDC offset must be committed by the assembly group before the kill
    cdc_invoices = f"{pipeline.prefix}.cdc.sales.invoices"
    pipeline.wait_for("header consumed and committed", lambda: group_lag(
        pipeline.settings.kafka_bootstrap, f"{pipeline.prefix}-assembly", cdc_invoices) == 0)
    pid = pipeline.worker_pid("assembly-0")
    os.kill(pid, signal.SIGKILL)
    pipeline.wait_for("assembly-0 restarted", lambda: pipeline.worker_pid("assembly-0") != pid)
    sales.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price, "
                  "vat_rate) VALUES (%s, 1, 'PSKU1', 1, 30.00, 18)", (invoice_id,))

    late = pipeline.wait_for("the late invoice as one whole document",
                             lambda: _documents(pipeline, {number}))
    assert len(late) == 1 and late[0].operation == "created"
    assert late[0].document.customer == "PC1" and len(late[0].document.lines) == 1
    # nothing emitted twice by the rebuild: the first two documents appear once each
    assert len(_documents(pipeline, {receipt, first})) == 2
    pipeline.wait_for("the late invoice's entries in the store",
                      lambda: store_entries(pipeline, {number}))


@pytest.mark.stack
def test_CDC_14_poison_pill_on_a_cdc_topic_is_dead_lettered_and_later_documents_post(
        captured_pipeline, pg_connect):
    pipeline = captured_pipeline
    sales = pg_connect("sales")
    sales.execute(MASTER_DATA)
    pipeline.start(workers=1)
    receipt, before = unique("PPGR"), unique("PPINV")
    post_receipt_and_invoice(sales, receipt, before)
    pipeline.wait_for("documents before the pill", lambda: len(_documents(pipeline, {receipt, before})) == 2)

    cdc_invoices = f"{pipeline.prefix}.cdc.sales.invoices"
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap, "acks": "all"})
    producer.produce(cdc_invoices, key=b'{"payload": {"invoice_id": 1}}', value=b'{"amount": "abc"')
    assert producer.flush(30) == 0
    after_receipt, after = unique("PPGR"), unique("PPINV")
    post_receipt_and_invoice(sales, after_receipt, after)

    pipeline.wait_for("documents after the pill",
                      lambda: len(_documents(pipeline, {after_receipt, after})) == 2)
    letters = pipeline.wait_for("the dead letter", lambda: [
        m for m in read_topic(pipeline.settings.kafka_bootstrap, pipeline.topic("dlq"))
        if dict(m.headers() or []).get(HEADER_SOURCE_TOPIC) == cdc_invoices.encode()])
    headers = dict(letters[0].headers())
    assert headers[HEADER_SOURCE_PARTITION] == b"0" and int(headers[HEADER_SOURCE_OFFSET]) >= 0
    assert headers[HEADER_REASON] in (b"undecodable", b"malformed_envelope", b"converter_mismatch")
    letter = SERDE.decode(letters[0].value())
    assert letter["value"] == b'{"amount": "abc"'  # original bytes kept for retry
    pipeline.wait_for("entries of the documents around the pill",
                      lambda: store_entries(pipeline, {before}) and store_entries(pipeline, {after}))
    pipeline.wait_for("assembly lag back to 0 on the poisoned topic", lambda: group_lag(
        pipeline.settings.kafka_bootstrap, f"{pipeline.prefix}-assembly", cdc_invoices) == 0)
    stored = pipeline.wait_for("the dead letter in the store", lambda: pipeline.query(
        "SELECT reason FROM dead_letters WHERE source_topic = %s", (cdc_invoices,)))
    assert stored[0][0] == headers[HEADER_REASON].decode()
    assert pipeline.supervisor.poll() is None
    assert all(w["restarts"] == 0 for w in pipeline.workers()["workers"]), "no worker crashed"
