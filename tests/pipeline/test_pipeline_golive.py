"""Go-live on a sales database with history, through the whole pipeline on the real stack.

History (receipts, invoices with a service line, a cancelled and a draft invoice, payments with
and without allocations, a return, a write-off) is written by SQL in this test's own branch and
warehouse; ``salesledger golive --date D --branch B`` posts the opening balance; the pipeline runs
with ``golive_date: D``; then documents after D arrive (and one back-dated to D). Asserted: the
opening stock per SKU and warehouse (FIFO remainder), the receivable per invoice and the advances
per customer equal what independent SQL over the source computes; no journal entry of a document
dated on or before D except the opening balance; those documents are ``before_golive`` dead
letters; the documents after D are posted and the ledger checks clean. The invoices that can
still be returned are taken over (a reference document posting no entry), and returns after D
of part of their quantities post: against the opening item of a partly paid invoice, as an
advance for one paid after go-live, the goods back at the cost they left stock at (FIFO). A
document posted after D and then edited to D is reversed and dead-lettered ``before_golive``.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg
import pytest

from salesledger.ledger.charts import load_chart
from tests.pipeline.conftest import REPO

D = dt.date(2019, 6, 10)  # far from every other test's dates


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


class Sales:
    """Inserts posted documents of this test's branch into the sales database."""

    def __init__(self, conn: psycopg.Connection, tag: str) -> None:
        self.conn, self.tag = conn, tag
        self.branch, self.warehouse = f"BG{tag}", f"WG{tag}"

    def code(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def master_data(self) -> None:
        c = self.conn
        c.execute("INSERT INTO sales.branches (code, name) VALUES (%s, 'golive')", (self.branch,))
        c.execute("INSERT INTO sales.warehouses (code, name, branch_code) VALUES (%s, 'golive', %s)",
                  (self.warehouse, self.branch))
        c.execute("INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') ON CONFLICT DO NOTHING")
        c.execute("INSERT INTO sales.suppliers (code, name) VALUES (%s, 'golive')", (self.code("S"),))
        for name in ("C1", "C2", "C3"):
            c.execute("INSERT INTO sales.customers (code, name, payment_terms_days) VALUES (%s, 'golive', 30)",
                      (self.code(name),))
        for name, kind in (("P1", "goods"), ("P2", "goods"), ("SV", "service")):
            c.execute("INSERT INTO sales.products (sku, name, unit, vat_rate, kind) VALUES (%s, 'golive', 'pcs', 18, %s)",
                      (self.code(name), kind))

    def receipt(self, number: str, date: dt.date, lines) -> str:
        number = self.code(number)
        with self.conn.transaction():
            gid = self.conn.execute(
                "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, status)"
                " VALUES (%s, %s, %s, %s, 'posted') RETURNING goods_receipt_id",
                (number, date, self.code("S"), self.warehouse)).fetchone()[0]
            for i, (sku, qty, cost) in enumerate(lines, start=1):
                self.conn.execute("INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, qty,"
                                  " unit_cost, vat_rate) VALUES (%s, %s, %s, %s, %s, 18)",
                                  (gid, i, self.code(sku), qty, cost))
        return number

    def invoice(self, number: str, date: dt.date, customer: str, lines, status: str = "posted") -> str:
        number = self.code(number)
        with self.conn.transaction():
            iid = self.conn.execute(
                "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, branch_code,"
                " payment_terms_days, status) VALUES (%s, %s, %s, %s, %s, 30, %s) RETURNING invoice_id",
                (number, date, self.code(customer), self.warehouse, self.branch, status)).fetchone()[0]
            for i, (sku, qty, price) in enumerate(lines, start=1):
                self.conn.execute("INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price,"
                                  " vat_rate) VALUES (%s, %s, %s, %s, %s, 18)", (iid, i, self.code(sku), qty, price))
        return number

    def payment(self, number: str, date: dt.date, customer: str, amount: str, allocations=()) -> str:
        number = self.code(number)
        with self.conn.transaction():
            pid = self.conn.execute(
                "INSERT INTO sales.payments (number, date, customer_code, branch_code, method, amount, status)"
                " VALUES (%s, %s, %s, %s, 'bank', %s, 'posted') RETURNING payment_id",
                (number, date, self.code(customer), self.branch, amount)).fetchone()[0]
            for i, (invoice, part) in enumerate(allocations, start=1):
                self.conn.execute("INSERT INTO sales.payment_allocations (payment_id, line_no, invoice_number,"
                                  " amount) VALUES (%s, %s, %s, %s)", (pid, i, self.code(invoice), part))
        return number

    def sales_return(self, number: str, date: dt.date, customer: str, against: str, lines) -> str:
        number = self.code(number)
        with self.conn.transaction():
            rid = self.conn.execute(
                "INSERT INTO sales.returns (number, date, customer_code, warehouse_code, against_invoice_number,"
                " status) VALUES (%s, %s, %s, %s, %s, 'posted') RETURNING return_id",
                (number, date, self.code(customer), self.warehouse, self.code(against))).fetchone()[0]
            for i, (sku, qty) in enumerate(lines, start=1):
                self.conn.execute("INSERT INTO sales.return_lines (return_id, line_no, sku, qty) VALUES (%s, %s, %s, %s)",
                                  (rid, i, self.code(sku), qty))
        return number

    def write_off(self, number: str, date: dt.date, lines) -> str:
        number = self.code(number)
        with self.conn.transaction():
            wid = self.conn.execute(
                "INSERT INTO sales.stock_write_offs (number, date, warehouse_code, reason, status)"
                " VALUES (%s, %s, %s, 'damaged', 'posted') RETURNING stock_write_off_id",
                (number, date, self.warehouse)).fetchone()[0]
            for i, (sku, qty) in enumerate(lines, start=1):
                self.conn.execute("INSERT INTO sales.stock_write_off_lines (stock_write_off_id, line_no, sku, qty)"
                                  " VALUES (%s, %s, %s, %s)", (wid, i, self.code(sku), qty))
        return number


# ---- the source's totals as of D, by SQL independent of salesledger.golive -------------------

FIFO_STOCK_SQL = """
WITH moves AS (
  SELECT l.sku, l.qty FROM sales.goods_receipt_lines l JOIN sales.goods_receipts g USING (goods_receipt_id)
   WHERE g.status = 'posted' AND g.date <= %(d)s AND g.warehouse_code = %(w)s
  UNION ALL
  SELECT l.sku, -l.qty FROM sales.invoice_lines l JOIN sales.invoices i USING (invoice_id)
    JOIN sales.products p ON p.sku = l.sku
   WHERE i.status = 'posted' AND i.date <= %(d)s AND i.warehouse_code = %(w)s AND p.kind = 'goods'
  UNION ALL
  SELECT l.sku, l.qty FROM sales.return_lines l JOIN sales.returns r USING (return_id)
   WHERE r.status = 'posted' AND r.date <= %(d)s AND r.warehouse_code = %(w)s
  UNION ALL
  SELECT l.sku, -l.qty FROM sales.stock_write_off_lines l JOIN sales.stock_write_offs o USING (stock_write_off_id)
   WHERE o.status = 'posted' AND o.date <= %(d)s AND o.warehouse_code = %(w)s),
on_hand AS (SELECT sku, sum(qty) AS qty FROM moves GROUP BY sku),
layers AS (
  SELECT l.sku, l.qty, l.unit_cost,
         sum(l.qty) OVER (PARTITION BY l.sku ORDER BY g.date DESC, g.number DESC, l.line_no DESC) AS newer_incl
    FROM sales.goods_receipt_lines l JOIN sales.goods_receipts g USING (goods_receipt_id)
   WHERE g.status = 'posted' AND g.date <= %(d)s AND g.warehouse_code = %(w)s)
SELECT y.sku, sum(least(y.qty, h.qty - (y.newer_incl - y.qty))),
       sum(round(least(y.qty, h.qty - (y.newer_incl - y.qty)) * y.unit_cost, 2))
  FROM layers y JOIN on_hand h USING (sku)
 WHERE h.qty > 0 AND y.newer_incl - y.qty < h.qty
 GROUP BY y.sku ORDER BY y.sku
"""

# prices exclude VAT, no discounts: gross of a line = net + round(net x 18 %)
_GROSS = "(round(q * p, 2) + round(round(q * p, 2) * 0.18, 2))"
RECEIVABLES_SQL = f"""
WITH inv AS (
  SELECT i.number, i.customer_code, i.date + i.payment_terms_days AS due,
         sum({_GROSS.replace('q', 'l.qty').replace('p', 'l.unit_price')}) AS gross
    FROM sales.invoices i JOIN sales.invoice_lines l USING (invoice_id)
   WHERE i.status = 'posted' AND i.date <= %(d)s AND i.branch_code = %(b)s GROUP BY 1, 2, 3),
paid AS (
  SELECT a.invoice_number AS number, sum(a.amount) AS amount FROM sales.payment_allocations a
    JOIN sales.payments p USING (payment_id) WHERE p.status = 'posted' AND p.date <= %(d)s GROUP BY 1),
returned AS (
  SELECT r.against_invoice_number AS number,
         sum({_GROSS.replace('q', 'rl.qty').replace('p', 'il.unit_price')}) AS amount
    FROM sales.returns r JOIN sales.return_lines rl USING (return_id)
    JOIN sales.invoices i ON i.number = r.against_invoice_number
    JOIN sales.invoice_lines il ON il.invoice_id = i.invoice_id AND il.sku = rl.sku
   WHERE r.status = 'posted' AND r.date <= %(d)s GROUP BY 1)
SELECT inv.number, inv.customer_code, inv.due, inv.gross - coalesce(paid.amount, 0) - coalesce(returned.amount, 0)
  FROM inv LEFT JOIN paid USING (number) LEFT JOIN returned USING (number)
 ORDER BY inv.number
"""

ADVANCES_SQL = """
SELECT p.customer_code, sum(p.amount - coalesce((
         SELECT sum(a.amount) FROM sales.payment_allocations a JOIN sales.invoices i ON i.number = a.invoice_number
          WHERE a.payment_id = p.payment_id AND i.status = 'posted' AND i.date <= %(d)s), 0))
  FROM sales.payments p WHERE p.status = 'posted' AND p.date <= %(d)s AND p.branch_code = %(b)s
 GROUP BY 1 ORDER BY 1
"""


@pytest.mark.stack
def test_golive_posts_opening_balances_then_only_later_documents(captured_pipeline, pg_connect, tmp_path):
    pipeline = captured_pipeline
    s = Sales(pg_connect("sales"), uuid.uuid4().hex[:6])
    s.master_data()
    history = [
        s.receipt("GR1", day(-9), [("P1", 10, "2.00"), ("P2", 5, "3.00")]),
        s.invoice("INV1", day(-8), "C1", [("P1", 4, "5.00"), ("SV", 1, "1.00")]),
        s.receipt("GR2", day(-7), [("P1", 6, "2.50")]),
        s.invoice("INV2", day(-6), "C2", [("P1", 3, "5.00"), ("P2", 1, "6.00")]),
        s.invoice("INV3", day(-5), "C1", [("P2", 1, "6.00")]),
        s.payment("PAY1", day(-5), "C1", "10.00", [("INV1", "8.00")]),
        s.payment("PAY2", day(-4), "C3", "7.00"),
        s.sales_return("RET1", day(-3), "C2", "INV2", [("P1", 1)]),
        s.write_off("WO1", D, [("P2", 1)]),
    ]
    s.conn.execute("UPDATE sales.invoices SET status = 'cancelled' WHERE number = %s", (s.code("INV3"),))
    s.invoice("INV4", day(-2), "C2", [("P2", 1, "6.00")], status="draft")  # never postable

    # each invoice's lines (qty, price) and each receipt's lines (qty, cost), for the expected figures
    sold = {(n, sku): (Decimal(q), Decimal(p)) for n, sku, q, p in s.conn.execute(
        "SELECT i.number, l.sku, l.qty, l.unit_price FROM sales.invoice_lines l JOIN sales.invoices i"
        " USING (invoice_id) WHERE i.branch_code = %s", (s.branch,))}
    ledger_file = tmp_path / "ledger.yaml"
    ledger_file.write_text(f"golive_date: '{D.isoformat()}'\n")
    pipeline.env["SALESLEDGER_PIPELINE_LEDGER_SETTINGS_FILE"] = str(ledger_file)
    run = subprocess.run([str(Path(sys.executable).parent / "salesledger"), "golive", "--date", D.isoformat(),
                          "--branch", s.branch, "--json"], env=pipeline.env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    ob = summary["number"]
    assert ob == f"OB-golive-{D}" and summary["posted_to"] == pipeline.topic("documents")
    # INV1 and INV2 can still be returned (INV3 cancelled, INV4 a draft): one reference document
    assert (summary["invoices_taken_over"], summary["reference_documents"]) == (2, 1)
    refs = f"{ob}-invoices-1"
    # the source's totals as of D, at go-live (a document back-dated later is not in them)
    sales = s.conn
    expected_stock = {(sku, s.warehouse): (Decimal(q), Decimal(v)) for sku, q, v in
                      sales.execute(FIFO_STOCK_SQL, {"d": D, "w": s.warehouse}).fetchall()}
    expected_items = {(n, c, due, Decimal(a)) for n, c, due, a in
                      sales.execute(RECEIVABLES_SQL, {"d": D, "b": s.branch}).fetchall() if a > 0}
    expected_advances = {c: Decimal(a) for c, a in sales.execute(ADVANCES_SQL, {"d": D, "b": s.branch}) if a > 0}

    pipeline.start(workers=1)
    after = [s.receipt("GR4", day(1), [("P1", 2, "3.00")]),
             s.invoice("INV5", day(2), "C3", [("P1", 5, "5.00")]),
             s.payment("PAY3", day(2), "C2", "18.88", [("INV2", "18.88")])]
    late = s.invoice("INV6", D, "C2", [("P2", 1, "6.00")])  # entered after go-live, dated D

    refused = set(history) | {late}
    pipeline.wait_for("every document before go-live dead-lettered as before_golive", lambda: refused <= {
        r[0].split(":", 1)[1] for r in pipeline.query(
            "SELECT document_id FROM dead_letters WHERE reason = 'before_golive'")})
    pipeline.wait_for("the documents after go-live posted", lambda: set(after) <= {
        r[0] for r in pipeline.query("SELECT DISTINCT document_number FROM journal_entries")})

    # stock per SKU and warehouse: FIFO remainder of the source
    stored_stock = {(sku, wh): (Decimal(q), Decimal(v)) for sku, wh, q, v in pipeline.query(
        "SELECT sku, warehouse, sum(quantity), sum(value) FROM stock_ledger WHERE by_number = %s"
        " AND kind = 'opening' GROUP BY 1, 2", (ob,))}
    assert stored_stock == expected_stock
    assert expected_stock == {(s.code("P1"), s.warehouse): (Decimal(10), Decimal("23.00")),  # 6@2.50 + 4@2.00
                              (s.code("P2"), s.warehouse): (Decimal(3), Decimal("9.00"))}
    # receivables per invoice (with due dates) and advances per customer
    stored_items = {(n, c, due, Decimal(a)) for n, c, due, a in pipeline.query(
        "SELECT document_number, customer, due_date, sum(amount) FROM receivable_items"
        " WHERE by_number = %s GROUP BY 1, 2, 3", (ob,))}
    assert stored_items == expected_items and len(expected_items) == 2  # INV1, INV2
    stored_advances = {c: Decimal(a) for c, a in pipeline.query(
        "SELECT customer, sum(amount) FROM advances WHERE by_number = %s GROUP BY 1", (ob,))}
    assert stored_advances == expected_advances == {s.code("C1"): Decimal("2.00"), s.code("C3"): Decimal("7.00")}

    # nothing dated on or before D is in the journal but the opening balance
    ours = [s.code(n) for n in ("GR1", "INV1", "GR2", "INV2", "INV3", "PAY1", "PAY2", "RET1", "WO1", "INV4",
                                "GR4", "INV5", "PAY3", "INV6")] + [ob]
    rows = pipeline.query("SELECT document_number, accounting_date, kind FROM journal_entries"
                          " WHERE document_number = ANY(%s)", (ours,))
    early = {(n, k) for n, d, k in rows if d <= D}
    assert early and {n for n, _ in early} == {ob} and {k for _, k in early} == {"opening_balance"}
    assert {n for n, _, _ in rows} == {ob, *after}
    # after go-live: PAY3 settles the opening item of INV2 (24.78 - 5.90 returned), INV5 (29.50)
    # draws on C3's opening advance (7.00)
    pipeline.wait_for("PAY3 and INV5 settled against the opening balance", lambda: pipeline.query(
        "SELECT (SELECT sum(amount) FROM receivable_items WHERE document_number = %s),"
        " (SELECT sum(amount) FROM advances WHERE customer = %s)", (s.code("INV2"), s.code("C3")))[0] == (0, 0))

    # returns after go-live against invoices taken over, partial quantities: RET2 takes 1 of
    # INV1's 4 P1 back (INV1 open at go-live: 16.78) -> its opening item; RET3 takes INV2's P2
    # back, INV2 being settled by PAY3 after go-live -> an advance of C2
    returns = [s.sales_return("RET2", day(3), "C1", "INV1", [("P1", 1)]),
               s.sales_return("RET3", day(4), "C2", "INV2", [("P2", 1)])]
    pipeline.wait_for("both returns posted", lambda: set(returns) <= {
        r[0] for r in pipeline.query("SELECT DISTINCT document_number FROM journal_entries")})
    assert not pipeline.query("SELECT 1 FROM journal_entries WHERE document_number = %s", (refs,))
    chart = load_chart("az-nas")
    role = {chart.account(r): r for r in ("sales_returns", "vat_payable", "receivable", "customer_advances",
                                          "inventory", "cost_of_sales")}
    assert len(role) == 6

    def lines_of(number):
        out: dict[tuple, Decimal] = {}
        for kind, account, debit, credit, item, date in pipeline.query(
                "SELECT e.kind, l.account, l.debit, l.credit, coalesce(l.open_item, l.advance), e.accounting_date"
                " FROM journal_entries e JOIN journal_lines l USING (entry_id) WHERE e.document_number = %s",
                (number,)):
            assert date > D
            key = (kind, role[account], item)
            out[key] = out.get(key, Decimal(0)) + debit - credit
        return out

    def money(qty, price):  # the invoice's rule: net = round(q x p), VAT 18 % of it (HALF_UP)
        cent = Decimal("0.01")
        net = (qty * price).quantize(cent, ROUND_HALF_UP)
        return net, (net * Decimal("0.18")).quantize(cent, ROUND_HALF_UP)

    cost_p1 = Decimal(s.conn.execute(  # INV1 is P1's first issue: FIFO takes GR1's units
        "SELECT l.unit_cost FROM sales.goods_receipt_lines l JOIN sales.goods_receipts g USING (goods_receipt_id)"
        " WHERE g.number = %s AND l.sku = %s", (s.code("GR1"), s.code("P1"))).fetchone()[0])
    cost_p2 = Decimal(s.conn.execute(
        "SELECT l.unit_cost FROM sales.goods_receipt_lines l JOIN sales.goods_receipts g USING (goods_receipt_id)"
        " WHERE g.number = %s AND l.sku = %s", (s.code("GR1"), s.code("P2"))).fetchone()[0])
    net, vat = money(Decimal(1), sold[(s.code("INV1"), s.code("P1"))][1])
    assert lines_of(returns[0]) == {
        ("return", "sales_returns", None): net, ("return", "vat_payable", None): vat,
        ("return", "receivable", s.code("INV1")): -(net + vat),
        ("return_cogs", "inventory", None): round(cost_p1, 2), ("return_cogs", "cost_of_sales", None): -round(cost_p1, 2)}
    open_inv1 = next(a for n, _, _, a in expected_items if n == s.code("INV1"))
    assert pipeline.query("SELECT sum(amount) FROM receivable_items WHERE document_number = %s",
                          (s.code("INV1"),))[0][0] == open_inv1 - net - vat
    net, vat = money(Decimal(1), sold[(s.code("INV2"), s.code("P2"))][1])
    assert lines_of(returns[1]) == {
        ("return", "sales_returns", None): net, ("return", "vat_payable", None): vat,
        ("return", "customer_advances", returns[1]): -(net + vat),
        ("return_cogs", "inventory", None): round(cost_p2, 2), ("return_cogs", "cost_of_sales", None): -round(cost_p2, 2)}
    assert pipeline.query("SELECT sum(amount) FROM advances WHERE customer = %s",
                          (s.code("C2"),))[0][0] == net + vat
    restocked = pipeline.query("SELECT by_number, sku, quantity, value FROM stock_ledger WHERE by_number = ANY(%s)"
                               " AND kind = 'return' ORDER BY by_number", (returns,))
    assert [(n, k, Decimal(q), Decimal(v)) for n, k, q, v in restocked] == [
        (returns[0], s.code("P1"), 1, round(cost_p1, 2)), (returns[1], s.code("P2"), 1, round(cost_p2, 2))]
    ours += returns

    # INV5, posted after go-live (day 2), edited to D: its posting is reversed on its own date and
    # the new version is a before_golive dead letter; C3's opening advance is whole again
    inv5 = s.code("INV5")
    s.conn.execute("UPDATE sales.invoices SET date = %s WHERE number = %s", (D, inv5))
    pipeline.wait_for("INV5 withdrawn: a before_golive dead letter", lambda: pipeline.query(
        "SELECT 1 FROM dead_letters WHERE reason = 'before_golive' AND document_id = %s", (f"invoice:{inv5}",)))
    entries = pipeline.wait_for("INV5's entries reversed (the sinks may lag the dead letter)", lambda: (
        lambda rows: rows if {r for k, _, _, r in rows if k == "reversal"} == {e for k, _, e, _ in rows
                                                                               if k != "reversal"} else None)(pipeline.query(
            "SELECT kind, accounting_date, entry_id, reverses FROM journal_entries WHERE document_number = %s",
            (inv5,))))
    posted = {e for k, _, e, _ in entries if k != "reversal"}
    assert posted and {r for k, _, _, r in entries if k == "reversal"} == posted
    assert {d for _, d, _, _ in entries} == {day(2)}
    net = pipeline.query("SELECT l.account, sum(l.debit - l.credit) FROM journal_entries e JOIN journal_lines l"
                         " USING (entry_id) WHERE e.document_number = %s GROUP BY 1", (inv5,))
    assert net and all(v == 0 for _, v in net)
    assert pipeline.query("SELECT (SELECT sum(amount) FROM advances WHERE customer = %s),"
                          " (SELECT sum(amount) FROM receivable_items WHERE document_number = %s)",
                          (s.code("C3"), inv5))[0] == (expected_advances[s.code("C3")], 0)

    from salesledger.sinks.audit import check_ledger

    with psycopg.connect(**pipeline.settings.conninfo("accounting", "owner"), autocommit=True) as conn:
        check = check_ledger(conn, pipeline.schema)
    assert check.ok, check.as_json()
    held = pipeline.query("SELECT document_key FROM held_documents WHERE action = 'held'")
    assert not [k for (k,) in held if k.split(":", 1)[1] in ours]

    # `reconcile` knows the go-live: the documents dated on or before D (history, INV6 entered
    # late, INV5 re-dated) are inside the opening balance, not differences; everything after D
    # (PAY3 on an opening item, the returns against taken-over invoices, INV5's reversal) matches
    run = subprocess.run([str(Path(sys.executable).parent / "salesledger"), "reconcile", "--schema", pipeline.schema,
                          "--branch", s.branch, "--to", day(30).isoformat(), "--format", "json"],
                         env=pipeline.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    report = json.loads(run.stdout)
    assert (run.returncode, report["differences"]) == (0, []), run.stderr + json.dumps(report["differences"])
    assert report["golive"] == D.isoformat()
    # INV1, INV2, PAY1, PAY2, RET1 (history; INV3 cancelled, INV4 a draft), INV6, INV5 (its
    # reversed posting is the one invoice left: it nets to zero)
    assert report["checked"]["before_golive"] == 7
    assert (report["checked"]["invoices"], report["checked"]["returns"], report["checked"]["payments"]) == (1, 2, 1)
