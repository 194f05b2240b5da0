"""Pure tests of report assembly and rendering (no database)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal as D

import pytest

from salesledger.reports import assemble, render
from salesledger.reports.accounts import report_accounts


def test_amount_text_keeps_exact_decimals_and_refuses_float() -> None:
    assert assemble.amount_text(D("59")) == "59.00"
    assert assemble.amount_text(D("59.0")) == "59.00"
    assert assemble.amount_text(D("1.2345")) == "1.2345"
    assert assemble.amount_text(D("-11.80")) == "-11.80"
    assert assemble.amount_text(None) == "0.00"
    assert assemble.amount_text(D("1E+3")) == "1000.00"
    with pytest.raises(TypeError):
        assemble.amount_text(1.5)  # type: ignore[arg-type]
    assert assemble.qty_text(D("22.000")) == "22"
    assert assemble.qty_text(D("0.500")) == "0.5"
    assert assemble.qty_text(D("1E+1")) == "10"


def test_trial_balance_totals_and_balance_sign() -> None:
    rows = [("601", None, D("0"), D("50.00")), ("211", "stored", D("59.00"), D("11.80")),
            ("521", None, D("1.80"), D("9.00")), ("602", None, D("10.00"), D("0"))]
    tb = assemble.trial_balance(rows, as_of=dt.date(2026, 3, 31), currency="AZN",
                                names={"601": "Satış"})
    assert [a["account"] for a in tb["accounts"]] == ["211", "521", "601", "602"]
    assert tb["accounts"][0] == {"account": "211", "name": "stored", "debit": "59.00",
                                 "credit": "11.80", "balance": "47.20"}
    assert tb["accounts"][2]["name"] == "Satış" and tb["accounts"][2]["balance"] == "-50.00"
    assert tb["total_debit"] == "70.80" and tb["total_credit"] == "70.80"
    assert tb["as_of"] == "2026-03-31" and tb["currency"] == "AZN"


def test_ar_aging_buckets_days_and_advances() -> None:
    as_of = dt.date(2026, 5, 10)
    items = [
        ("C2", "INV-5", dt.date(2026, 3, 31), dt.date(2026, 3, 1), D("680.00")),    # 40 days
        ("C2", "INV-6", dt.date(2026, 5, 20), dt.date(2026, 5, 1), D("10.00")),     # not due
        ("C3", "INV-7", None, dt.date(2026, 1, 1), D("5.00")),                      # 129 days
        ("C3", "INV-8", dt.date(2026, 4, 10), dt.date(2026, 3, 1), D("0.00")),      # settled
        ("C1", "INV-9", dt.date(2026, 5, 10), dt.date(2026, 5, 1), D("1.00")),      # due today
    ]
    report = assemble.ar_aging(items, [("C4", D("100.00")), ("C2", D("0"))], as_of=as_of)
    by_customer = {c["customer"]: c for c in report["customers"]}
    assert sorted(by_customer) == ["C1", "C2", "C3", "C4"]
    c2 = by_customer["C2"]
    assert c2["documents"][0] == {"document": "INV-5", "due": "2026-03-31", "open": "680.00",
                                  "days_past_due": 40, "bucket": "31-60"}
    assert c2["documents"][1]["days_past_due"] == -10 and c2["documents"][1]["bucket"] == "not_due"
    assert c2["total"] == "690.00" and c2["advances"] == "0.00"
    assert by_customer["C3"]["documents"] == [{"document": "INV-7", "due": "2026-01-01",
                                               "open": "5.00", "days_past_due": 129,
                                               "bucket": "121+"}]
    assert by_customer["C1"]["documents"][0]["bucket"] == "not_due"
    assert by_customer["C4"] == {"customer": "C4", "documents": [], "total": "0.00",
                                 "advances": "100.00"}
    assert report["buckets"] == {"not_due": "11.00", "1-30": "0.00", "31-60": "680.00",
                                 "61-90": "0.00", "91-120": "0.00", "121+": "5.00"}
    assert report["total"] == "696.00" and report["advances"] == "100.00"
    assert sum(D(v) for v in report["buckets"].values()) == D(report["total"])


def test_stock_drops_empty_positions_and_orders() -> None:
    rows = [("B", "W1", D("0"), D("0")), ("A", "W2", D("2.000"), D("6.00")),
            ("A", "W1", D("22.000"), D("72.00"))]
    assert assemble.stock(rows) == [
        {"sku": "A", "warehouse": "W1", "qty": "22", "value": "72.00"},
        {"sku": "A", "warehouse": "W2", "qty": "2", "value": "6.00"}]


def test_pnl_groups_by_requested_dimensions_and_margin() -> None:
    d1, d2 = dt.date(2026, 3, 2), dt.date(2026, 3, 10)
    rows = [(d1, "B1", "A", D("50.00"), D("0"), D("0"), D("30.00")),
            (d2, None, "A", D("0"), D("10.00"), D("0"), D("-6.00")),
            (d2, "B1", "K", D("100.00"), D("0"), D("5.00"), D("40.00"))]
    by_sku = assemble.pnl(rows, date_from=d1, date_to=d2, by=("sku",))
    assert by_sku["rows"] == [
        {"day": None, "branch": None, "sku": "A", "revenue": "50.00", "returns": "10.00",
         "discounts": "0.00", "cogs": "24.00", "gross_margin": "16.00"},
        {"day": None, "branch": None, "sku": "K", "revenue": "100.00", "returns": "0.00",
         "discounts": "5.00", "cogs": "40.00", "gross_margin": "55.00"}]
    assert by_sku["totals"] == {"revenue": "150.00", "returns": "10.00", "discounts": "5.00",
                                "cogs": "64.00", "gross_margin": "71.00"}
    full = assemble.pnl(rows, date_from=d1, date_to=d2, by=("day", "branch", "sku"))
    assert len(full["rows"]) == 3 and full["totals"] == by_sku["totals"]
    assert full["from"] == "2026-03-02" and full["to"] == "2026-03-10"
    assert assemble.parse_dimensions("sku, day") == ("day", "sku")
    with pytest.raises(ValueError):
        assemble.parse_dimensions("day,region")


def test_journal_keeps_trace_and_orders_lines() -> None:
    commit = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
    entries = [("e2", "cogs", dt.date(2026, 3, 2), "invoice", "INV-6", 1, "17", "cogs", None,
                1234, 77, commit),
               ("e1", "revenue", dt.date(2026, 3, 2), "invoice", "INV-6", 1, "17", "sale",
                None, 1234, 77, commit)]
    lines = [("e1", 2, "601", D("0"), D("50.00"), "AZN", None, "W1", "C1", "A", None, None),
             ("e1", 1, "211", D("50.00"), D("0"), "AZN", None, "W1", "C1", None, "INV-6", None),
             ("e2", 1, "701", D("30.00"), D("0"), "AZN", None, "W1", "C1", "A", None, None),
             ("e2", 2, "205", D("0"), D("30.00"), "AZN", None, "W1", "C1", "A", None, None)]
    report = assemble.journal("INV-6", entries, lines, as_of=None, names={"601": "Satış"})
    assert [e["kind"] for e in report["entries"]] == ["cogs", "revenue"]
    revenue = report["entries"][1]
    assert [l["line_no"] for l in revenue["lines"]] == [1, 2]
    assert revenue["lines"][1]["name"] == "Satış" and revenue["lines"][1]["credit"] == "50.00"
    assert revenue["source"] == {"document_id": "17", "lsn": 1234, "txid": 77,
                                 "commit_at": "2026-03-02T09:00:00+00:00"}
    assert revenue["total_debit"] == revenue["total_credit"] == "50.00"


def test_csv_and_xlsx_carry_the_json_figures(tmp_path) -> None:
    from openpyxl import load_workbook

    rows = [("211", None, D("59.00"), D("11.80")), ("601", None, D("0"), D("50.00")),
            ("521", None, D("1.80"), D("9.00")), ("602", None, D("10.00"), D("0"))]
    tb = assemble.trial_balance(rows, as_of=dt.date(2026, 3, 31), currency="AZN")
    table = render.flatten("trial-balance", tb)
    parsed = list(csv.reader(io.StringIO(render.to_csv(table))))
    assert parsed[0] == ["account", "name", "debit", "credit", "balance"]
    assert parsed[1] == ["211", "", "59.00", "11.80", "47.20"]
    assert parsed[-1][:4] == ["TOTAL", "", "70.80", "70.80"]
    path = tmp_path / "tb.xlsx"
    render.write_xlsx(table, path, "trial-balance")
    sheet = load_workbook(path).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("account", "name", "debit", "credit", "balance")
    for got, want in zip(values[1:], parsed[1:]):
        assert got[0] == want[0]
        for cell, text in zip(got[2:], want[2:]):
            if text:
                assert D(str(cell)) == D(text)
    json.loads(render.to_json(tb))  # no float, no Decimal left: serialisable as is


def test_report_accounts_of_both_charts() -> None:
    az = report_accounts("az-nas")
    assert az.receivable == ("211",) and az.inventory == ("205",) and az.vat_on_sales == ()
    assert set(az.net_sales) == {"601", "602", "603"} and az.names["601"] == "Satış"
    ru = report_accounts("ru-1c")
    assert ru.revenue == ("90.01.1",) and ru.vat_on_sales == ("90.03",) and ru.sales_returns == ()


def test_stock_table_on_screen_ends_with_the_total_value() -> None:
    """The rich table of `report stock` adds Σ value (to compare with the inventory account);
    JSON and CSV keep the contract without a total row."""
    from rich.console import Console

    report = assemble.stock([("A", "W1", D("2"), D("10.50")),
                             ("B", "W1", D("1"), D("0.25")),
                             ("A", "W2", D("3"), D("7.00"))])
    console = Console(record=True, width=120)
    console.print(render.rich_table("stock", report, "Stock"))
    last = [line for line in console.export_text().splitlines() if "TOTAL" in line]
    assert len(last) == 1 and "17.75" in last[0]
    headers, rows = render.flatten("stock", report)
    assert all(row[0] != "TOTAL" for row in rows) and len(rows) == 3
