"""Dead letters of validation on records the real Debezium produced (tests/fixtures), and the
pure part of ``dlq retry``: the stored payload is the document record, validated again."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from salesledger.cli.dlq import StoredDeadLetter, _position, decide_retry
from salesledger.streams.assembly import DocumentAssembler
from salesledger.streams.assembly_agent import DOCUMENTS_TOPIC, AssemblyProcessor
from salesledger.streams.deadletter import (
    HEADER_DOCUMENT_ID,
    HEADER_REASON,
    HEADER_SOURCE_TOPIC,
    DeadLetter,
)
from salesledger.streams.documents import decode_documents_record
from salesledger.streams.serde import AvroSerde
from salesledger.streams.validation import DocumentsView, DocumentValidator, MasterData, Product
from tests.pipeline.test_assembly_step import records

SERDE = AvroSerde()


def run(validator: DocumentValidator | None) -> list:
    processor = AssemblyProcessor(DocumentAssembler(validator=validator))
    return [out for offset, (topic, key, value) in enumerate(records())
            for out in processor.process(topic, 0, offset, key, value)]


def master_of(documents) -> MasterData:
    """Master data that makes every fixture document valid."""
    master = MasterData()
    master.put_unit("pcs")
    for doc in documents:
        if getattr(doc, "customer", None):
            master.put_customer(doc.customer)
        for line in getattr(doc, "lines", ()):
            rate = getattr(line, "vat_rate", None) or Decimal("18")
            master.put_product(Product(sku=line.sku, unit="pcs", vat_rate=rate))
    return master


def stored(letter: DeadLetter) -> StoredDeadLetter:
    now = dt.datetime.now(dt.UTC)
    return StoredDeadLetter(letter.source_topic, letter.source_partition, letter.source_offset,
                            letter.reason, letter.message, letter.error_type, letter.document_id,
                            letter.key, letter.value, letter.first_seen, "open", now, None, None)


def test_invalid_versions_are_dead_letters_carrying_the_document_record_and_retry_publishes():
    clean = [decode_documents_record(SERDE, o.value) for o in run(None)
             if o.topic == DOCUMENTS_TOPIC]
    active = {(e.key, e.version): e for e in clean if e.document.status == "active"}
    assert len(active) >= 5

    rejected = run(DocumentValidator(MasterData()))  # nothing known: every active version invalid
    passed = [decode_documents_record(SERDE, o.value) for o in rejected
              if o.topic == DOCUMENTS_TOPIC]
    assert passed == [e for e in clean if e.document.status != "active"]  # cancellations flow
    dead = [o for o in rejected if o.topic == "dlq"]
    letters = [DeadLetter.from_avro(SERDE.decode(o.value)) for o in dead]
    payloads = [decode_documents_record(SERDE, letter.value) for letter in letters]
    # nothing dropped: the payload is the document record the documents topic would have had
    assert {(e.key, e.version): e for e in payloads} == active
    for out, letter in zip(dead, letters):
        headers = dict(out.headers)
        assert headers[HEADER_REASON] in (b"unknown_customer", b"unknown_sku")
        assert headers[HEADER_DOCUMENT_ID] == out.key
        assert headers[HEADER_SOURCE_TOPIC].endswith(b"#" + out.key)
    assert len({(l.source_topic, l.source_offset) for l in letters}) == len(letters)

    fixed, invoices = master_of(e.document for e in active.values()), DocumentsView()
    for event in active.values():
        if event.document.doc_type == "invoice":
            invoices.observe(event.document, accepted=True)
    for letter, payload in zip(letters, payloads):
        decision = decide_retry(stored(letter), SERDE,
                                lambda _doc: DocumentValidator(fixed, invoices))
        assert decision.action == "publish", decision.detail
        assert decision.event == payload
        still = decide_retry(stored(letter), SERDE, lambda _doc: DocumentValidator(MasterData()))
        assert still.action == "still_invalid" and still.detail.startswith(letter.reason)


def test_a_cdc_record_dead_letter_is_not_retryable():
    topic, key, _ = records()[0]
    letter = DeadLetter(reason="undecodable", message="garbage", source_topic=topic,
                        source_partition=0, source_offset=3, document_id=None, key=key,
                        value=b'{"payload": {"amount": "abc"', first_seen=dt.datetime.now(dt.UTC))
    decision = decide_retry(stored(letter), SERDE, lambda _doc: DocumentValidator(MasterData()))
    assert decision.action == "not_retryable"


def test_ids_are_store_positions_or_document_ids():
    assert _position("sl.cdc.transaction#invoice:INV/2026/1/0/42") == (
        "sl.cdc.transaction#invoice:INV/2026/1", 0, 42)
    assert _position("sl.documents/0/7") == ("sl.documents", 0, 7)
    assert _position("invoice:INV-1") is None
    assert _position("invoice:INV/1") is None


def test_retry_takes_the_line_kind_from_the_master_data_now():
    from tests.ledger.helpers import invoice

    from salesledger.streams.assembly import DocumentEvent
    from salesledger.streams.documents import DOCUMENT_SUBJECT, document_datum

    doc = invoice(lines=(("POST", "1", "9.00", "18"),))
    event = DocumentEvent(key=doc.key, operation="created", version=(10, 1), document=doc,
                          source=doc.source)
    value = SERDE.encode(DOCUMENT_SUBJECT, document_datum(event))
    letter = DeadLetter(reason="unknown_sku", message="m", source_topic="t#" + doc.key,
                        source_partition=0, source_offset=1, document_id=doc.key,
                        key=doc.key.encode(), value=value, first_seen=dt.datetime.now(dt.UTC))
    master = MasterData()
    master.put_customer("C1")
    master.put_unit("pcs")
    master.put_product(Product(sku="POST", unit="pcs", vat_rate=Decimal("18"), kind="service"))
    decision = decide_retry(stored(letter), SERDE, lambda _doc: DocumentValidator(master))
    assert decision.action == "publish" and decision.value != value
    published = decode_documents_record(SERDE, decision.value)
    assert published.version == (10, 1) and published.document.lines[0].kind == "service"
    assert published == decision.event
