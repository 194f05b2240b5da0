"""``salesledger reconcile`` against the test sales database (migrated first) and a fresh
accounting-store schema: the sales rows are inserted here, the ledger is what the posting engine
makes of the same documents, written through the sink writer. Matching rows give no difference
(exit 0); a posted invoice line changed in the sales database behind the pipeline's back, and a
journal entry removed from the store by its owner, are each named by document (exit 1).

Each test uses its own branch, warehouse, customer and SKU codes (a uuid suffix) and filters
``--customer`` on them, so rows of other tests in ``sales_test`` do not count.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import ROUND_HALF_UP, Decimal as D

import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.stack

DAY = dt.date(2041, 3, 2)
CENT = D("0.01")


def _r(x: D) -> D:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def sales_db(settings) -> str:
    """The test profile's sales database, migrated (idempotent)."""
    from salesledger.cli.salesdb import identifiers
    from salesledger.salesdb.migrations import migrate

    dsn = settings.dsn("sales", "owner")
    migrate(dsn, identifiers(settings))
    return dsn


class Scenario:
    """One set of documents, written both as sales rows and as engine documents."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.branch, self.warehouse, self.customer = f"RB-{tag}", f"RW-{tag}", f"RC-{tag}"
        self.sku_a, self.sku_b, self.service = f"RA-{tag}", f"RBB-{tag}", f"RSV-{tag}"
        self.inv1, self.inv2 = f"RINV1-{tag}", f"RINV2-{tag}"
        self.ret1, self.ret2, self.pay = f"RRET1-{tag}", f"RRET2-{tag}", f"RPAY-{tag}"
        # (line_no, sku, qty, unit_price, discount %, VAT %)
        self.inv1_lines = [(1, self.sku_a, D("10"), D("5.00"), D("0"), D("18")),
                           (2, self.sku_b, D("3"), D("19.99"), D("10"), D("18"))]
        self.inv2_lines = [(1, self.sku_a, D("2"), D("11.80"), D("0"), D("18")),
                           (2, self.service, D("1"), D("15.00"), D("0"), D("18"))]

    # ---------------------------------------------------------------- sales database rows
    def insert_sales_rows(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("INSERT INTO sales.branches (code, name) VALUES (%s, 'report test')",
                         (self.branch,))
            conn.execute("INSERT INTO sales.warehouses (code, name, branch_code) "
                         "VALUES (%s, 'report test', %s)", (self.warehouse, self.branch))
            conn.execute("INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') "
                         "ON CONFLICT DO NOTHING")
            for sku, kind in ((self.sku_a, "goods"), (self.sku_b, "goods"),
                              (self.service, "service")):
                conn.execute("INSERT INTO sales.products (sku, name, unit, vat_rate, kind) "
                             "VALUES (%s, 'report test', 'pcs', 18, %s)", (sku, kind))
            for number, incl, lines in ((self.inv1, False, self.inv1_lines),
                                        (self.inv2, True, self.inv2_lines)):
                (invoice_id,) = conn.execute(
                    """INSERT INTO sales.invoices (number, date, customer_code, warehouse_code,
                           prices_include_vat, payment_terms_days, status)
                       VALUES (%s, %s, %s, %s, %s, 30, 'posted') RETURNING invoice_id""",
                    (number, DAY, self.customer, self.warehouse, incl)).fetchone()
                for line_no, sku, qty, price, disc, vat in lines:
                    conn.execute(
                        """INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty,
                               unit_price, discount_percent, vat_rate)
                           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                        (invoice_id, line_no, sku, qty, price, disc, vat))
            for number, day, qty in ((self.ret1, DAY + dt.timedelta(days=3), D("2")),
                                     (self.ret2, DAY + dt.timedelta(days=5), D("8"))):
                (return_id,) = conn.execute(
                    """INSERT INTO sales.returns (number, date, customer_code, warehouse_code,
                           against_invoice_number, status)
                       VALUES (%s, %s, %s, %s, %s, 'posted') RETURNING return_id""",
                    (number, day, self.customer, self.warehouse, self.inv1)).fetchone()
                conn.execute("INSERT INTO sales.return_lines (return_id, line_no, sku, qty) "
                             "VALUES (%s, 1, %s, %s)", (return_id, self.sku_a, qty))
            (payment_id,) = conn.execute(
                """INSERT INTO sales.payments (number, date, customer_code, method, amount,
                       status) VALUES (%s, %s, %s, 'bank', 30.00, 'posted')
                   RETURNING payment_id""",
                (self.pay, DAY + dt.timedelta(days=6), self.customer)).fetchone()
            conn.execute("INSERT INTO sales.payment_allocations (payment_id, line_no, "
                         "invoice_number, amount) VALUES (%s, 1, %s, 30.00)",
                         (payment_id, self.inv1))

    def delete_sales_rows(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("DELETE FROM sales.invoices WHERE number IN (%s, %s)",
                         (self.inv1, self.inv2))
            conn.execute("DELETE FROM sales.returns WHERE number IN (%s, %s)",
                         (self.ret1, self.ret2))
            conn.execute("DELETE FROM sales.payments WHERE number = %s", (self.pay,))
            conn.execute("DELETE FROM sales.warehouses WHERE code = %s", (self.warehouse,))
            conn.execute("DELETE FROM sales.products WHERE sku IN (%s, %s, %s)",
                         (self.sku_a, self.sku_b, self.service))
            conn.execute("DELETE FROM sales.branches WHERE code = %s", (self.branch,))

    # ---------------------------------------------------------------- the ledger of them
    def ledger_facts(self) -> list:
        """What the posting engine posts for the same documents (opening stock first)."""
        from salesledger.ledger import LedgerSettings, LedgerState, engine, load_chart
        from salesledger.ledger.model import (Allocation, Invoice, InvoiceLine, OpeningBalance,
                                              OpeningStockLine, Payment, ReturnLine,
                                              SalesReturn)

        settings, chart = LedgerSettings(), load_chart("az-nas")
        common = {"currency": "AZN", "customer": self.customer, "warehouse": self.warehouse}

        def invoice(number: str, incl: bool, lines: list) -> Invoice:
            return Invoice(id=number, number=number, date=DAY, payment_terms_days=30,
                           prices_include_vat=incl, **common, lines=tuple(
                               InvoiceLine(line_no=n, sku=s, qty=q, unit_price=p,
                                           discount_percent=d, vat_rate=v,
                                           kind="service" if s == self.service else "goods")
                               for n, s, q, p, d, v in lines))

        documents = [
            OpeningBalance(id="ob", number="OPENING", date=DAY - dt.timedelta(days=1),
                           currency="AZN", stock=(
                               OpeningStockLine(sku=self.sku_a, warehouse=self.warehouse,
                                                qty=D("50"), unit_cost=D("3.00")),
                               OpeningStockLine(sku=self.sku_b, warehouse=self.warehouse,
                                                qty=D("10"), unit_cost=D("12.50")))),
            invoice(self.inv1, False, self.inv1_lines),
            invoice(self.inv2, True, self.inv2_lines),
            SalesReturn(id=self.ret1, number=self.ret1, date=DAY + dt.timedelta(days=3),
                        against=self.inv1, **common,
                        lines=(ReturnLine(sku=self.sku_a, qty=D("2")),)),
            SalesReturn(id=self.ret2, number=self.ret2, date=DAY + dt.timedelta(days=5),
                        against=self.inv1, **common,
                        lines=(ReturnLine(sku=self.sku_a, qty=D("8")),)),
            Payment(id=self.pay, number=self.pay, date=DAY + dt.timedelta(days=6),
                    currency="AZN", customer=self.customer, method="bank", amount=D("30.00"),
                    allocations=(Allocation(document=self.inv1, amount=D("30.00")),)),
        ]
        state, facts = LedgerState(), []
        for document in documents:
            state, result = engine.post(state, document, settings, chart)
            assert result.status == "posted", (document.number, result.status)
            facts += [*result.entries, *result.movements, *result.receivable_updates]
        return facts


def _reconcile(cli, store: str, customer: str, expect: int) -> dict:
    result = cli("reconcile", "--schema", store, "--from", "2041-03-01", "--to", "2041-03-31",
                 "--customer", customer, "--format", "json", expect=expect)
    return json.loads(result.stdout)


@pytest.fixture
def scenario(sales_db: str):
    case = Scenario()
    with psycopg.connect(sales_db, autocommit=True) as conn:
        case.insert_sales_rows(conn)
    yield case
    with psycopg.connect(sales_db, autocommit=True) as conn:
        case.delete_sales_rows(conn)


def test_reconcile_matching_rows_has_no_difference(scenario, store, write_ledger, cli) -> None:
    write_ledger(scenario.ledger_facts())
    report = _reconcile(cli, store, scenario.customer, expect=0)
    assert report["differences"] == []
    assert report["checked"]["invoices"] == 2 and report["checked"]["returns"] == 2
    assert report["checked"]["payments"] == 1 and report["checked"]["entries"] > 0
    # The source side, summed per day/branch/customer, against figures computed here.
    (day1,) = [g for g in report["groups"] if g["day"] == DAY.isoformat()]
    assert day1["branch"] == scenario.branch and day1["customer"] == scenario.customer
    net1 = sum(_r(q * p) - _r(_r(q * p) * d / 100) for _, _, q, p, d, _ in scenario.inv1_lines)
    vat1 = sum(_r((_r(q * p) - _r(_r(q * p) * d / 100)) * v / 100)
               for _, _, q, p, d, v in scenario.inv1_lines)
    gross2 = [_r(q * p) for _, _, q, p, _, _ in scenario.inv2_lines]  # VAT included
    vat2 = sum(_r(g * 18 / 118) for g in gross2)
    assert D(day1["source"]["invoiced_net"]) == net1 + sum(gross2) - vat2
    assert D(day1["source"]["invoiced_vat"]) == vat1 + vat2
    assert D(day1["source"]["goods_issued"]) == D("15")  # 10 + 3 + 2; the service moves none
    assert day1["source"] == day1["ledger"]
    returns = [g for g in report["groups"] if D(g["source"]["goods_returned"]) != 0]
    # The second return completes line 1 (10 sold): together they take its whole net and VAT.
    assert sum(D(g["source"]["returned_net"]) for g in returns) == D("50.00")
    assert sum(D(g["source"]["returned_vat"]) for g in returns) == D("9.00")


def test_reconcile_names_a_changed_invoice_line_and_a_removed_entry(
        scenario, store, write_ledger, cli, sales_db, owner_conn) -> None:
    write_ledger(scenario.ledger_facts())
    # 1. A posted invoice line changed in the sales database; the change never reaches the ledger.
    with psycopg.connect(sales_db, autocommit=True) as conn:
        conn.execute("""UPDATE sales.invoice_lines SET unit_price = 21.00
                         WHERE line_no = 2 AND invoice_id = (
                               SELECT invoice_id FROM sales.invoices WHERE number = %s)""",
                     (scenario.inv1,))
    report = _reconcile(cli, store, scenario.customer, expect=1)
    old_net, new_net = _r(3 * D("19.99")) - _r(_r(3 * D("19.99")) / 10), \
        _r(3 * D("21.00")) - _r(_r(3 * D("21.00")) / 10)
    diffs = {(d["check"], d["document"]): d for d in report["differences"]}
    assert set(diffs) == {("invoiced_net", scenario.inv1), ("invoiced_vat", scenario.inv1),
                          ("invoiced_gross", scenario.inv1)}
    net = diffs[("invoiced_net", scenario.inv1)]
    assert D(net["source"]) - D(net["ledger"]) == new_net - old_net
    assert net["day"] == DAY.isoformat() and net["branch"] == scenario.branch
    assert net["customer"] == scenario.customer

    # 2. The payment's journal entry removed from the store by its owner.
    with owner_conn.transaction():
        for table in ("journal_lines", "journal_entries"):
            owner_conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                sql.Identifier(store, table), sql.Identifier(f"{table}_append_only")))
        ids = [r[0] for r in owner_conn.execute(
            sql.SQL("SELECT entry_id FROM {} WHERE document_number = %s").format(
                sql.Identifier(store, "journal_entries")), (scenario.pay,)).fetchall()]
        assert ids
        owner_conn.execute(sql.SQL("DELETE FROM {} WHERE entry_id = ANY(%s)").format(
            sql.Identifier(store, "journal_lines")), (ids,))
        owner_conn.execute(sql.SQL("DELETE FROM {} WHERE entry_id = ANY(%s)").format(
            sql.Identifier(store, "journal_entries")), (ids,))
    report = _reconcile(cli, store, scenario.customer, expect=1)
    diffs = {(d["check"], d["document"]): d for d in report["differences"]}
    assert diffs[("paid", scenario.pay)]["source"] == "30.00"
    assert diffs[("paid", scenario.pay)]["ledger"] is None
    receivable = diffs[("receivable_account", scenario.inv1)]
    assert D(receivable["ledger"]) - D(receivable["source"]) == D("30.00")
    assert {doc for _, doc in diffs} == {scenario.inv1, scenario.pay}


