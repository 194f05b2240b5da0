"""The UCI "Online Retail" dataset (Chen 2015, doi:10.24432/C5BW33, CC BY 4.0): reading and rules.

Input: a CSV with the header ``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,
CustomerID,Country`` (dates wall-clock ``YYYY-MM-DD HH:MM:SS``), given by path — the product
never reads ``../shared`` itself. Quantities and prices are parsed from the CSV *text* as
:class:`~decimal.Decimal` (never float); quantities are whole numbers in the data but may be
fractional (the sales schema keeps 3 decimals).

Assumptions (each one is also in the README section "Data"):

1. A UK retailer: amounts are GBP, and ``UnitPrice`` **includes 20% VAT** (the dataset has no VAT
   column); every product, goods or service, carries the 20% standard rate.
2. Service lines are not goods (no stock, no cost): the StockCodes in :data:`SERVICE_CODES`
   (postage ``POST``/``DOT``/``C2``, ``M`` manual, ``S`` samples, ``D`` discount, ``AMAZONFEE``,
   ``BANK CHARGES``, ``CRUK`` commission, ``B`` bad-debt adjustment, compared case-insensitively)
   and gift vouchers (``gift_…``). Everything else is goods. StockCodes are kept as written
   (``15056bl`` and ``15056BL`` are two SKUs); a SKU's name is its most frequent non-empty
   description in the file (ties: the first seen).
3. A line without ``CustomerID`` is a cash sale to the walk-in customer :data:`WALK_IN`.
4. A non-``C`` invoice whose lines all have price 0 and no customer is a **stock adjustment**, not
   a sale: negative quantities become a stock write-off (reason: the descriptions), positive
   ones (stock found) have no document in the sales schema and are dead letters
   ``positive_stock_adjustment``. Other price-0 lines are free goods on an invoice. A negative
   line on a priced invoice is a dead letter ``negative_quantity_on_invoice``.
5. A cancellation ``C…`` line is a **return against that customer's latest earlier invoice of the
   SKU** among the invoices of the simulated slice that still have at least the returned
   quantity of the SKU left (earlier = earlier timestamp, or same timestamp and earlier in the
   file). The returned quantity is taken from that invoice's lines of the SKU in line order.
   Lines matching different invoices make one return per invoice (``C536379``, or
   ``C536379-1``, ``C536379-2``… when split). Unmatched lines are dead letters with a reason:
   ``exceeds_sold_quantity`` (the slice has earlier invoices of the SKU for that customer, with
   too little left), ``invoice_before_slice`` (the only earlier sales are before the slice, so
   their invoices are not in the sales database), ``no_earlier_invoice`` (none in the file).
6. An invoice's document time is its earliest line time (16 invoices span two minutes).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Literal

DATASET = "online-retail"
CURRENCY = "GBP"
VAT_RATE_PERCENT = Decimal("20")
PRICES_INCLUDE_VAT = True
WALK_IN = "WALKIN"
BRANCH = "UK"
WAREHOUSE = "UK-MAIN"
UNIT = "pcs"
COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
           "CustomerID", "Country")
#: Non-goods StockCodes (upper-cased for comparison); gift vouchers ``gift_…`` are services too.
SERVICE_CODES = frozenset({"POST", "DOT", "C2", "M", "S", "D", "AMAZONFEE", "BANK CHARGES",
                           "CRUK", "B"})
_GIFT_PREFIX = "gift_"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

DeadLetterReason = Literal["positive_stock_adjustment", "negative_quantity_on_invoice",
                           "exceeds_sold_quantity", "invoice_before_slice", "no_earlier_invoice"]
DEAD_LETTER_REASONS: tuple[str, ...] = ("positive_stock_adjustment", "negative_quantity_on_invoice",
                                        "exceeds_sold_quantity", "invoice_before_slice",
                                        "no_earlier_invoice")


class DatasetError(ValueError):
    """The file is not the Online Retail CSV, or a value cannot be read (row number in message)."""


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One CSV row: ``row`` (1 = first data row), quantity and price as exact Decimals (price in
    GBP incl. VAT per unit), ``customer`` None for walk-in, ``at`` the wall-clock time."""

    row: int
    invoice_no: str
    sku: str
    description: str
    qty: Decimal
    at: dt.datetime
    unit_price: Decimal
    customer: str | None
    country: str

    @property
    def is_cancellation(self) -> bool:
        """True for lines of a ``C…`` invoice (a cancellation)."""
        return self.invoice_no.startswith("C")


