"""`load online-retail` + `simulate --speed max` of a one-day slice into the TEST profile's sales
database, checked against counts a small reference model computes from the CSV itself (written
independently of salesledger.datasets: plain csv rows, brute-force matching)."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

DAY = "2010-12-07"  # has sales, walk-in sales, returns, write-offs and every dead-letter reason
SERVICES = {"POST", "DOT", "C2", "M", "S", "D", "AMAZONFEE", "BANK CHARGES", "CRUK", "B"}


def reference(path: Path, day: str) -> dict:
    """Documents, lines and dead letters of ``day`` recomputed from the CSV text."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [dict(r, row=i) for i, r in enumerate(csv.DictReader(handle), start=1)]
    cust = lambda r: r["CustomerID"] or "WALKIN"  # noqa: E731
    todays = [r for r in rows if r["InvoiceDate"][:10] == day]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in todays:
        groups[r["InvoiceNo"]].append(r)
    invoices, write_offs, dead = {}, {}, Counter()
    for no, rs in groups.items():
        if no.startswith("C"):
            continue
        if all(Decimal(r["UnitPrice"]) == 0 and not r["CustomerID"] for r in rs):
            if any(int(r["Quantity"]) < 0 for r in rs):
                write_offs[no] = [r for r in rs if int(r["Quantity"]) < 0]
            dead["positive_stock_adjustment"] += sum(1 for r in rs if int(r["Quantity"]) > 0)
        else:
            invoices[no] = [r for r in rs if int(r["Quantity"]) > 0]
    # brute-force matching: every earlier invoice line of the day keeps what is left to return
    left = {(no, i): Decimal(r["Quantity"]) for no, rs in invoices.items() for i, r in enumerate(rs)}
    first = {no: (min(r["InvoiceDate"] for r in rs), rs[0]["row"]) for no, rs in invoices.items()}
    returns: set[tuple[str, str]] = set()
    returned_qty = Decimal(0)
    for r in sorted((r for r in todays if r["InvoiceNo"].startswith("C")),
                    key=lambda r: (min(x["InvoiceDate"] for x in groups[r["InvoiceNo"]]),
                                   groups[r["InvoiceNo"]][0]["row"], r["row"])):
        c_first = (min(x["InvoiceDate"] for x in groups[r["InvoiceNo"]]), groups[r["InvoiceNo"]][0]["row"])
        qty = -Decimal(r["Quantity"])
        candidates = sorted((no for no, rs in invoices.items() if cust(rs[0]) == cust(r)
                             and first[no] < c_first and any(x["StockCode"] == r["StockCode"] for x in rs)),
                            key=lambda no: first[no], reverse=True)
        chosen = next((no for no in candidates
                       if sum(v for (n, i), v in left.items()
                              if n == no and invoices[no][i]["StockCode"] == r["StockCode"]) >= qty), None)
        if chosen is None:
            before = any(x["InvoiceDate"][:10] < day and cust(x) == cust(r) and x["StockCode"] == r["StockCode"]
                         and not x["InvoiceNo"].startswith("C") and int(x["Quantity"]) > 0 for x in rows)
            dead["exceeds_sold_quantity" if candidates else
                 "invoice_before_slice" if before else "no_earlier_invoice"] += 1
            continue
        returns.add((r["InvoiceNo"], chosen))
        returned_qty += qty
        for i, x in enumerate(invoices[chosen]):
            if x["StockCode"] == r["StockCode"]:
                part = min(qty, left[(chosen, i)])
                left[(chosen, i)] -= part
                qty -= part
    return {
        "invoices": invoices, "write_offs": write_offs, "returns": returns,
        "returned_qty": returned_qty, "dead": dead,
        "customers": {cust(r) for r in todays}, "skus": {r["StockCode"] for r in todays},
        "walk_in_invoices": {no for no, rs in invoices.items() if not rs[0]["CustomerID"]
                             and sum(Decimal(x["Quantity"]) * Decimal(x["UnitPrice"]) for x in rs) > 0},
    }


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from salesledger.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _clean(conn, plan) -> None:
    """Remove what an earlier run of this test left (documents of this slice, its dead letters)."""
    from salesledger.simulation.runner import TABLES

    numbers = defaultdict(list)
    for step in plan.steps:
        if step.action == "insert":
            numbers[step.kind].append(step.number)
    for kind, values in numbers.items():
        conn.execute(f"DELETE FROM sales.{TABLES[kind][0]} WHERE number = ANY(%s)", (values,))
    conn.execute("DELETE FROM salesledger_data.dead_letters WHERE dataset = %s"
                 " AND source_document = ANY(%s)",
                 (plan.dataset, [s.number for s in plan.steps if s.action == "dead_letter"]))


