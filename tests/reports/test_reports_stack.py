"""Reports over golden-case ledgers written into a fresh accounting-store schema through the
sink writer, run through the CLI (``salesledger report ... --format json``) and compared with
figures computed here independently: from the engine's entries (turnovers per account), from the
golden files' ``then`` (open items, stock) and from each other (ageing total = receivable
account, Σ stock value = inventory account)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from tests.reports.conftest import GOLDEN_DIR, report_json, run_golden

pytestmark = pytest.mark.stack
FAR = "2099-12-31"


def _balances(entries, as_of: dt.date | None = None) -> dict[str, tuple[D, D]]:
    """(Σ debit, Σ credit) per account of the engine's entries dated <= as_of."""
    sums: dict[str, list[D]] = defaultdict(lambda: [D(0), D(0)])
    for entry in entries:
        if as_of is None or entry.accounting_date <= as_of:
            for line in entry.lines:
                sums[line.account][0] += line.debit
                sums[line.account][1] += line.credit
    return {a: (d, c) for a, (d, c) in sums.items()}


def _balance(tb: dict, account: str) -> D:
    return sum((D(a["balance"]) for a in tb["accounts"] if a["account"] == account), D(0))


def _then(name: str) -> dict:
    """The ``then`` of the case's first run (``cases:`` merged as the golden README says)."""
    from salesledger.ledger.golden import runs_of

    return runs_of(yaml.safe_load((GOLDEN_DIR / name).read_text(encoding="utf-8")))[0][4]


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN_DIR.glob("G*.yaml")))
def test_reports_over_golden_ledger_agree_with_engine_and_each_other(
        name, store, write_ledger, cli) -> None:
    ledger = run_golden(name)
    write_ledger(ledger.facts())
    chart = ledger.chart

    tb = report_json(cli, "report", "trial-balance", "--schema", store, "--as-of", FAR,
                     "--chart", chart.name)
    want = _balances(ledger.entries)
    got = {a["account"]: (D(a["debit"]), D(a["credit"])) for a in tb["accounts"]}
    assert got == want
    assert D(tb["total_debit"]) == D(tb["total_credit"]) == sum(d for d, _ in want.values())
    for a in tb["accounts"]:
        assert D(a["balance"]) == D(a["debit"]) - D(a["credit"])

    aging = report_json(cli, "report", "ar-aging", "--schema", store, "--as-of", FAR)
    assert D(aging["total"]) == _balance(tb, chart.account("receivable"))
    assert D(aging["advances"]) == -_balance(tb, chart.account("customer_advances"))
    assert sum(D(v) for v in aging["buckets"].values()) == D(aging["total"])
    opens = {(c["customer"], d["document"]): D(d["open"])
             for c in aging["customers"] for d in c["documents"]}
    then = _then(name)
    for r in then.get("receivables") or [] if "after_release" not in then else []:
        if "as_of" in r:
            continue
        assert opens.get((str(r["customer"]), str(r["document"])), D(0)) == D(str(r["open"]))

    stock = report_json(cli, "report", "stock", "--schema", store, "--as-of", FAR)
    assert sum((D(p["value"]) for p in stock), D(0)) == _balance(tb, chart.account("inventory"))
    positions = {(p["sku"], p["warehouse"]): (D(p["qty"]), D(p["value"])) for p in stock}
    for s in then.get("stock") or [] if "after_release" not in then else []:
        assert positions[(s["sku"], s["warehouse"])] == (D(str(s["qty"])), D(str(s["value"])))


def test_ar_aging_as_of_dates_of_the_golden_case(store, write_ledger, cli) -> None:
    name = "G05-partial-cash-payment-ageing.yaml"
    write_ledger(run_golden(name).facts())
    for r in _then(name)["receivables"]:
        aging = report_json(cli, "report", "ar-aging", "--schema", store,
                            "--as-of", str(r["as_of"]), "--customer", str(r["customer"]))
        (customer,) = aging["customers"]
        (doc,) = [d for d in customer["documents"] if d["document"] == r["document"]]
        assert D(doc["open"]) == D(str(r["open"])) and doc["due"] == str(r["due"])
        assert doc["bucket"] == r["bucket"]
        if "days_past_due" in r:
            assert doc["days_past_due"] == r["days_past_due"]
    # Before the payment (2026-03-15) the whole gross is open; before the invoice, nothing.
    early = report_json(cli, "report", "ar-aging", "--schema", store, "--as-of", "2026-03-14")
    assert early["total"] == "1180.00"
    none = report_json(cli, "report", "ar-aging", "--schema", store, "--as-of", "2026-02-27")
    assert none["total"] == "0.00" and none["customers"] == []


