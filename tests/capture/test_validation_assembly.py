"""The assembler with a validator: master data from CDC rows, service lines, invalid versions
rejected with the document kept, later documents flowing."""

from __future__ import annotations

from decimal import Decimal

from salesledger.streams.assembly import DocumentAssembler, DocumentEvent, DocumentRejected
from salesledger.streams.validation import DocumentValidator, MasterData
from tests.capture.test_assembly_rules import _TS, Tx, feed, header, line


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


def assembler(age_ms: int = 1000) -> DocumentAssembler:
    """An assembler with a validator whose clock says the fixtures' transactions are
    ``age_ms`` old (assembly rule 6 waits only for recent ones)."""
    a = DocumentAssembler(validator=DocumentValidator(MasterData()))
    a.clock_ms = lambda: _TS + age_ms
    return a


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


def customer(customer_id: int, code: str) -> dict:
    return {"customer_id": customer_id, "code": code, "name": code, "tax_id": None,
            "payment_terms_days": 30, "vat_payer": False, "country": None, "created_at": None}


def _new_customer_product_and_invoice() -> Tx:
    """One source transaction: a new customer, a new product and an invoice using both."""
    return (Tx(2, 200, previous_commit=100).row("customers", "c", customer(9, "NEWC"))
            .row("products", "c", product(9, "NEWSKU"))
            .row("invoices", "c", header(1, "INV-NEW", customer_code="NEWC"))
            .row("invoice_lines", "c", line(1, 1, sku="NEWSKU")))


def _in_order(a: DocumentAssembler, tx: Tx, order: list[int]) -> list:
    """Feed ``tx``'s END first, then its rows in ``order`` (as the topics may interleave)."""
    out = a.on_transaction(tx.end())
    for i in order:
        out += a.on_change(tx.events[i])
    return out


def test_master_data_of_the_same_transaction_is_applied_before_its_documents_are_validated():
    a = assembler()
    feed(a, master_tx(1, 100))
    # the document rows and the END arrive before the customer's and the product's rows
    out = _in_order(a, _new_customer_product_and_invoice(), [2, 3])
    assert out == [] and a.pending_transactions == 1  # waits for the announced master rows
    assert _in_order_rest(a, _new_customer_product_and_invoice(), [0]) == []
    out = _in_order_rest(a, _new_customer_product_and_invoice(), [1])
    assert [(type(e), e.key) for e in out] == [(DocumentEvent, "invoice:INV-NEW")]
    assert a.pending_transactions == 0


def _in_order_rest(a: DocumentAssembler, tx: Tx, order: list[int]) -> list:
    out = []
    for i in order:
        out += a.on_change(tx.events[i])
    return out


def test_master_rows_in_any_interleaving_never_dead_letter_their_transactions_document():
    import itertools

    for order in itertools.permutations(range(4)):
        a = assembler()
        feed(a, master_tx(1, 100))
        out = _in_order(a, _new_customer_product_and_invoice(), list(order))
        assert [(type(e), e.key) for e in out] == [(DocumentEvent, "invoice:INV-NEW")], order
        assert a.pending_transactions == 0


def test_a_later_row_of_the_master_table_releases_a_transaction_whose_row_compaction_removed():
    a = assembler()
    feed(a, master_tx(1, 100))
    tx = _new_customer_product_and_invoice()
    out = _in_order(a, tx, [1, 2, 3])  # the customer row was compacted away
    assert out == []
    # a later transaction's row of sales.customers (sequence[0] = our commit LSN): the topic is
    # past our transaction; its END follows ours
    later = Tx(3, 300, previous_commit=200).row("customers", "c", customer(9, "NEWC"))
    out = a.on_change(later.events[0])
    assert [(type(e), e.key) for e in out] == [(DocumentEvent, "invoice:INV-NEW")]
    assert a.on_transaction(later.end()) == [] and a.pending_transactions == 0


def test_an_old_transaction_replayed_from_history_never_waits_for_master_rows():
    from salesledger.streams.assembly import MASTER_WAIT_WINDOW_MS

    a = assembler(age_ms=MASTER_WAIT_WINDOW_MS)  # its rows may have been compacted away
    feed(a, master_tx(1, 100))
    out = _in_order(a, _new_customer_product_and_invoice(), [2, 3])
    assert len(out) == 1 and isinstance(out[0], DocumentRejected)
    assert out[0].error.reason == "unknown_customer" and a.pending_transactions == 0


def test_the_master_topics_compaction_lag_exceeds_the_wait_window():
    import yaml

    from salesledger.resources import resource_path
    from salesledger.streams.assembly import MASTER_WAIT_WINDOW_MS
    from salesledger.streams.validation import MASTER_TABLES

    topics = yaml.safe_load(resource_path("deploy/topics.yaml").read_text())["topics"]
    lags = {t["name"].split(".cdc.", 1)[1]: int(t["config"]["min.compaction.lag.ms"])
            for t in topics if t["name"].split(".cdc.", 1)[-1] in MASTER_TABLES}
    assert lags.keys() == MASTER_TABLES
    assert all(lag >= MASTER_WAIT_WINDOW_MS + 3600 * 1000 for lag in lags.values()), lags


def test_without_master_wait_the_document_is_validated_at_once():
    a = assembler()
    a.master_wait = False
    feed(a, master_tx(1, 100))
    out = _in_order(a, _new_customer_product_and_invoice(), [2, 3])
    assert len(out) == 1 and isinstance(out[0], DocumentRejected)
    assert out[0].error.reason == "unknown_customer"


def test_a_master_only_transaction_never_waits_and_leaves_nothing_pending():
    a = assembler()
    tx = master_tx(1, 100, product(1, "A"))
    assert a.on_transaction(tx.end()) == [] and a.pending_transactions == 0
    for event in tx.events:  # rows after their END was applied: re-deliveries, dropped
        assert a.on_change(event) == []
    assert a.pending_transactions == 0