@pytest.mark.stack
def test_load_and_simulate_one_day(settings, pg_connect, shared_csv, tmp_path):
    from salesledger.cli.load import build_plan
    from salesledger.cli.salesdb import identifiers
    from salesledger.datasets import store
    from salesledger.salesdb.migrations import migrate

    migrate(settings.dsn("sales", "owner"), identifiers(settings))
    expected = reference(shared_csv, DAY)
    plan = build_plan(shared_csv, 1, __import__("datetime").date.fromisoformat(DAY), 42)
    conn = pg_connect("sales", "owner")
    store.ensure_schema(conn, settings.reporting_role)
    _clean(conn, plan)

    slice_args = ["--path", str(shared_csv), "--days", "1", "--since", DAY, "--profile", "test"]
    _invoke(["load", "online-retail", *slice_args, "--json"])
    again = json.loads(_invoke(["load", "online-retail", *slice_args, "--json"]).output)
    assert all(t["inserted"] == 0 and t["updated"] == 0 for t in again["tables"].values())

    summary_path = tmp_path / "summary.json"
    _invoke(["simulate", "--dataset", "online-retail", *slice_args, "--speed", "max",
             "--summary-json", str(summary_path)])
    summary = json.loads(summary_path.read_text())

    # master data: every customer (walk-in included) and SKU of the day, services as services
    codes = {r[0] for r in conn.execute("SELECT code FROM sales.customers WHERE code = ANY(%s)",
                                        (list(expected["customers"]),))}
    assert codes == expected["customers"]
    kinds = dict(conn.execute("SELECT sku, kind FROM sales.products WHERE sku = ANY(%s)",
                              (list(expected["skus"]),)).fetchall())
    assert set(kinds) == expected["skus"]
    assert {s for s, k in kinds.items() if k == "service"} == \
        {s for s in expected["skus"] if s.upper() in SERVICES or s.lower().startswith("gift_")}

    # invoices: one per source invoice, posted, lines and gross exactly as in the CSV
    numbers = list(expected["invoices"])
    rows = conn.execute("SELECT number, status, currency, prices_include_vat FROM sales.invoices"
                        " WHERE number = ANY(%s)", (numbers,)).fetchall()
    assert len(rows) == len(numbers)
    assert {(s, c, v) for _, s, c, v in rows} == {("posted", "GBP", True)}
    line_count, gross = conn.execute(
        "SELECT count(*), sum(l.qty * l.unit_price) FROM sales.invoice_lines l JOIN sales.invoices i"
        " USING (invoice_id) WHERE i.number = ANY(%s)", (numbers,)).fetchone()
    assert line_count == sum(len(v) for v in expected["invoices"].values())
    assert gross == sum(Decimal(r["Quantity"]) * Decimal(r["UnitPrice"])
                        for v in expected["invoices"].values() for r in v)

    # returns: one per (cancellation, matched invoice); quantities as matched
    got = set(conn.execute("SELECT split_part(number, '-', 1), against_invoice_number FROM sales.returns"
                           " WHERE number LIKE 'C%%' AND date = %s AND status = 'posted'", (DAY,)).fetchall())
    assert got == expected["returns"] and got
    assert conn.execute("SELECT sum(l.qty) FROM sales.return_lines l JOIN sales.returns r USING (return_id)"
                        " WHERE r.date = %s AND r.number LIKE 'C%%'", (DAY,)).fetchone()[0] == expected["returned_qty"]

    # write-offs and dead letters
    assert conn.execute("SELECT count(*) FROM sales.stock_write_offs WHERE number = ANY(%s) AND status = 'posted'",
                        (list(expected["write_offs"]),)).fetchone()[0] == len(expected["write_offs"])
    dead = dict(conn.execute("SELECT reason, count(*) FROM salesledger_data.dead_letters"
                             " WHERE dataset = 'online-retail' AND occurred_at::date = %s GROUP BY reason",
                             (DAY,)).fetchall())
    assert dead == dict(expected["dead"]) and summary["plan"]["dead_letters"] == dict(expected["dead"])
    assert summary["plan"]["documents_from_dataset_total"] == \
        len(expected["invoices"]) + len(expected["write_offs"]) + len(expected["returns"])

    # generated documents: cash for every walk-in sale, allocations equal amounts, duplicates cancelled
    cash = {r[0] for r in conn.execute(
        "SELECT a.invoice_number FROM sales.payments p JOIN sales.payment_allocations a USING (payment_id)"
        " WHERE p.method = 'cash' AND p.status = 'posted' AND a.invoice_number = ANY(%s)", (numbers,))}
    assert cash == expected["walk_in_invoices"]
    assert conn.execute("SELECT count(*) FROM sales.payments p WHERE p.number = ANY(%s) AND amount <>"
                        " (SELECT sum(amount) FROM sales.payment_allocations a WHERE a.payment_id = p.payment_id)",
                        ([s.number for s in plan.steps if s.kind == "payment"],)).fetchone()[0] == 0
    dups = conn.execute("SELECT count(*) FROM sales.invoices WHERE number = ANY(%s) AND status = 'cancelled'",
                        ([f"{n}-DUP" for n in numbers],)).fetchone()[0]
    assert dups == summary["plan"]["duplicates_cancelled"]
    assert summary["executed"]["insert"]["invoice"] == len(numbers) + dups
    assert conn.execute("SELECT count(*) FROM salesledger_data.opening_stock WHERE dataset = 'online-retail'"
                        " AND as_of = '2010-12-06'").fetchone()[0] == len(plan.opening_stock) > 0

    # idempotent: a second replay finds every step done and writes nothing
    second = tmp_path / "second.json"
    _invoke(["simulate", "--dataset", "online-retail", *slice_args, "--speed", "max",
             "--summary-json", str(second)])
    rerun = json.loads(second.read_text())
    assert rerun["executed"] == {} and rerun["skipped_already_done"] == len(plan.steps)