def test_reconcile_table_output_and_exit_code(scenario, store, write_ledger, cli) -> None:
    def document(fact) -> str:
        return fact.by.number if hasattr(fact, "by") else fact.document.number

    # The payment never reached the store: its entry and receivable rows are missing.
    write_ledger([f for f in scenario.ledger_facts() if document(f) != scenario.pay])
    result = cli("reconcile", "--schema", store, "--from", "2041-03-01", "--to", "2041-03-31",
                 "--customer", scenario.customer, expect=1)
    assert "paid" in result.stdout and "30.00" in result.stdout
    assert "receivable_account" not in result.stdout  # store and subledger agree without it


def test_reconcile_marks_a_document_waiting_in_the_held_queue(
        scenario, store, write_ledger, cli) -> None:
    from salesledger.sinks.records import HeldEvent

    def document(fact) -> str:
        return fact.by.number if hasattr(fact, "by") else fact.document.number

    facts = [f for f in scenario.ledger_facts() if document(f) != scenario.inv2]
    held = HeldEvent(document_key=f"invoice:{scenario.inv2}", status="held",
                     reason="period_locked", version=1,
                     changed_at=dt.datetime(2041, 3, 2, 12, tzinfo=dt.timezone.utc))
    write_ledger([*facts, held])
    report = _reconcile(cli, store, scenario.customer, expect=1)
    assert {d["document"] for d in report["differences"]} == {scenario.inv2}
    assert {d["held"] for d in report["differences"]} == {"period_locked"}
    assert all(d["ledger"] is None for d in report["differences"])


