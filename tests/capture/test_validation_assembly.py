"""The assembler with a validator: master data from CDC rows, service lines, invalid versions
rejected with the document kept, later documents flowing."""

from __future__ import annotations

from decimal import Decimal

from salesledger.streams.assembly import DocumentAssembler, DocumentEvent, DocumentRejected
from salesledger.streams.validation import DocumentValidator, MasterData
from tests.capture.test_assembly_rules import Tx, feed, header, line


def product(product_id: int, sku: str, kind: str = "goods") -> dict:
    return {"product_id": product_id, "sku": sku, "name": sku, "unit": "pcs",
            "vat_rate": Decimal("18.00"), "kind": kind, "active": True, "created_at": None}


def master_tx(xid: int, lsn: int, *products: dict) -> Tx:
    tx = (Tx(xid, lsn).row("units", "c", {"code": "pcs", "name": "pieces"})
          .row("customers", "c", {"customer_id": 1, "code": "C1", "name": "C", "tax_id": None,
                                  "payment_terms_days": 30, "vat_payer": False, "country": None,
                                  "created_at": None}))
    for row in products:
        tx.row("products", "c", row)
    return tx


def assembler() -> DocumentAssembler:
    return DocumentAssembler(validator=DocumentValidator(MasterData()))


def test_service_line_kind_comes_from_the_product_master_data():
    a = assembler()
    assert feed(a, master_tx(1, 100, product(1, "A"), product(2, "POST", "service"))) == []
    out = feed(a, Tx(2, 200).row("invoices", "c", header())
               .row("invoice_lines", "c", line(1, line_no=1, sku="A"))
               .row("invoice_lines", "c", line(2, line_no=2, sku="POST")))
    assert [type(e) for e in out] == [DocumentEvent]
    assert [l.kind for l in out[0].document.lines] == ["goods", "service"]


def test_unknown_sku_is_rejected_with_its_version_and_later_documents_flow():
    a = assembler()
    feed(a, master_tx(1, 100, product(1, "A")))
    bad = feed(a, Tx(2, 200).row("invoices", "c", header(1, "INV-1"))
               .row("invoice_lines", "c", line(1, 1, sku="GHOST")))
    assert len(bad) == 1 and isinstance(bad[0], DocumentRejected)
    assert bad[0].error.reason == "unknown_sku" and bad[0].key == "invoice:INV-1"
    assert bad[0].document is not None and bad[0].document.version == (200, 2)
    assert bad[0].document.document.lines[0].sku == "GHOST"
    good = feed(a, Tx(3, 300, previous_commit=200).row("invoices", "c", header(2, "INV-2"))
                .row("invoice_lines", "c", line(2, 2, sku="A")))
    assert [(type(e), e.key) for e in good] == [(DocumentEvent, "invoice:INV-2")]
    # the product arrives; the next change of INV-1 is valid and is emitted as a change
    feed(a, Tx(4, 400, previous_commit=300).row("products", "c", product(3, "GHOST")))
    fixed = feed(a, Tx(5, 500, previous_commit=400).row(
        "invoice_lines", "u", line(1, 1, sku="GHOST", qty="3"), before=line(1, 1, sku="GHOST")))
    assert [(type(e), e.operation) for e in fixed] == [(DocumentEvent, "changed")]


def test_deleted_product_makes_later_documents_invalid():
    a = assembler()
    feed(a, master_tx(1, 100, product(1, "A")))
    feed(a, Tx(2, 200, previous_commit=100).row("products", "d", before=product(1, "A")))
    out = feed(a, Tx(3, 300, previous_commit=200).row("invoices", "c", header())
               .row("invoice_lines", "c", line(1, sku="A")))
    assert isinstance(out[0], DocumentRejected) and out[0].error.reason == "unknown_sku"


def test_without_a_validator_nothing_is_checked():
    out = feed(DocumentAssembler(), Tx(2, 200).row("invoices", "c", header())
               .row("invoice_lines", "c", line(1, sku="GHOST")))
    assert [type(e) for e in out] == [DocumentEvent]
