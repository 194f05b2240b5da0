"""``--dataset online-retail-full``: all 541,909 lines of UCI Online Retail as the bench's backlog.

The complete file exists only as R data (``onlineretail.rda``, the CRAN package
``onlineretail``; the CSV shipped with salesledger holds a slice). :func:`read_rda` reads it
with *pyreadr* (imported here only, never by the product at run time) into the row shape of
the Online Retail loader (:class:`salesledger.datasets.online_retail.SourceLine`, rows numbered
in file order), so the dataset's rules (service SKUs, walk-in customer) apply unchanged.
Numbers are stored as R doubles: quantities are whole, prices are read back through their
shortest decimal text (``repr``), which is the text of the CSV (the unit test compares the
slice); ``InvoiceDate`` is wall-clock time.

:func:`plan_backlog` turns the lines into the invoices of one backlog (what the bench commits
while the connector is stopped, like the synthetic backlog):

- a sales invoice (not ``C…``) keeps its lines with quantity > 0 and price >= 0, in file order,
  with the real SKU, description, quantity and price (GBP incl. 20 % VAT, the loader's
  assumption), for the customer of its first line (walk-in when none);
- left out, counted per reason in :attr:`RetailBacklog.left_out_lines`: cancellation lines
  (``C…``: returns in the demo, not invoice lines), lines with quantity <= 0 (stock
  adjustments), lines with a negative price (bad-debt adjustments ``A…``), and invoices that
  would post no revenue *and* cost of sales (no goods line, or worth less than
  :data:`INVOICE_TOTAL_MIN_GBP`): the bench waits for both entries of every invoice.

Every invoice is committed with today's date as ``B<tag>-<seq>`` (seq in file order).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg

from salesledger.bench import workload
from salesledger.datasets import online_retail as orr

DATASET = "online-retail-full"
#: Lines of the complete file (the dataset's README).
EXPECTED_LINES = 541_909
#: An invoice worth less (GBP incl. VAT) is left out: its revenue entry could round to nothing.
INVOICE_TOTAL_MIN_GBP = Decimal("1.00")
#: Opening stock per goods SKU (units) and its cost (GBP): no invoice ever waits for stock.
OPENING_QTY = 1_000_000_000
OPENING_UNIT_COST = Decimal("0.50")
#: Invoices sent in one pipeline round trip.
WRITE_BATCH_MAX = 200

INVOICE_SQL = """
WITH h AS (
  INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, branch_code, currency,
                              prices_include_vat, payment_terms_days, status)
  VALUES (%(number)s, %(date)s, %(customer)s, 'BW1', 'BB1', 'GBP', true, 30, 'posted')
  RETURNING invoice_id)
INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, description, qty, unit_price, vat_rate)
SELECT h.invoice_id, l.no, l.sku, l.description, l.qty, l.price, 20
FROM h, unnest(%(skus)s::text[], %(descriptions)s::text[], %(qtys)s::numeric[],
               %(prices)s::numeric[]) WITH ORDINALITY AS l(sku, description, qty, price, no)
