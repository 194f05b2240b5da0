"""Reading Online Retail and its rules: Decimal parsing, services, walk-in, adjustments, C-lines."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from salesledger.datasets import online_retail as orr

SLICE = [dt.date(2011, 1, 4), dt.date(2011, 1, 5)]


def test_prices_and_quantities_are_exact_decimals(tiny_csv):
    lines = orr.read_csv(tiny_csv)
    assert len(lines) == 19
    first = lines[0]
    assert first.unit_price == Decimal("2.55") and type(first.unit_price) is Decimal
    assert first.qty == Decimal(6) and type(first.qty) is Decimal
    # the CSV text, not a binary float: 0.1-style values stay exact
    voucher = next(l for l in lines if l.sku.startswith("gift_"))
    assert voucher.unit_price == Decimal("16.67")
    assert voucher.unit_price * 3 == Decimal("50.01")
    assert lines[2].unit_price.as_tuple() == Decimal("18.0").as_tuple()


def test_header_and_bad_values_are_refused(tmp_path):
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(orr.DatasetError, match="header"):
        orr.read_csv(bad_header)
    bad_price = tmp_path / "p.csv"
    bad_price.write_text("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
                         "1,A,x,1,2011-01-01 10:00:00,abc,1,UK\n")
    with pytest.raises(orr.DatasetError, match="row 1: UnitPrice"):
        orr.read_csv(bad_price)


@pytest.mark.parametrize("sku", ["POST", "DOT", "M", "m", "S", "C2", "D", "AMAZONFEE",
                                 "BANK CHARGES", "CRUK", "gift_0001_30"])
def test_service_lines_are_services(sku):
    assert orr.is_service(sku)


@pytest.mark.parametrize("sku", ["85123A", "22423", "DCGS0003", "DCGSSBOY", "15056bl", "PADS"])
def test_goods_are_goods(sku):
    assert not orr.is_service(sku)


def test_slice_selection_counts_trading_days():
    days = [dt.date(2011, 1, d) for d in (3, 4, 5, 7, 10)]
    assert orr.select_days(days, 2) == days[-2:]
    assert orr.select_days(days) == days  # default 7 (fewer exist)
    assert orr.select_days(days, 2, since=dt.date(2011, 1, 6)) == [dt.date(2011, 1, 7), dt.date(2011, 1, 10)]
    with pytest.raises(orr.DatasetError):
        orr.select_days(days, since=dt.date(2011, 2, 1))


def test_documents_of_the_tiny_slice(tiny_csv):
    docs = orr.build_documents(orr.read_csv(tiny_csv), SLICE)
    assert [i.number for i in docs.invoices] == ["500002", "500003", "500007", "500010", "500011"]
    walk_in = {i.number for i in docs.invoices if i.customer == orr.WALK_IN}
    assert walk_in == {"500003", "500010"}
    assert [w.number for w in docs.write_offs] == ["500004"]
    assert docs.write_offs[0].lines[0].qty == Decimal(-5)
    reasons = {(d.line.invoice_no, d.line.sku): d.reason for d in docs.dead_letters}
    assert reasons == {
        ("500005", "71053"): "positive_stock_adjustment",
        ("C500006", "85123A"): "invoice_before_slice",
        ("C500006", "M"): "no_earlier_invoice",
        ("C500008", "22423"): "exceeds_sold_quantity",
    }


def test_cancellation_lines_match_latest_earlier_invoice(tiny_csv):
    docs = orr.build_documents(orr.read_csv(tiny_csv), SLICE)
    returns = {r.number: r for r in docs.returns}
    assert set(returns) == {"C500006", "C500009", "C500012-1", "C500012-2"}
    # 3 cakestands returned against 500002: 2 from its line 1, 1 from its line 3
    c6 = returns["C500006"]
    assert c6.against == "500002" and c6.customer == "17850"
    assert [(m.invoice_line_no, m.qty) for m in c6.lines] == [(1, Decimal(2)), (3, Decimal(1))]
    # a walk-in return matches a walk-in sale
    assert returns["C500009"].against == "500003" and returns["C500009"].customer == orr.WALK_IN
    # one cancellation split over two invoices
    assert (returns["C500012-1"].against, returns["C500012-2"].against) == ("500011", "500007")


def test_matching_prefers_the_latest_invoice_with_enough_left():
    at = dt.datetime(2011, 1, 4, 9)
    line = lambda row, no, qty, minutes, price="1.00": orr.SourceLine(  # noqa: E731
        row, no, "A", "a", Decimal(qty), at + dt.timedelta(minutes=minutes), Decimal(price), "1", "UK")
    lines = [line(1, "1", 5, 0), line(2, "2", 1, 10), line(3, "C3", -2, 20), line(4, "C4", -1, 30)]
    docs = orr.build_documents(lines, [at.date()])
    # invoice 2 (latest) has only 1 left, so C3 (2 units) goes to invoice 1; C4 then takes 2's unit
    assert [(r.number, r.against) for r in docs.returns] == [("C3", "1"), ("C4", "2")]


def test_product_names_take_the_most_frequent_description(tiny_csv):
    catalogue = orr.product_catalogue(orr.read_csv(tiny_csv))
    assert catalogue["71053"].name == "WHITE METAL LANTERN"
    assert catalogue["71053"].min_price_gross == Decimal("3.39")
    assert catalogue["POST"].kind == "service" and catalogue["85123A"].kind == "goods"


def test_shared_subset_facts(shared_lines):
    """The README's facts about the subset, recomputed: every line accounted for once."""
    assert len(shared_lines) == 105_335
    assert sum(1 for l in shared_lines if l.customer is None) == 36_210
    assert len({l.invoice_no for l in shared_lines if l.is_cancellation}) == 805
    days = orr.trading_days(shared_lines)
    docs = orr.build_documents(shared_lines, days)
    on_docs = sum(len(i.lines) for i in docs.invoices) + sum(len(w.lines) for w in docs.write_offs)
    on_returns = len({m.source_row for r in docs.returns for m in r.lines})
    assert on_docs + on_returns + len(docs.dead_letters) == len(shared_lines)
    assert all(l.qty == l.qty.to_integral_value() for l in shared_lines)