def _remove_rows(owner_conn, store: str, where: str, params: tuple) -> list[str]:
    """As the store's owner: remove journal lines matching ``where`` (on journal_lines joined
    with journal_entries ``e``); returns the entry ids touched."""
    with owner_conn.transaction():
        owner_conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER journal_lines_append_only")
                           .format(sql.Identifier(store, "journal_lines")))
        rows = owner_conn.execute(sql.SQL(
            "DELETE FROM {l} l USING {e} e WHERE e.entry_id = l.entry_id AND " + where +
            " RETURNING l.entry_id").format(l=sql.Identifier(store, "journal_lines"),
                                            e=sql.Identifier(store, "journal_entries")),
            params).fetchall()
    return sorted({r[0] for r in rows})


def test_reconcile_checks_the_ledger_invariants(store, write_ledger, cli, owner_conn) -> None:
    from tests.reports.conftest import run_golden

    ledger = run_golden("G14-az-advance-and-vat-deposit.yaml")
    write_ledger(ledger.facts())
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"  # no sales document: only the invariants count

    def differences(expect: int) -> dict:
        result = cli("reconcile", "--schema", store, "--from", "2026-03-01", "--to",
                     "2026-03-31", "--customer", nobody, "--format", "json", expect=expect)
        return {(d["check"], d["document"]): d for d in json.loads(result.stdout)["differences"]}

    assert differences(0) == {}
    # The advance offset's lines on the advances account go: advances account <> Σ advances.
    _remove_rows(owner_conn, store, "e.kind = 'advance_offset' AND l.account = '543'", ())
    diffs = differences(1)
    advances = diffs[("advances_account", "")]
    assert advances["customer"] == "C10"
    assert (advances["source"], advances["ledger"]) == ("0.00", "100.00")
    assert diffs[("balanced", "INV-14")]["source"] == "0.00"  # Σ debit left: nothing
    # The opening balance's inventory line goes: inventory account <> Σ stock value.
    (sku, warehouse) = next((m.sku, m.warehouse) for m in ledger.movements
                            if m.kind == "opening_balance" or m.document.number == "OPENING")
    _remove_rows(owner_conn, store, "e.kind = 'opening_balance' AND l.account = '205'", ())
    diffs = differences(1)
    stock = diffs[("inventory_account", f"{sku}@{warehouse}")]
    assert D(stock["source"]) - D(stock["ledger"]) == sum(
        m.value for m in ledger.movements if m.document.number == "OPENING")
    assert ("balanced", "OPENING") in diffs