def is_service(sku: str) -> bool:
    """True when ``sku`` is a service line (see :data:`SERVICE_CODES`), not goods."""
    return sku.upper() in SERVICE_CODES or sku.lower().startswith(_GIFT_PREFIX)


def _decimal(text: str, row: int, column: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise DatasetError(f"row {row}: {column} {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise DatasetError(f"row {row}: {column} {text!r} is not finite")
    return value


def read_csv(path: Path | str) -> list[SourceLine]:
    """Read the whole Online Retail CSV at ``path`` (``.gz``: gzip-compressed) in file order.

    Raises:
        DatasetError: the header differs from :data:`COLUMNS` or a value is unreadable.
        OSError: the file cannot be opened.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        return list(parse_rows(csv.reader(handle)))


def parse_rows(rows: Iterable[list[str]]) -> Iterable[SourceLine]:
    """Turn CSV records (header first) into :class:`SourceLine` objects; see :func:`read_csv`."""
    iterator = iter(rows)
    header = next(iterator, None)
    if header is None or tuple(h.strip().lstrip("\ufeff") for h in header) != COLUMNS:
        raise DatasetError(f"not the Online Retail CSV: header {header!r}, expected {COLUMNS}")
    for number, record in enumerate(iterator, start=1):
        if len(record) != len(COLUMNS):
            raise DatasetError(f"row {number}: {len(record)} fields, expected {len(COLUMNS)}")
        invoice, sku, desc, qty, when, price, customer, country = record
        try:
            at = dt.datetime.strptime(when.strip(), _DATE_FORMAT)
        except ValueError:
            raise DatasetError(f"row {number}: InvoiceDate {when!r} is not {_DATE_FORMAT}") from None
        customer = customer.strip()
        if customer.endswith(".0"):  # some exports write the id as a float; the text is kept
            customer = customer[:-2]
        yield SourceLine(row=number, invoice_no=invoice.strip(), sku=sku.strip(),
                         description=desc.strip(), qty=_decimal(qty, number, "Quantity"), at=at,
                         unit_price=_decimal(price, number, "UnitPrice"),
                         customer=customer or None, country=country.strip())


# --------------------------------------------------------------------------- slicing


def trading_days(lines: Iterable[SourceLine]) -> list[dt.date]:
    """The distinct dates that have at least one line, ascending."""
    return sorted({line.at.date() for line in lines})


def select_days(days_available: list[dt.date], days: int | None = None,
                since: dt.date | None = None) -> list[dt.date]:
    """The trading days of a slice: with ``since``, the first ``days`` trading days on or after it
    (all of them without ``days``); without ``since``, the last ``days`` trading days of the file
    (default 7). "Days" are dates that have lines, so a slice never lands on an empty Sunday.

    Raises:
        DatasetError: ``days`` < 1 or the slice is empty.
    """
    if days is not None and days < 1:
        raise DatasetError(f"--days must be at least 1, got {days}")
    if since is None:
        chosen = days_available[-(days or 7):]
    else:
        after = [d for d in days_available if d >= since]
        chosen = after[:days] if days is not None else after
    if not chosen:
        raise DatasetError(f"no trading day in the file for days={days} since={since}")
    return chosen


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class InvoiceDoc:
    """A sale: ``number`` = InvoiceNo, ``customer`` a code (walk-in: :data:`WALK_IN`), ``at`` its
    earliest line time, ``lines`` its positive-quantity source lines in file order (line_no =
    position + 1)."""

    number: str
    customer: str
    at: dt.datetime
    lines: tuple[SourceLine, ...]
    order: int  # position of the first line in the file


@dataclass(frozen=True, slots=True)
class ReturnLineMatch:
    """A returned quantity (> 0) of ``sku`` taken from line ``invoice_line_no`` of the invoice."""

    sku: str
    qty: Decimal
    invoice_line_no: int
    source_row: int


@dataclass(frozen=True, slots=True)
class ReturnDoc:
    """A return of ``customer`` against invoice ``against`` made from the lines of cancellation
    ``source_number``; ``number`` is the C-number, suffixed ``-k`` when the cancellation is split."""

    number: str
    source_number: str
    customer: str
    against: str
    at: dt.datetime
    lines: tuple[ReturnLineMatch, ...]
    order: int


@dataclass(frozen=True, slots=True)
class WriteOffDoc:
    """A stock adjustment (negative quantities at price 0, no customer): ``lines`` with qty < 0
    in the source; written off with positive quantities; ``reason`` from the descriptions."""

    number: str
    at: dt.datetime
    lines: tuple[SourceLine, ...]
    reason: str
    order: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A source line that becomes no document: ``reason`` (one of :data:`DEAD_LETTER_REASONS`), a
    human ``detail`` and its ``position`` in its document; ``at`` is when the sales program would
    have met it."""

    line: SourceLine
    reason: str
    detail: str
    #: the line's position (1-based) among its source document's lines in the file; with the
    #: document number it names the line independently of which file (full or subset) was read
    position: int = 0

    @property
    def at(self) -> dt.datetime:
        """When the source line happened."""
        return self.line.at


@dataclass(frozen=True, slots=True)
class SliceDocuments:
    """Everything the slice's lines become: invoices, returns, write-offs and dead letters."""

    invoices: tuple[InvoiceDoc, ...]
    returns: tuple[ReturnDoc, ...]
    write_offs: tuple[WriteOffDoc, ...]
    dead_letters: tuple[DeadLetter, ...]


def customer_code(line: SourceLine) -> str:
    """The sales-DB customer code of a line: its CustomerID, or :data:`WALK_IN`."""
    return line.customer or WALK_IN


def _group(lines: Iterable[SourceLine]) -> dict[str, list[SourceLine]]:
    groups: dict[str, list[SourceLine]] = {}
    for line in lines:
        groups.setdefault(line.invoice_no, []).append(line)
    return groups


def _is_adjustment(lines: list[SourceLine]) -> bool:
    return all(l.unit_price == 0 and l.customer is None for l in lines)


def build_documents(all_lines: list[SourceLine], days: list[dt.date]) -> SliceDocuments:
    """Apply rules 3-6 of the module docstring to the lines dated in ``days``.

    ``all_lines`` is the whole file (used only to tell ``invoice_before_slice`` from
    ``no_earlier_invoice``). Returns documents in time order (ties: file order).
    """
    wanted = set(days)
    first_day = min(days)
    slice_lines = [l for l in all_lines if l.at.date() in wanted]
    invoices: list[InvoiceDoc] = []
    write_offs: list[WriteOffDoc] = []
    dead: list[DeadLetter] = []
    cancellations: list[list[SourceLine]] = []
    for number, lines in _group(slice_lines).items():
        order, at = lines[0].row, min(l.at for l in lines)
        if number.startswith("C"):
            cancellations.append(lines)
        elif _is_adjustment(lines):
            negative = tuple(l for l in lines if l.qty < 0)
            for l in lines:
                if l.qty > 0:
                    dead.append(DeadLetter(l, "positive_stock_adjustment",
                                           f"{number}: +{l.qty} {l.sku} at price 0 without customer"))
            if negative:
                reason = "; ".join(sorted({l.description for l in negative if l.description})) \
                    or "stock adjustment"
                write_offs.append(WriteOffDoc(number, at, negative, reason[:200], order))
        else:
            sold = tuple(l for l in lines if l.qty > 0)
            for l in lines:
                if l.qty <= 0:
                    dead.append(DeadLetter(l, "negative_quantity_on_invoice",
                                           f"{number}: quantity {l.qty} on a sales invoice"))
            if sold:
                invoices.append(InvoiceDoc(number, customer_code(lines[0]), at, sold, order))
    before_slice = {(customer_code(l), l.sku) for l in all_lines
                    if l.at.date() < first_day and not l.is_cancellation and l.qty > 0}
    returns, unmatched = match_returns(invoices, cancellations, before_slice)
    dead.extend(unmatched)
    position = {l.row: no for lines in _group(slice_lines).values() for no, l in enumerate(lines, start=1)}
    dead = [dataclasses.replace(d, position=position[d.line.row]) for d in dead]
    key = lambda d: (d.at, d.order)  # noqa: E731
    dead.sort(key=lambda d: (d.line.at, d.line.row))
    return SliceDocuments(tuple(sorted(invoices, key=key)), tuple(sorted(returns, key=key)),
                          tuple(sorted(write_offs, key=key)), tuple(dead))


def match_returns(invoices: list[InvoiceDoc], cancellations: list[list[SourceLine]],
                  before_slice: set[tuple[str, str]]) -> tuple[list[ReturnDoc], list[DeadLetter]]:
    """Match cancellation lines to invoices (rule 5); returns (return documents, dead letters).

    Cancellations are processed in time order (ties: file order) so that an earlier return
    reduces what a later one can take. ``before_slice`` holds (customer, sku) pairs sold before
    the slice.
    """
    # remaining[(invoice, line_no)] = quantity not yet returned
    remaining: dict[tuple[str, int], Decimal] = {}
    by_customer_sku: dict[tuple[str, str], list[InvoiceDoc]] = defaultdict(list)
    for inv in sorted(invoices, key=lambda i: (i.at, i.order)):
        for no, line in enumerate(inv.lines, start=1):
            remaining[(inv.number, no)] = line.qty
            bucket = by_customer_sku[(inv.customer, line.sku)]
            if not bucket or bucket[-1] is not inv:
                bucket.append(inv)
    returns: list[ReturnDoc] = []
    dead: list[DeadLetter] = []
    for lines in sorted(cancellations, key=lambda ls: (min(l.at for l in ls), ls[0].row)):
        at, number = min(l.at for l in lines), lines[0].invoice_no
        groups: dict[str, list[ReturnLineMatch]] = {}
        for line in lines:
            found = _match_line(line, at, by_customer_sku, remaining, before_slice)
            if isinstance(found, DeadLetter):
                dead.append(found)
                continue
            inv, takes = found
            groups.setdefault(inv.number, []).extend(takes)
        names = [number] if len(groups) == 1 else [f"{number}-{k}" for k in range(1, len(groups) + 1)]
        for name, (against, matched) in zip(names, groups.items()):
            returns.append(ReturnDoc(name, number, customer_code(lines[0]), against, at,
                                     tuple(matched), lines[0].row))
    return returns, dead


def _match_line(line: SourceLine, at: dt.datetime,
                by_customer_sku: dict[tuple[str, str], list[InvoiceDoc]],
                remaining: dict[tuple[str, int], Decimal],
                before_slice: set[tuple[str, str]]) -> tuple[InvoiceDoc, list[ReturnLineMatch]] | DeadLetter:
    customer, qty = customer_code(line), -line.qty
    if qty <= 0:
        return DeadLetter(line, "no_earlier_invoice", f"{line.invoice_no}: quantity {line.qty} is not a return")
    earlier = [inv for inv in by_customer_sku.get((customer, line.sku), ())
               if (inv.at, inv.order) < (at, line.row)]
    for inv in reversed(earlier):
        keys = [(inv.number, no) for no, l in enumerate(inv.lines, start=1) if l.sku == line.sku]
        if sum(remaining[k] for k in keys) < qty:
            continue
        takes, left = [], qty
        for key in keys:
            part = min(left, remaining[key])
            if part > 0:
                remaining[key] -= part
                left -= part
                takes.append(ReturnLineMatch(line.sku, part, key[1], line.row))
        assert left == 0, "a matched invoice covers the whole returned quantity"
        return inv, takes
    if earlier:
        return DeadLetter(line, "exceeds_sold_quantity",
                          f"{line.invoice_no}: returning {qty} {line.sku}; earlier invoices of "
                          f"{customer} in the slice have less left")
    if (customer, line.sku) in before_slice:
        return DeadLetter(line, "invoice_before_slice",
                          f"{line.invoice_no}: {customer} bought {line.sku} only before the slice")
    return DeadLetter(line, "no_earlier_invoice",
                      f"{line.invoice_no}: no earlier invoice of {line.sku} for {customer}")


# --------------------------------------------------------------------------- master data


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """A SKU as master data: name, kind ``goods``/``service``, and its lowest positive price in
    the whole file (GBP incl. VAT; None if never sold at a price)."""

    sku: str
    name: str
    kind: str
    min_price_gross: Decimal | None


def product_catalogue(all_lines: list[SourceLine]) -> dict[str, ProductInfo]:
    """Every SKU of the file with its name (rule 2) and lowest positive price."""
    names: dict[str, Counter] = defaultdict(Counter)
    first_seen: dict[str, dict[str, int]] = defaultdict(dict)
    min_price: dict[str, Decimal] = {}
    for line in all_lines:
        if line.description:
            names[line.sku][line.description] += 1
            first_seen[line.sku].setdefault(line.description, line.row)
        if line.unit_price > 0 and (line.sku not in min_price or line.unit_price < min_price[line.sku]):
            min_price[line.sku] = line.unit_price
    out: dict[str, ProductInfo] = {}
    for sku in dict.fromkeys(l.sku for l in all_lines):
        counts = names.get(sku)
        if counts:
            name = min(counts, key=lambda d: (-counts[d], first_seen[sku][d]))
        else:
            name = f"(no description) {sku}"
        out[sku] = ProductInfo(sku, name, "service" if is_service(sku) else "goods", min_price.get(sku))
    return out


def customer_countries(lines: Iterable[SourceLine]) -> dict[str, str]:
    """Customer code -> most frequent country of its lines (ties: first seen)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for line in lines:
        counts[customer_code(line)][line.country] += 1
    return {c: cnt.most_common(1)[0][0] for c, cnt in counts.items()}