"""


class RetailDataError(ValueError):
    """The R data file is not the complete Online Retail data frame."""


def _decimal(value: float, row: int, column: str) -> Decimal:
    """The exact decimal the R file's double stands for: R stores ``Quantity``/``UnitPrice`` as
    IEEE doubles, and ``repr`` gives the shortest decimal that reads back as the same double —
    the figure as published (GBP prices with at most 3 decimals; checked against the CSV slice
    in tests/bench/test_dataset.py). Never used in arithmetic as a float.

    Raises ``RetailDataError`` for a missing or non-finite value."""
    if value is None or not math.isfinite(value):
        raise RetailDataError(f"row {row}: {column} {value!r} is not a number")
    return Decimal(repr(float(value)))


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else str(value).strip()


def read_rda(path: Path | str) -> list[orr.SourceLine]:
    """Every line of the Online Retail R data file at ``path`` in file order (``row`` 1 = the
    first), as the loader's :class:`~salesledger.datasets.online_retail.SourceLine`.

    Raises:
        RetailDataError: the file holds not exactly one data frame with the loader's columns,
            or a value is unreadable.
        ImportError: pyreadr is not installed (``pip install -e '.[bench]'``).
        OSError: the file cannot be read.
    """
    import pyreadr  # the bench's optional dependency: the product never reads R data

    frames = pyreadr.read_r(str(path))
    if len(frames) != 1:
        raise RetailDataError(f"{path}: {len(frames)} objects, expected one data frame")
    frame = next(iter(frames.values()))
    if tuple(frame.columns) != orr.COLUMNS:
        raise RetailDataError(f"{path}: columns {tuple(frame.columns)}, expected {orr.COLUMNS}")
    columns = {name: frame[name].tolist() for name in orr.COLUMNS}
    out: list[orr.SourceLine] = []
    for i in range(len(frame)):
        row = i + 1
        customer = columns["CustomerID"][i]
        at = columns["InvoiceDate"][i]
        if at is None or at != at:  # NaT
            raise RetailDataError(f"row {row}: InvoiceDate missing")
        out.append(orr.SourceLine(
            row=row, invoice_no=_text(columns["InvoiceNo"][i]), sku=_text(columns["StockCode"][i]),
            description=_text(columns["Description"][i]),
            qty=_decimal(columns["Quantity"][i], row, "Quantity"),
            at=dt.datetime.fromisoformat(str(at)).replace(tzinfo=None),
            unit_price=_decimal(columns["UnitPrice"][i], row, "UnitPrice"),
            customer=None if customer is None or math.isnan(customer) else str(int(customer)),
            country=_text(columns["Country"][i])))
    return out


@dataclass(frozen=True)
class RetailInvoice:
    """One invoice of the backlog: the source ``invoice_no``, the customer code and its lines
    ``(sku, description, qty, unit price GBP incl. VAT)`` in file order."""

    invoice_no: str
    customer: str
    lines: tuple[tuple[str, str, Decimal, Decimal], ...]


@dataclass(frozen=True)
class RetailBacklog:
    """The invoices of one backlog (module docstring); ``source_lines`` of the file, ``lines``
    committed per backlog, ``left_out_lines`` per reason (``lines`` + left out = source);
    master data: ``customers`` (codes) and ``products`` (sku -> (name, kind))."""

    invoices: tuple[RetailInvoice, ...]
    source_lines: int
    lines: int
    left_out_lines: dict[str, int]
    customers: tuple[str, ...]
    products: dict[str, tuple[str, str]]


def plan_backlog(source: list[orr.SourceLine], lines_max: int | None = None) -> RetailBacklog:
    """The backlog of the module docstring from the file's lines (pure). With ``lines_max``
    (a quick run), invoices after the one that reaches ``lines_max`` lines are left out too
    (``beyond_lines_max``)."""
    left: Counter[str] = Counter()
    groups: dict[str, list[orr.SourceLine]] = {}
    for line in source:
        groups.setdefault(line.invoice_no, []).append(line)
    invoices: list[RetailInvoice] = []
    committed = 0
    for number, lines in groups.items():
        if lines_max is not None and committed >= lines_max:
            left["beyond_lines_max"] += len(lines)
            continue
        if number.startswith("C"):
            left["cancellation_line"] += len(lines)
            continue
        kept = [l for l in lines if l.qty > 0 and l.unit_price >= 0]
        left["quantity_not_positive"] += sum(1 for l in lines if l.qty <= 0)
        left["negative_price"] += sum(1 for l in lines if l.qty > 0 and l.unit_price < 0)
        total = sum((l.qty * l.unit_price for l in kept), Decimal(0))
        if not any(not orr.is_service(l.sku) for l in kept) or total < INVOICE_TOTAL_MIN_GBP:
            left["invoice_without_goods_or_value"] += len(kept)
            continue
        invoices.append(RetailInvoice(number, orr.customer_code(lines[0]), tuple(
            (l.sku, l.description, l.qty, l.unit_price) for l in kept)))
        committed += len(kept)
    catalogue = orr.product_catalogue(source)
    assert committed + sum(left.values()) == len(source), "every source line is accounted for"
    return RetailBacklog(
        invoices=tuple(invoices), source_lines=len(source), lines=committed,
        left_out_lines={k: v for k, v in sorted(left.items()) if v},
        customers=tuple(sorted({inv.customer for inv in invoices})),
        products={sku: (p.name, p.kind) for sku, p in catalogue.items()})


def load_master_data(dsn: str, backlog: RetailBacklog) -> int:
    """Customers and products of ``backlog`` (the bench's branch, warehouse and unit must exist:
    :func:`salesledger.bench.workload.load_master_data` first) and one opening goods receipt
    ``BGR-RETAIL`` of every goods SKU. Idempotent. Returns the receipt's line count."""
    goods = sorted(sku for sku, (_, kind) in backlog.products.items() if kind == "goods")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sales.customers (code, name, payment_terms_days) VALUES (%s, %s, 30) "
                "ON CONFLICT DO NOTHING", [(c, f"Online Retail customer {c}")
                                           for c in backlog.customers])
            cur.executemany(
                "INSERT INTO sales.products (sku, name, unit, vat_rate, kind) VALUES "
                "(%s, %s, 'pcs', 20, %s) ON CONFLICT DO NOTHING",
                [(sku, name[:200], kind) for sku, (name, kind) in backlog.products.items()])
        workload.opening_receipt(conn, "BGR-RETAIL", goods, OPENING_QTY, OPENING_UNIT_COST)
    return len(goods)


def write_invoices(dsn: str, backlog: RetailBacklog, tag: str) -> float:
    """Commit every invoice of ``backlog`` as ``B<tag>-<seq>`` (one transaction each, pipeline
    mode, :data:`WRITE_BATCH_MAX` per round trip); returns the wall seconds it took."""
    day = dt.date.today()
    started = time.monotonic()
    invoices = backlog.invoices
    with psycopg.connect(dsn, autocommit=True) as conn:
        for first in range(0, len(invoices), WRITE_BATCH_MAX):
            with conn.pipeline():
                for seq, inv in enumerate(invoices[first:first + WRITE_BATCH_MAX], start=first + 1):
                    conn.execute(INVOICE_SQL, {
                        "number": f"B{tag}-{seq:07d}", "date": day, "customer": inv.customer,
                        "skus": [l[0] for l in inv.lines],
                        "descriptions": [l[1] or None for l in inv.lines],
                        "qtys": [l[2] for l in inv.lines], "prices": [l[3] for l in inv.lines]})
    return time.monotonic() - started
