"""The pipeline with SALESLEDGER_SERDE=registry on the real stack: every record the workers
write to the documents and ledger topics is Confluent-framed (magic byte 0 + a schema id the
running registry returns with our schema); a record of an unknown schema id on the documents
topic is dead-lettered (CDC-14) while later documents post; a new customer and product
inserted in the same source transaction as the documents using them post, no dead letter
(assembly rule 6)."""

from __future__ import annotations

import json
import struct
import urllib.request

import pytest
from confluent_kafka import Producer

from salesledger.streams.deadletter import HEADER_DOCUMENT_ID, HEADER_REASON, HEADER_SOURCE_TOPIC
from salesledger.streams.documents import DocumentVersionEvent
from salesledger.streams.serde import SchemaCatalog, fingerprint64
from tests.pipeline.conftest import unique
from tests.pipeline.helpers import documents_on_topic, read_topic, store_entries
from tests.pipeline.test_pipeline_smoke import MASTER_DATA


def _registry_fingerprint(registry_url: str, schema_id: int) -> int:
    with urllib.request.urlopen(f"{registry_url}/schemas/ids/{schema_id}", timeout=30) as reply:
        return fingerprint64(json.loads(json.loads(reply.read())["schema"]))


def _new_master_data_and_documents(sales, customer: str, sku: str, receipt: str,
                                   invoice: str) -> None:
    """One source transaction: a customer, a product, a goods receipt and an invoice of both."""
    with sales.transaction():
        sales.execute("INSERT INTO sales.customers (code, name, payment_terms_days) "
                      "VALUES (%s, 'Same-transaction customer', 14)", (customer,))
        sales.execute("INSERT INTO sales.products (sku, name, unit, vat_rate) "
                      "VALUES (%s, 'Same-transaction product', 'pcs', 18)", (sku,))
        gr = sales.execute(
            "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, "
            "status) VALUES (%s, '2026-03-02', 'PS1', 'PW1', 'posted') RETURNING goods_receipt_id",
            (receipt,)).fetchone()[0]
        sales.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, qty, "
                      "unit_cost, vat_rate) VALUES (%s, 1, %s, 5, 4.00, 18)", (gr, sku))
        inv = sales.execute(
            "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, "
            "branch_code, payment_terms_days, status) VALUES (%s, '2026-03-03', %s, 'PW1', "
            "'PB1', 14, 'posted') RETURNING invoice_id", (invoice, customer)).fetchone()[0]
        sales.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price, "
                      "vat_rate) VALUES (%s, 1, %s, 2, 10.00, 18)", (inv, sku))