NORTHWIND_SQL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "northwind" / "northwind.sql"


@pytest.mark.stack
def test_load_and_simulate_northwind(settings, pg_connect, tmp_path):
    """Five shipping days of Northwind: every order shipped on them is one posted invoice with its
    detail lines (+ freight), unshipped orders of the window stay drafts; re-running is a no-op."""
    import datetime as dt
    import re

    from salesledger.cli.load import build_plan
    from salesledger.cli.salesdb import identifiers
    from salesledger.datasets import store
    from salesledger.salesdb.migrations import migrate

    migrate(settings.dsn("sales", "owner"), identifiers(settings))
    since = "1998-04-01"
    plan = build_plan(NORTHWIND_SQL, 5, dt.date.fromisoformat(since), 42, dataset="northwind")
    days = {d.isoformat() for d in plan.days}
    text = NORTHWIND_SQL.read_text(encoding="utf-8")
    orders = [o.split(", ") for o in re.findall(r"^INSERT INTO orders VALUES \((.*)\);$", text, re.M)]
    shipped = {f"NW{o[0]}" for o in orders if o[5].strip("'") in days}
    unshipped = {f"NW{o[0]}" for o in orders if o[5] == "NULL" and min(days) <= o[3].strip("'") <= max(days)}
    details = [d.split(", ") for d in re.findall(r"^INSERT INTO order_details VALUES \((.*)\);$", text, re.M)]
    detail_lines = sum(1 for d in details if f"NW{d[0]}" in shipped)
    freight_lines = sum(1 for o in orders if f"NW{o[0]}" in shipped and float(o[7]) > 0)
    conn = pg_connect("sales", "owner")
    store.ensure_schema(conn, settings.reporting_role)
    _clean(conn, plan)

    args = ["--path", str(NORTHWIND_SQL), "--days", "5", "--since", since, "--profile", "test"]
    _invoke(["load", "northwind", *args, "--json"])
    _invoke(["simulate", "--dataset", "northwind", *args, "--speed", "max",
             "--summary-json", str(tmp_path / "nw.json")])
    status = dict(conn.execute("SELECT number, status FROM sales.invoices WHERE number = ANY(%s)",
                               (list(shipped | unshipped),)).fetchall())
    assert {n for n, s in status.items() if s == "posted"} == shipped and shipped
    assert {n for n, s in status.items() if s == "draft"} == unshipped
    assert conn.execute("SELECT count(*) FROM sales.invoice_lines l JOIN sales.invoices i USING (invoice_id)"
                        " WHERE i.number = ANY(%s)", (list(shipped),)).fetchone()[0] == detail_lines + freight_lines
    assert conn.execute("SELECT DISTINCT currency FROM sales.invoices WHERE number = ANY(%s)",
                        (list(shipped),)).fetchall() == [("USD",)]
    _invoke(["simulate", "--dataset", "northwind", *args, "--speed", "max",
             "--summary-json", str(tmp_path / "nw2.json")])
    rerun = json.loads((tmp_path / "nw2.json").read_text())
    assert rerun["executed"] == {} and rerun["skipped_already_done"] == len(plan.steps)