def test_as_of_counts_only_what_is_dated_on_or_before(store, write_ledger, cli) -> None:
    ledger = run_golden("G06-partial-return-original-cost.yaml")
    write_ledger(ledger.facts())
    inventory = ledger.chart.account("inventory")
    for day in ("2026-03-01", "2026-03-02", "2026-03-09", "2026-03-10"):
        as_of = dt.date.fromisoformat(day)
        tb = report_json(cli, "report", "trial-balance", "--schema", store, "--as-of", day)
        want = _balances(ledger.entries, as_of)
        assert {a["account"]: (D(a["debit"]), D(a["credit"])) for a in tb["accounts"]} == want
        stock = report_json(cli, "report", "stock", "--schema", store, "--as-of", day)
        value = sum((D(p["value"]) for p in stock), D(0))
        assert value == want[inventory][0] - want[inventory][1]
        moved = sum((m.qty for m in ledger.movements if m.accounting_date <= as_of), D(0))
        assert sum((D(p["qty"]) for p in stock), D(0)) == moved


def test_filters_select_dimensions(store, write_ledger, cli) -> None:
    ledger = run_golden("G06-partial-return-original-cost.yaml")
    write_ledger(ledger.facts())
    tb = report_json(cli, "report", "trial-balance", "--schema", store, "--as-of", FAR,
                     "--customer", "C1")
    customer_lines = [l for e in ledger.entries for l in e.lines if l.customer == "C1"]
    assert D(tb["total_debit"]) == sum(l.debit for l in customer_lines)
    only = report_json(cli, "report", "trial-balance", "--schema", store, "--as-of", FAR,
                       "--account", "601")
    assert [a["account"] for a in only["accounts"]] == ["601"]
    stock = report_json(cli, "report", "stock", "--schema", store, "--as-of", FAR,
                        "--sku", "NOPE")
    assert stock == []
    aging = report_json(cli, "report", "ar-aging", "--schema", store, "--as-of", FAR,
                        "--branch", "NOPE")
    assert aging["total"] == "0.00" and aging["customers"] == []


def test_pnl_and_csv_xlsx_carry_the_same_numbers(store, write_ledger, cli, tmp_path) -> None:
    from openpyxl import load_workbook

    name = "G06-partial-return-original-cost.yaml"
    write_ledger(run_golden(name).facts())
    # Expected from the golden file's journal (every entry of the case is listed there).
    sums: dict[str, D] = defaultdict(lambda: D(0))
    for entry in _then(name)["journal"]:
        for line in entry["lines"]:
            sums[line["account"]] += D(str(line.get("debit", 0))) - D(str(line.get("credit", 0)))
    revenue, returns, cogs = -sums["601"], sums["602"], sums["701"]
    args = ("report", "pnl", "--schema", store, "--from", "2026-03-01", "--to", "2026-03-31")
    report = report_json(cli, *args, "--by", "sku")
    assert report["rows"] == [{"day": None, "branch": None, "sku": "A",
                               "revenue": str(revenue), "returns": str(returns),
                               "discounts": "0.00", "cogs": str(cogs),
                               "gross_margin": str(revenue - returns - cogs)}]
    by_day = report_json(cli, *args, "--by", "day")
    assert [r["day"] for r in by_day["rows"]] == ["2026-03-02", "2026-03-10"]
    assert by_day["totals"] == report["totals"]

    text = cli(*args, "--by", "sku", "--format", "csv").stdout
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["sku", "revenue", "returns", "discounts", "cogs", "gross_margin"]
    assert parsed[1] == ["A"] + [report["rows"][0][k] for k in parsed[0][1:]]
    path: Path = tmp_path / "pnl.xlsx"
    cli(*args, "--by", "sku", "--format", "xlsx", "--output", str(path))
    rows = list(load_workbook(path).active.iter_rows(values_only=True))
    assert rows[0] == tuple(parsed[0])
    assert rows[1][0] == "A"
    assert [D(str(v)) for v in rows[1][1:]] == [D(v) for v in parsed[1][1:]]


def test_journal_of_a_document_with_its_lines_and_trace(store, write_ledger, cli) -> None:
    ledger = run_golden("G06-partial-return-original-cost.yaml")
    write_ledger(ledger.facts())
    report = report_json(cli, "report", "journal", "--schema", store, "--document", "INV-6")
    mine = [e for e in ledger.entries if e.document.number == "INV-6"]
    assert sorted(e["entry_id"] for e in report["entries"]) == sorted(e.entry_id for e in mine)
    for got in report["entries"]:
        (want,) = [e for e in mine if e.entry_id == got["entry_id"]]
        assert got["kind"] == want.kind and got["date"] == want.accounting_date.isoformat()
        assert got["source"]["document_id"] == want.document.id
        assert [(l["account"], D(l["debit"]), D(l["credit"])) for l in got["lines"]] == \
            [(l.account, l.debit, l.credit) for l in want.lines]
    moved = sorted((m.sku, m.warehouse, m.qty, m.value) for m in ledger.movements
                   if m.document.number == "INV-6")
    assert moved and sorted((m["sku"], m["warehouse"], D(m["qty"]), D(m["value"]))
                            for m in report["stock"]) == moved
    owed = sorted((u.document, u.amount) for u in ledger.updates
                  if u.by.number == "INV-6" and not u.is_advance)
    assert owed and sorted((r["document"], D(r["amount"])) for r in report["receivables"]) == owed
    assert report["advances"] == []