@pytest.mark.stack
def test_registry_framing_on_the_pipeline_topics_and_same_transaction_master_data(
        captured_pipeline, pg_connect):
    pipeline = captured_pipeline
    settings, bootstrap = pipeline.settings, pipeline.settings.kafka_bootstrap
    sales = pg_connect("sales")
    sales.execute(MASTER_DATA)
    pipeline.env["SALESLEDGER_SERDE"] = "registry"
    pipeline.start(workers=1)

    # a poison pill first: Confluent framing, a schema id the registry has never given
    documents_topic = pipeline.topic("documents")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    pill = b"\x00" + struct.pack(">I", 2_000_000_000) + b"\x02\x00"
    producer.produce(documents_topic, key=b"invoice:GHOST", value=pill)
    assert producer.flush(30) == 0

    customer, sku = unique("RC"), unique("RSKU")
    receipt, invoice = unique("RGR"), unique("RINV")
    _new_master_data_and_documents(sales, customer, sku, receipt, invoice)
    pipeline.wait_for("both documents' entries in the store", lambda: len(pipeline.query(
        "SELECT DISTINCT document_number FROM journal_entries WHERE document_number = ANY(%s)",
        ([receipt, invoice],))) == 2)
    revenue = [(a, c) for e in store_entries(pipeline, {invoice}).values() for a, d, c in e
               if a == "601"]
    assert revenue == [("601", 20)]  # 2 x 10.00 net: the invoice posted, not dead-lettered

    # (the sales database is shared: other tests' documents pass through this pipeline too)
    letters = [dict(m.headers() or []) for m in read_topic(bootstrap, pipeline.topic("dlq"))]
    assert [h.get(HEADER_REASON) for h in letters
            if h.get(HEADER_SOURCE_TOPIC) == documents_topic.encode()] == [b"unknown_schema"]
    ours = {f"goods_receipt:{receipt}".encode(), f"invoice:{invoice}".encode()}
    assert not [h for h in letters if h.get(HEADER_DOCUMENT_ID) in ours], letters

    catalog = SchemaCatalog.from_directory()
    expected = {pipeline.topic("documents"): "sales_document",
                pipeline.topic("ledger.journal-entries"): "journal_entry",
                pipeline.topic("ledger.stock-movements"): "stock_movement",
                pipeline.topic("ledger.receivable-updates"): "receivable_update",
                pipeline.topic("dlq"): "dead_letter"}
    for topic, subject in expected.items():
        values = [m.value() for m in read_topic(bootstrap, topic)
                  if m.value() is not None and m.value() != pill]
        assert values, f"nothing on {topic}"
        ids = {struct.unpack(">I", v[1:5])[0] for v in values if v[0] == 0}
        assert all(v[0] == 0 for v in values), f"{topic}: not all Confluent-framed"
        assert {_registry_fingerprint(settings.registry_url, i) for i in ids} == {
            catalog.latest(subject).fingerprint}, topic

    documents = [d for d in documents_on_topic(bootstrap, documents_topic)
                 if isinstance(d, DocumentVersionEvent) and d.document.number in (receipt, invoice)]
    assert [d.document.number for d in documents] == [receipt, invoice]  # commit order
    assert documents[1].document.customer == customer
    assert pipeline.supervisor.poll() is None
    assert all(w["restarts"] == 0 for w in pipeline.workers()["workers"]), "no worker crashed"

    # the same transaction as the running Debezium wrote it, fed to a fresh assembler in the
    # worst order (END and document rows first, the master rows last): still no dead letter
    _replay_worst_order(pipeline, invoice, customer, sku)


def _replay_worst_order(pipeline, invoice: str, customer: str, sku: str) -> None:
    from salesledger.connect import cdc_topic_prefix
    from salesledger.streams.assembly import DocumentAssembler, DocumentEvent, DocumentRejected
    from salesledger.streams.cdc import ChangeEvent, ChangeEventDecoder, TransactionEvent
    from salesledger.streams.validation import DocumentValidator, MasterData

    prefix, decoder = cdc_topic_prefix(pipeline.prefix), ChangeEventDecoder()
    bootstrap = pipeline.settings.kafka_bootstrap

    def events(table: str) -> list:
        return [decoder.decode(m.key(), m.value())
                for m in read_topic(bootstrap, f"{prefix}.{table}")]

    headers = [e for e in events("sales.invoices")
               if isinstance(e, ChangeEvent) and e.after and e.after.value("number") == invoice]
    xid = headers[0].source.tx_id
    ours = {t: [e for e in events(f"sales.{t}") if isinstance(e, ChangeEvent)
                and e.source.tx_id == xid]
            for t in ("customers", "products", "goods_receipts", "goods_receipt_lines",
                      "invoices", "invoice_lines")}
    assert [e.after.value("code") for e in ours["customers"]] == [customer]
    assert [e.after.value("sku") for e in ours["products"]] == [sku]
    end = [e for e in events("transaction") if isinstance(e, TransactionEvent)
           and e.status == "END" and e.tx_id == xid]
    documents = [e for t in ("goods_receipts", "goods_receipt_lines", "invoices",
                             "invoice_lines") for e in ours[t]]

    def run(master_wait: bool) -> list:
        master = MasterData(units={"pcs"})
        assembler = DocumentAssembler(validator=DocumentValidator(master))
        assembler.master_wait = master_wait
        out = assembler.on_transaction(end[0])
        for event in documents + ours["customers"] + ours["products"]:
            out += assembler.on_change(event)
        return out

    out = run(master_wait=True)
    assert [type(e) for e in out] == [DocumentEvent, DocumentEvent], out
    # without assembly rule 6 the invoice (and the receipt) would have been dead letters
    assert {e.error.reason for e in run(master_wait=False) if isinstance(e, DocumentRejected)} \
        == {"unknown_customer", "unknown_sku"}
