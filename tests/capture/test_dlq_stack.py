"""Validation and ``dlq retry`` on the real stack: SQL in the sales database -> Debezium ->
assembly (validation) -> posting -> sink -> accounting store, and the CLI as a process.

A master-data failure (unknown SKU) and a poison pill end as dead letters with the right reason
while later documents flow; after the missing product is inserted, ``dlq retry`` posts the
document once; a second retry, and a second publish of the same record, change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from salesledger.cli.dlq import StoredDeadLetter, _publish, decide_retry, fetch
from salesledger.streams.serde import AvroSerde
from salesledger.streams.validation import DocumentValidator
from tests.pipeline.conftest import (  # noqa: F401  (fixtures)
    captured_pipeline,
    pipeline,
    pipeline_factory,
    sales_dsn,
    unique,
)
from tests.pipeline.helpers import store_entries
from tests.pipeline.test_pipeline_smoke import MASTER_DATA, post_receipt_and_invoice

SALESLEDGER = str(Path(sys.executable).parent / "salesledger")


def post_invoice(conn, number: str, sku: str) -> None:
    """A posted invoice of 1 x ``sku`` at 40.00, 18 % VAT, customer PC1."""
    with conn.transaction():
        inv = conn.execute(
            "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, branch_code, "
            "payment_terms_days, status) VALUES (%s, '2026-03-03', 'PC1', 'PW1', 'PB1', 30, "
            "'posted') RETURNING invoice_id", (number,)).fetchone()[0]
        conn.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price, "
                     "vat_rate) VALUES (%s, 1, %s, 1, 40.00, 18)", (inv, sku))


def dlq(pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SALESLEDGER, "dlq", *args, "--schema", pipeline.schema],
                          env=pipeline.env, capture_output=True, text=True, timeout=300)


def letters(pipeline, **filters) -> list[StoredDeadLetter]:
    import psycopg

    with psycopg.connect(**pipeline.settings.conninfo("accounting", "owner"),
                         autocommit=True, connect_timeout=10) as conn:
        return fetch(conn, pipeline.schema, status="all", **filters)


@pytest.mark.stack
def test_master_data_failure_and_poison_pill_are_dead_letters_and_retry_posts_once(
        captured_pipeline, pg_connect):
    pipeline = captured_pipeline
    sales = pg_connect("sales")
    sales.execute(MASTER_DATA)
    pipeline.start(workers=1)
    receipt, first = unique("DQGR"), unique("DQINV")
    post_receipt_and_invoice(sales, receipt, first)

    ghost, ghost_invoice, later = unique("GHOST"), unique("DQINV"), unique("DQINV")
    post_invoice(sales, ghost_invoice, ghost)                      # unknown SKU
    cdc_invoices = f"{pipeline.prefix}.cdc.sales.invoices"
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap, "acks": "all"})
    producer.produce(cdc_invoices, key=b'{"payload": {"invoice_id": 1}}', value=b'{"amount": "abc"')
    assert producer.flush(30) == 0                                 # a poison pill
    post_invoice(sales, later, "PSKU1")                            # a valid later document

    pipeline.wait_for("entries of the documents before and after",
                      lambda: store_entries(pipeline, {first}) and store_entries(pipeline, {later}))
    dead = pipeline.wait_for("both dead letters in the store", lambda: (
        letters(pipeline, ident=f"invoice:{ghost_invoice}")
        and [d for d in letters(pipeline) if d.source_topic == cdc_invoices]))
    stored = letters(pipeline, ident=f"invoice:{ghost_invoice}")
    assert [(d.reason, d.status) for d in stored] == [("unknown_sku", "open")]
    assert stored[0].source_topic.endswith(f"#invoice:{ghost_invoice}")
    assert dead[0].reason in ("undecodable", "malformed_envelope", "converter_mismatch")
    assert not store_entries(pipeline, {ghost_invoice})

    listed = json.loads(dlq(pipeline, "list", "--format", "json").stdout)
    assert {d["id"] for d in listed} >= {stored[0].id, dead[0].id}
    shown = json.loads(dlq(pipeline, "show", stored[0].id, "--format", "json").stdout)
    assert shown[0]["document"]["number"] == ghost_invoice
    assert shown[0]["document"]["lines"][0]["sku"] == ghost

    still = dlq(pipeline, "retry", f"invoice:{ghost_invoice}")
    assert still.returncode == 1 and "still_invalid" in still.stdout, still.stdout + still.stderr
    assert dlq(pipeline, "retry", dead[0].id).returncode == 1      # a CDC record: not retryable

    # the fix: the product exists now (a service: sold without stock)
    sales.execute("INSERT INTO sales.products (sku, name, unit, vat_rate, kind) "
                  "VALUES (%s, 'Ghost service', 'pcs', 18, 'service')", (ghost,))
    done = dlq(pipeline, "retry", f"invoice:{ghost_invoice}")
    assert done.returncode == 0 and "publish" in done.stdout, done.stdout + done.stderr
    entries = pipeline.wait_for("the retried invoice's entries",
                                lambda: store_entries(pipeline, {ghost_invoice}))
    resolved = letters(pipeline, ident=f"invoice:{ghost_invoice}")
    assert [d.status for d in resolved] == ["resolved"]
    assert "published at" in resolved[0].resolution

    # a second retry changes nothing; nor does the same record published again (as after a
    # crash between publishing and resolving): posting deduplicates by document version
    assert dlq(pipeline, "retry", f"invoice:{ghost_invoice}").returncode == 1
    again = decide_retry(resolved[0], AvroSerde.for_settings(pipeline.settings), lambda _doc: DocumentValidator(
        _master_now(pipeline)))
    assert again.action == "publish" and again.event.document.lines[0].kind == "service"
    _publish(pipeline.settings, resolved[0], again.event, again.value)
    marker = unique("DQINV")
    post_invoice(sales, marker, "PSKU1")
    pipeline.wait_for("a document after the second publish",
                      lambda: store_entries(pipeline, {marker}))
    assert store_entries(pipeline, {ghost_invoice}) == entries
    revenue = pipeline.query("SELECT count(*) FROM journal_entries WHERE document_number = %s "
                             "AND kind = 'revenue'", (ghost_invoice,))
    assert revenue == [(1,)]
    cogs = pipeline.query("SELECT count(*) FROM journal_entries WHERE document_number = %s "
                          "AND kind = 'cogs'", (ghost_invoice,))
    assert cogs == [(0,)]  # a service line: no cost of sales, no stock
    assert pipeline.supervisor.poll() is None
    assert all(w["restarts"] == 0 for w in pipeline.workers()["workers"]), "no worker crashed"


def _master_now(pipeline):
    from salesledger.salesdb.master_data import connect_sales, load_master_data

    with connect_sales(pipeline.settings) as conn:
        return load_master_data(conn)
