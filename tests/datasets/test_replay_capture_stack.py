"""One day of Online Retail replayed through real capture: Debezium -> CDC topics -> document
assembly. Every posted document is emitted once as ``created``, edits as ``changed``,
cancelled duplicates as ``cancelled``, drafts never, all in the order the replay committed them;
and the assembled documents carry exactly what the (seeded, deterministic) plan wrote."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from salesledger.ledger.model import Invoice, Payment, SalesReturn

from tests.capture.conftest import start_capture, stop_capture

DAY = "2011-01-16"  # 646 lines: invoices, walk-in cash, returns, an edit, a duplicate
DOCUMENT_TABLES = ["invoices", "invoice_lines", "payments", "payment_allocations", "returns",
                   "return_lines", "goods_receipts", "goods_receipt_lines", "stock_write_offs",
                   "stock_write_off_lines"]
CONSUME_DEADLINE_S = 300.0


@pytest.mark.stack
def test_replayed_day_through_capture(settings, pg_connect, shared_csv, tmp_path):
    from typer.testing import CliRunner

    from salesledger.cli import app
    from salesledger.cli.load import build_plan
    from salesledger.cli.salesdb import identifiers
    from salesledger.datasets import store
    from salesledger.salesdb.migrations import migrate
    from salesledger.streams.assembly import DocumentAssembler, DocumentEvent
    from salesledger.streams.cdc import ChangeEvent, ChangeEventDecoder, TransactionEvent

    from .test_load_simulate_stack import _clean

    dsn = settings.dsn("sales", "owner")
    migrate(dsn, identifiers(settings))
    plan = build_plan(shared_csv, 1, dt.date.fromisoformat(DAY), 42)
    conn = pg_connect("sales", "owner")
    store.ensure_schema(conn, settings.reporting_role)
    _clean(conn, plan)
    expected = [(f"{s.kind}:{s.number}", {"post": "created", "edit_add_line": "changed",
                                          "cancel": "cancelled"}[s.action])
                for s in plan.steps if s.action in ("post", "edit_add_line", "cancel")]
    keys = {k for k, _ in expected}
    assert {op for _, op in expected} == {"created", "changed", "cancelled"}

    capture = start_capture(settings, dsn, "datasets-replay")
    reader = capture.reader(*DOCUMENT_TABLES)
    try:
        args = ["--path", str(shared_csv), "--days", "1", "--since", DAY, "--profile", "test"]
        runner = CliRunner()
        for command in (["load", "online-retail", *args],
                        ["simulate", "--dataset", "online-retail", *args, "--speed", "max"]):
            result = runner.invoke(app, command)
            assert result.exit_code == 0, (result.output, result.exception)
        decoder, assembler = ChangeEventDecoder(), DocumentAssembler(functional_currency="GBP")
        seen: list[DocumentEvent] = []
        fed = [0]

        def done(records) -> bool:
            for record in records[fed[0]:]:
                event = decoder.decode(record.key_bytes, record.value_bytes)
                out = []
                if isinstance(event, TransactionEvent):
                    out = assembler.on_transaction(event)
                elif isinstance(event, ChangeEvent):
                    out = assembler.on_change(event)
                seen.extend(e for e in out if isinstance(e, DocumentEvent) and e.key in keys)
            fed[0] = len(records)
            return len(seen) >= len(expected)

        reader.until(done, deadline_s=CONSUME_DEADLINE_S)
    finally:
        reader.close()
        stop_capture(capture, dsn)

    assert [(e.key, e.operation) for e in seen] == expected
    versions = [e.version for e in seen]
    assert versions == sorted(versions)

    final = {}
    for step in plan.steps:
        if step.action == "insert":
            final[f"{step.kind}:{step.number}"] = step.document
    added = {f"invoice:{s.number}": s.line for s in plan.steps if s.action == "edit_add_line"}
    for event in seen:
        planned = final[event.key]
        doc = event.document
        assert doc.currency == "GBP" and doc.date == planned.date
        if isinstance(doc, Invoice):
            lines = list(planned.lines)  # an edited invoice was inserted without its last line
            if event.operation == "changed":
                lines.append(added[event.key])
            assert doc.prices_include_vat is True and doc.customer == planned.header["customer_code"]
            assert doc.payment_terms_days == planned.header["payment_terms_days"]
            assert [(l.sku, l.qty, l.unit_price, l.vat_rate) for l in doc.lines] == \
                [(l["sku"], l["qty"], l["unit_price"], Decimal("20")) for l in lines]
        elif isinstance(doc, Payment):
            assert doc.amount == planned.header["amount"] and doc.method == planned.header["method"]
            assert [(a.document, a.amount) for a in doc.allocations] == \
                [(a["invoice_number"], a["amount"]) for a in planned.lines]
        elif isinstance(doc, SalesReturn):
            assert doc.against == planned.header["against_invoice_number"]
            assert [(l.sku, l.qty, l.line) for l in doc.lines] == \
                [(l["sku"], l["qty"], l["invoice_line_no"]) for l in planned.lines]