def test_reconcile_converts_another_currency_with_the_sales_rate(
        sales_db, store, write_ledger, cli) -> None:
    from salesledger.ledger import LedgerSettings, LedgerState, engine, load_chart
    from salesledger.ledger.model import (ExchangeRate, Invoice, InvoiceLine, OpeningBalance,
                                          OpeningStockLine)

    tag = uuid.uuid4().hex[:8]
    currency = "Q" + "".join(chr(65 + int(c, 16) % 26) for c in tag[:2])
    customer, warehouse, sku = f"FC-{tag}", f"FW-{tag}", f"FS-{tag}"
    rated, unrated = f"FINV1-{tag}", f"FINV2-{tag}"
    rate = D("1.7025")
    lines = [(1, sku, D("3"), D("19.99"), D("5"), D("18"))]
    with psycopg.connect(sales_db, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO sales.currency_rates (currency, date, rate) VALUES "
                     "(%s, %s, %s) ON CONFLICT DO NOTHING", (currency, DAY, rate))
        for number, day in ((rated, DAY), (unrated, DAY - dt.timedelta(days=1))):
            (invoice_id,) = conn.execute(
                """INSERT INTO sales.invoices (number, date, customer_code, warehouse_code,
                       currency, status) VALUES (%s, %s, %s, %s, %s, 'posted')
                   RETURNING invoice_id""", (number, day, customer, warehouse, currency)
            ).fetchone()
            conn.execute("""INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty,
                                unit_price, discount_percent, vat_rate)
                            VALUES (%s, 1, %s, 3, 19.99, 5, 18)""", (invoice_id, sku))
    try:
        settings, chart = LedgerSettings(), load_chart("az-nas")
        state, facts = LedgerState(), []
        state, result = engine.post(state, OpeningBalance(
            id="ob", number="OPENING", date=DAY - dt.timedelta(days=2), currency="AZN",
            stock=(OpeningStockLine(sku=sku, warehouse=warehouse, qty=D("9"),
                                    unit_cost=D("4.00")),)), settings, chart)
        facts += [*result.entries, *result.movements]
        state, _ = engine.set_rate(state, ExchangeRate(currency=currency, date=DAY, rate=rate),
                                   settings, chart)
        state, result = engine.post(state, Invoice(
            id=rated, number=rated, date=DAY, currency=currency, customer=customer,
            warehouse=warehouse, lines=tuple(
                InvoiceLine(line_no=n, sku=s, qty=q, unit_price=p, discount_percent=d,
                            vat_rate=v) for n, s, q, p, d, v in lines)), settings, chart)
        assert result.status == "posted"
        facts += [*result.entries, *result.movements, *result.receivable_updates]
        write_ledger(facts)
        report = _reconcile(cli, store, customer, expect=1)
        # The rated invoice matches: the SQL converted each figure with the sales rate.
        assert {(d["check"], d["document"]) for d in report["differences"]} == {
            ("exchange_rate", unrated), ("goods_issued", unrated)}
        (group,) = [g for g in report["groups"] if g["day"] == DAY.isoformat()]
        gross = _r(3 * D("19.99"))
        net_doc = gross - _r(gross * 5 / 100)
        assert D(group["source"]["invoiced_net"]) == _r(net_doc * rate)
        assert D(group["source"]["invoiced_vat"]) == _r(_r(net_doc * 18 / 100) * rate)
        assert group["source"] == group["ledger"]
    finally:
        with psycopg.connect(sales_db, autocommit=True) as conn:
            conn.execute("DELETE FROM sales.invoices WHERE number IN (%s, %s)", (rated, unrated))
            conn.execute("DELETE FROM sales.currency_rates WHERE currency = %s AND date = %s",
                         (currency, DAY))
