"""``--dataset online-retail-full``: the R data reader against the file itself, read
independently, and against the CSV slice shipped beside it; the backlog's rules on small data.

The independent count reads the R serialization directly (xz, then the XDR format of R's
``save``): the first column of the data frame (``InvoiceNo``) is the first character vector
(STRSXP) of 541,909 elements in the stream; each element is a CHARSXP (flags, length, bytes).
It shares no code with pyreadr (librdata) or with :func:`salesledger.bench.dataset.read_rda`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import lzma
import struct
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from salesledger.bench import dataset
from salesledger.cli.bench import DEFAULT_DATASET_PATH
from salesledger.datasets import online_retail as orr

RDA_SHA256 = "d686c7ec387fdc64fde3a5b6f1c31d43751735f4053f34c92e677beacf5e0664"
CSV_SLICE = DEFAULT_DATASET_PATH.parent / "online_retail_2010-12_to_2011-02.csv"
STRSXP, CHARSXP = 16, 9


def invoice_counts_from_r_stream(path: Path) -> Counter[str]:
    """Lines per InvoiceNo, read from the raw R serialization (module docstring)."""
    raw = lzma.open(path).read()
    assert raw.startswith(b"RDX3\nX\n"), "an xz-compressed R data file in XDR format"
    at = 0
    while True:  # the first STRSXP header whose length is the file's line count
        at = raw.index(struct.pack(">i", dataset.EXPECTED_LINES), at + 1)
        if struct.unpack(">i", raw[at - 4:at])[0] & 0xFF == STRSXP:
            break
    at += 4
    counts: Counter[str] = Counter()
    for _ in range(dataset.EXPECTED_LINES):
        flags, length = struct.unpack(">ii", raw[at:at + 8])
        assert flags & 0xFF == CHARSXP and length >= 0, "InvoiceNo is never NA"
        counts[raw[at + 8:at + 8 + length].decode()] += 1
        at += 8 + length
    return counts


@pytest.fixture(scope="module")
def rows() -> list[orr.SourceLine]:
    path = DEFAULT_DATASET_PATH
    assert path.is_file(), f"{path}: the Online Retail R data (../shared beside the checkout)"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == RDA_SHA256
    return dataset.read_rda(path)


def test_reader_yields_every_line_with_the_counts_of_the_file(rows):
    assert len(rows) == dataset.EXPECTED_LINES == 541_909
    assert [r.row for r in rows[:3]] == [1, 2, 3] and rows[-1].row == 541_909
    by_invoice = Counter(r.invoice_no for r in rows)
    independent = invoice_counts_from_r_stream(DEFAULT_DATASET_PATH)
    assert by_invoice == independent
    # the dataset's README: 25,900 invoices (3,836 cancellations), 4,372 customers, 4,070 SKUs
    assert len(by_invoice) == 25_900
    assert sum(1 for n in by_invoice if n.startswith("C")) == 3_836
    assert len({r.customer for r in rows if r.customer}) == 4_372
    assert len({r.sku for r in rows}) == 4_070


def test_reader_rows_equal_the_csv_slice(rows):
    """Every line before 2011-03-01 is in the CSV slice, in the same order: same invoice, SKU,
    description, quantity, time, price (exact Decimal) and customer as the loader reads them."""
    csv_rows = orr.read_csv(CSV_SLICE)
    assert len(csv_rows) == 105_335
    assert rows[:len(csv_rows)] == csv_rows
    assert rows[len(csv_rows)].at >= dt.datetime(2011, 3, 1)
    assert all(isinstance(r.unit_price, Decimal) and isinstance(r.qty, Decimal) for r in rows)


def _line(row: int, invoice: str, sku: str, qty: str, price: str,
          customer: str | None = "12345") -> orr.SourceLine:
    return orr.SourceLine(row=row, invoice_no=invoice, sku=sku, description=f"item {sku}",
                          qty=Decimal(qty), at=dt.datetime(2011, 1, 1, 10, row),
                          unit_price=Decimal(price), customer=customer, country="United Kingdom")


def test_backlog_keeps_sales_lines_and_counts_what_it_leaves_out():
    source = [
        _line(1, "536365", "85123A", "6", "2.55"), _line(2, "536365", "POST", "1", "18.00"),
        _line(3, "536365", "71053", "-2", "3.39"),          # negative on an invoice
        _line(4, "C536379", "85123A", "-1", "2.55"),         # a cancellation
        _line(5, "536380", "POST", "2", "18.00"),            # services only
        _line(6, "536381", "22633", "1", "0.10"),            # worth less than 1.00
        _line(7, "A563186", "B", "1", "-11062.06", None),    # bad-debt adjustment
        _line(8, "536382", "22633", "10", "0", None),        # free goods + a priced line, walk-in
        _line(9, "536382", "85123A", "1", "2.55", None),
    ]
    backlog = dataset.plan_backlog(source)
    assert [(i.invoice_no, i.customer, len(i.lines)) for i in backlog.invoices] == [
        ("536365", "12345", 2), ("536382", orr.WALK_IN, 2)]
    assert backlog.invoices[0].lines[0] == ("85123A", "item 85123A", Decimal("6"),
                                            Decimal("2.55"))
    assert backlog.lines == 4 and backlog.source_lines == 9
    assert backlog.left_out_lines == {"cancellation_line": 1, "quantity_not_positive": 1,
                                      "negative_price": 1, "invoice_without_goods_or_value": 2}
    assert backlog.products["POST"][1] == "service" and backlog.products["22633"][1] == "goods"
    assert backlog.customers == ("12345", orr.WALK_IN)


def test_backlog_of_a_quick_run_stops_after_the_invoice_reaching_lines_max():
    source = [_line(1, "1", "A1", "1", "5"), _line(2, "1", "A2", "1", "5"),
              _line(3, "2", "A1", "1", "5"), _line(4, "3", "A1", "1", "5")]
    backlog = dataset.plan_backlog(source, lines_max=3)
    assert [i.invoice_no for i in backlog.invoices] == ["1", "2"] and backlog.lines == 3
    assert backlog.left_out_lines == {"beyond_lines_max": 1}