def test_report_on_schema_without_ledger_exits_2(cli) -> None:
    result = cli("report", "stock", "--schema", "no_such_schema_rpt", "--format", "json",
                 expect=2)
    assert "no ledger tables" in result.output


def _figures(name: str) -> tuple[dict, dict]:
    case = yaml.safe_load((GOLDEN_DIR / name).read_text(encoding="utf-8"))
    steps = [next(iter(s.items())) for s in case["when"]]
    cost = {s["sku"]: D(str(s["unit_cost"])) for s in case["given"]["stock"]}
    return dict(steps), cost


def test_pnl_of_the_ru_chart_red_storno_return(store, write_ledger, cli) -> None:
    name = "G13-ru-chart-return-red-storno.yaml"
    write_ledger(run_golden(name).facts())
    docs, cost = _figures(name)
    (line,) = docs["invoice"]["lines"]
    (back,) = docs["return"]["lines"]
    net = D(str(line["qty"])) * D(line["unit_price"])  # VAT on top: revenue net of VAT
    returned = (net * back["qty"] / line["qty"]).quantize(D("0.01"))
    cogs = (line["qty"] - back["qty"]) * cost["A"]
    report = report_json(cli, "report", "pnl", "--schema", store, "--chart", "ru-1c",
                         "--from", "2026-03-01", "--to", "2026-03-31", "--by", "sku")
    assert report["totals"] == {"revenue": f"{net:.2f}", "returns": f"{returned:.2f}",
                                "discounts": "0.00", "cogs": f"{cogs:.2f}",
                                "gross_margin": f"{net - returned - cogs:.2f}"}


def test_pnl_with_discounts_on_their_own_account(store, write_ledger, cli) -> None:
    name = "G03a-line-discount-separate-account.yaml"
    write_ledger(run_golden(name).facts())
    docs, cost = _figures(name)
    (line,) = docs["invoice"]["lines"]
    gross = D(str(line["qty"])) * D(line["unit_price"])
    discount = (gross * D(line["discount_percent"]) / 100).quantize(D("0.01"))
    cogs = line["qty"] * cost["C"]
    report = report_json(cli, "report", "pnl", "--schema", store, "--from", "2026-03-01",
                         "--to", "2026-03-31", "--by", "day,sku")
    assert report["rows"] == [{"day": "2026-03-03", "branch": None, "sku": "C",
                               "revenue": f"{gross:.2f}", "returns": "0.00",
                               "discounts": f"{discount:.2f}", "cogs": f"{cogs:.2f}",
                               "gross_margin": f"{gross - discount - cogs:.2f}"}]


@pytest.mark.parametrize("args", [
    ("trial-balance", "--as-of", FAR), ("ar-aging", "--as-of", "2026-03-20"),
    ("stock", "--as-of", FAR), ("pnl", "--from", "2026-03-01", "--to", "2026-03-31"),
    ("journal", "--document", "INV-5")])
def test_csv_and_xlsx_of_every_report_carry_the_json_figures(
        args, store, write_ledger, cli, tmp_path) -> None:
    from openpyxl import load_workbook

    from salesledger.reports.render import flatten

    write_ledger(run_golden("G05-partial-cash-payment-ageing.yaml").facts())
    base = ("report", *args, "--schema", store)
    headers, rows = flatten(args[0], report_json(cli, *base))
    assert rows, "the report has figures"
    parsed = list(csv.reader(io.StringIO(cli(*base, "--format", "csv").stdout)))
    assert parsed[0] == headers
    assert parsed[1:] == [["" if v is None else str(v) for v in row] for row in rows]
    path = tmp_path / "report.xlsx"
    cli(*base, "--format", "xlsx", "--output", str(path))
    sheet = list(load_workbook(path).active.iter_rows(values_only=True))
    assert list(sheet[0]) == headers
    for got, want in zip(sheet[1:], parsed[1:], strict=True):
        for cell, text in zip(got, want, strict=True):
            if cell is None:
                assert text == ""
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                assert D(str(cell)) == D(text)
            else:
                assert str(cell) == text