PAGILA_SQL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "pagila" / "pagila-data.sql"


@pytest.mark.stack
def test_load_and_simulate_pagila(settings, pg_connect, tmp_path):
    """Two activity days of Pagila: every rental of those (UTC) days one posted invoice, every
    positive payment one posted payment, the zero payment a dead letter; re-running is a no-op."""
    import datetime as dt

    from salesledger.cli.load import build_plan
    from salesledger.cli.salesdb import identifiers
    from salesledger.datasets import store
    from salesledger.salesdb.migrations import migrate

    migrate(settings.dsn("sales", "owner"), identifiers(settings))
    since = "2022-05-27"  # with the next activity day: rentals, payments, one payment of 0.00
    plan = build_plan(PAGILA_SQL, 2, dt.date.fromisoformat(since), 42, dataset="pagila")
    days = set(plan.days)
    blocks: dict[str, list[list[str]]] = defaultdict(list)
    table = None
    for line in PAGILA_SQL.read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY public."):
            table = line.split()[1].split(".")[1]
        elif line == "\\.":
            table = None
        elif table:
            blocks["payment" if table.startswith("payment_p") else table].append(line.split("\t"))
    utc = lambda text: dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc).date()  # noqa: E731
    rentals = {f"R{r[0]}" for r in blocks["rental"] if utc(r[1]) in days}
    payments = {f"P{p[0]}": Decimal(p[4]) for p in blocks["payment"] if utc(p[5]) in days}
    positive = {n for n, a in payments.items() if a > 0}
    conn = pg_connect("sales", "owner")
    store.ensure_schema(conn, settings.reporting_role)
    _clean(conn, plan)

    args = ["--path", str(PAGILA_SQL), "--days", "2", "--since", since, "--profile", "test"]
    _invoke(["load", "pagila", *args, "--json"])
    _invoke(["simulate", "--dataset", "pagila", *args, "--speed", "max",
             "--summary-json", str(tmp_path / "pg.json")])
    summary = json.loads((tmp_path / "pg.json").read_text())
    assert {r[0] for r in conn.execute("SELECT number FROM sales.invoices WHERE number = ANY(%s)"
                                       " AND status = 'posted'", (list(rentals),))} == rentals and rentals
    got = dict(conn.execute("SELECT number, amount FROM sales.payments WHERE number = ANY(%s)"
                            " AND status = 'posted'", (list(payments),)).fetchall())
    assert got == {n: payments[n] for n in positive}
    assert summary["plan"]["dead_letters"] == {"zero_amount_payment": len(payments) - len(positive)}
    assert len(payments) > len(positive)
    assert {r[0] for r in conn.execute("SELECT code FROM sales.branches WHERE code LIKE 'PG-S%%'")} >= {"PG-S1", "PG-S2"}
    _invoke(["simulate", "--dataset", "pagila", *args, "--speed", "max",
             "--summary-json", str(tmp_path / "pg2.json")])
    rerun = json.loads((tmp_path / "pg2.json").read_text())
    assert rerun["executed"] == {} and rerun["skipped_already_done"] == len(plan.steps)


@pytest.mark.stack
def test_load_without_path_uses_the_bundled_copy(settings):
    """No --path, no ../shared needed: the bundled February 2011 is read (last day 2011-02-28)."""
    from salesledger.cli.salesdb import identifiers
    from salesledger.salesdb.migrations import migrate

    migrate(settings.dsn("sales", "owner"), identifiers(settings))
    report = json.loads(_invoke(["load", "online-retail", "--days", "1", "--profile", "test", "--json"]).output)
    assert report["slice"] == ["2011-02-28", "2011-02-28"]
    assert report["tables"]["customers"]["rows"] == 50 and report["tables"]["products"]["rows"] == 931