def test_bundled_subset_is_february_of_the_shared_file(shared_csv):
    """The shipped copy (CC BY 4.0) holds exactly the February 2011 lines, byte for byte."""
    import gzip

    from salesledger.datasets import bundled_path

    path = bundled_path("online-retail")
    bundled = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    shared = shared_csv.read_text(encoding="utf-8").splitlines()
    assert bundled[0] == shared[0]
    assert bundled[1:] == [l for l in shared[1:] if ",2011-02-" in l]
    lines = orr.read_csv(path)
    assert len(lines) == 27_707 and {l.at.strftime("%Y-%m") for l in lines} == {"2011-02"}
    assert (path.parent / "README.md").read_text().count("CC BY 4.0") >= 1
    with pytest.raises(LookupError):
        bundled_path("northwind")


def test_dead_letter_keys_do_not_depend_on_the_file(shared_lines):
    """A line read from the full subset or from the bundled February copy has the same dead-letter
    key (document, position in it), although its row number in the file differs."""
    from salesledger.datasets import bundled_path

    day = [dt.date(2011, 2, 28)]
    full = orr.build_documents(shared_lines, day).dead_letters
    bundled = orr.build_documents(orr.read_csv(bundled_path("online-retail")), day).dead_letters
    assert [(d.line.invoice_no, d.position, d.line.sku) for d in full] == \
        [(d.line.invoice_no, d.position, d.line.sku) for d in bundled]
    assert full and all(d.position >= 1 for d in full)
    assert [d.line.row for d in full] != [d.line.row for d in bundled]
