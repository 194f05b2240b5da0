"""Fixtures for the dataset tests: a small hand-written Online Retail CSV and the shared subset.

``tiny_csv`` writes a CSV whose every line exercises one rule (walk-in sale, service lines,
stock adjustments both ways, cancellations matched, split across lines, before the slice,
exceeding what was sold, with no earlier invoice). ``shared_csv`` is the licensed subset in
``../shared`` (tests may read it; the product never does).
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_CSV = (Path(__file__).resolve().parents[3] / "shared" / "datasets" / "online_retail"
              / "online_retail_2010-12_to_2011-02.csv")

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
# Day 1 (2011-01-03) is before the slice; the slice is days 2 and 3.
TINY_ROWS = """\
500001,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2011-01-03 09:00:00,2.55,17850,United Kingdom
500002,22423,REGENCY CAKESTAND 3 TIER,2,2011-01-04 09:30:00,12.75,17850,United Kingdom
500002,POST,POSTAGE,1,2011-01-04 09:30:00,18.0,17850,United Kingdom
500002,22423,REGENCY CAKESTAND 3 TIER,1,2011-01-04 09:30:00,12.75,17850,United Kingdom
500003,71053,WHITE METAL LANTERN,3,2011-01-04 10:00:00,3.39,,United Kingdom
500003,DOT,DOTCOM POSTAGE,1,2011-01-04 10:00:00,4.95,,United Kingdom
500004,71053,,-5,2011-01-04 11:00:00,0.0,,United Kingdom
500005,71053,,7,2011-01-04 11:05:00,0.0,,United Kingdom
C500006,22423,REGENCY CAKESTAND 3 TIER,-3,2011-01-04 12:00:00,12.75,17850,United Kingdom
C500006,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,2011-01-04 12:00:00,2.55,17850,United Kingdom
C500006,M,Manual,-1,2011-01-04 12:00:00,5.0,17850,United Kingdom
500007,22423,REGENCY CAKESTAND 3 TIER,1,2011-01-05 08:15:00,12.75,13047,France
500007,BANK CHARGES,Bank Charges,1,2011-01-05 08:15:00,15.0,13047,France
C500008,22423,REGENCY CAKESTAND 3 TIER,-2,2011-01-05 09:00:00,12.75,13047,France
C500009,71053,WHITE METAL LANTERN,-1,2011-01-05 10:00:00,3.39,,United Kingdom
500010,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2011-01-05 11:00:00,16.67,,United Kingdom
500011,71053,WHITE METAL LANTERN,4,2011-01-05 12:00:00,3.39,13047,France
C500012,71053,WHITE METAL LANTERN,-1,2011-01-05 13:00:00,3.39,13047,France
C500012,22423,REGENCY CAKESTAND 3 TIER,-1,2011-01-05 13:00:00,12.75,13047,France
"""


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    path.write_text(HEADER + TINY_ROWS, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    assert SHARED_CSV.is_file(), f"the shared subset is missing: {SHARED_CSV}"
    return SHARED_CSV


@pytest.fixture(scope="session")
def shared_lines(shared_csv: Path):
    from salesledger.datasets import online_retail as orr

    return orr.read_csv(shared_csv)
