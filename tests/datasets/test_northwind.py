"""Northwind: SQL literals, the stated real -> Decimal rule, and the plan's counts recomputed from
the dump's text."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

from salesledger.datasets import northwind as nw

NORTHWIND_SQL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "northwind" / "northwind.sql"


@pytest.fixture(scope="module")
def rows():
    assert NORTHWIND_SQL.is_file(), NORTHWIND_SQL
    return nw.read_dump(NORTHWIND_SQL)


def test_sql_literals():
    assert nw.parse_values("10248, 'VINET', NULL, 32.3800011, 'l''Abbaye, Reims'") == (
        "10248", "VINET", None, "32.3800011", "l'Abbaye, Reims")


@pytest.mark.parametrize("text,amount", [("9.80000019", "9.80"), ("32.3800011", "32.38"),
                                         ("123.790001", "123.79"), ("14", "14.00"), ("0.0199999996", "0.02")])
def test_real_to_exact_money(text, amount):
    value = nw.money(text)
    assert type(value) is Decimal and value == Decimal(amount) and value.as_tuple().exponent == -2


@pytest.mark.parametrize("text,percent", [("0.150000006", "15.00"), ("0.0500000007", "5.00"),
                                          ("0.25", "25.00"), ("0", "0.00")])
def test_discount_fraction_to_percent(text, percent):
    assert nw.discount_percent(text) == Decimal(percent)


def test_dump_counts_from_the_text(rows):
    text = NORTHWIND_SQL.read_text(encoding="utf-8")
    details = re.findall(r"^INSERT INTO order_details VALUES \((.*)\);$", text, re.M)
    orders = re.findall(r"^INSERT INTO orders VALUES \((.*)\);$", text, re.M)
    assert len(rows["orders"]) == len(orders) == 830
    assert len(rows["order_details"]) == len(details) == 2155
    assert sum(1 for d in details if d.rsplit(", ", 1)[1] != "0") == 838
    unshipped = [o for o in orders if o.split(", ")[5] == "NULL"]
    assert len(unshipped) == 21
    parsed = nw.orders_of(rows)
    assert sum(1 for o in parsed if o.shipped_date is None) == 21
    assert sum(len(o.lines) for o in parsed) == 2155


def test_whole_history_plan(rows):
    days = nw.shipping_days(nw.orders_of(rows))
    plan = nw.plan_northwind(rows, days, seed=42)
    assert plan == nw.plan_northwind(rows, days, seed=42)
    assert plan.counts["source_documents"] == 830 and plan.counts["source_lines"] == 2155
    assert plan.counts["documents_from_dataset"] == {"invoice": 809}
    assert plan.counts["drafts_never_posted"] == 21 and plan.counts["dead_letters_total"] == 0
    freight = [l for s in plan.steps if s.action == "insert" and s.kind == "invoice"
               for l in s.document.lines if l["sku"] == nw.FREIGHT_SKU]
    text = NORTHWIND_SQL.read_text(encoding="utf-8")
    positive = [f for f in re.findall(r"^INSERT INTO orders VALUES \(\d+, '\w+', \d+, '[-\d]+', '[-\d]+', "
                                      r"(?:'[-\d]+'|NULL), \d+, ([\d.]+),", text, re.M) if Decimal(f) > 0]
    assert len(freight) == len(positive)
    assert sum(l["unit_price"] for l in freight) == sum(nw.money(f) for f in positive)
    kinds = {p.sku: p.kind for p in plan.products}
    assert kinds[nw.FREIGHT_SKU] == "service" and kinds["NW11"] == "goods"
    for product in plan.products:
        if product.kind == "goods":
            prices = [l["unit_price"] for s in plan.steps if s.action == "insert" and s.kind == "invoice"
                      for l in s.document.lines if l["sku"] == product.sku]
            assert product.unit_cost < min(p for p in prices if p > 0)
    receipts = {s.document.header["supplier_code"] for s in plan.steps
                if s.action == "insert" and s.kind == "goods_receipt"}
    assert receipts <= {code for code, _ in plan.suppliers}
    assert plan.currency == "USD" and plan.opening_as_of == dt.date(1996, 7, 9)
