"""Validation before emission: a whole document checked against the master data and the
documents it refers to; an invalid one becomes a dead letter instead of a document event.

The sales program names master data by code without foreign keys (deploy/sql/sales/001), so
nothing stops an invoice of a SKU that does not exist. Assembly runs every document version it
would emit through :meth:`DocumentValidator.validate`; a failure is a :class:`ValidationFailed`
(a :class:`~salesledger.streams.deadletter.RejectedRecord`) with one of these reason codes:

===============================  ===========================================================
``unknown_customer``             invoice / payment / return of a customer code not in
                                 ``sales.customers``
``unknown_sku``                  a line of a SKU not in ``sales.products``
``unknown_unit``                 a line's product has a unit not in ``sales.units``
``non_positive_quantity``        a line quantity of zero or below
``vat_rate_not_allowed``         an invoice line's VAT rate differs from the product's
                                 ``vat_rate`` (a goods receipt's VAT is the supplier's:
                                 not checked)
``missing_exchange_rate``        a currency other than the functional one that has no rate at
                                 all in ``sales.currency_rates`` (an unknown code: nothing to
                                 wait for). A known currency whose rate for the document date
                                 (or the ``rate_max_age_days`` before it) is not there yet
                                 passes: the posting stage holds the document
                                 (``no_exchange_rate``) and posts it when the rate arrives
                                 (assembly rule 8 sends rates in commit order)
``totals_mismatch``              amounts that do not add up: a payment's allocations above its
                                 amount (golden README), a payment amount or an allocation of
                                 zero or below (the reference schema carries no other totals)
``unknown_invoice``              a return against an invoice number not posted (or cancelled)
``return_exceeds_sold``          a return above what is left to return of the invoice line
                                 (per named line, else per SKU in line order), counting every
                                 accepted return against the invoice
===============================  ===========================================================

What is checked: only versions with ``status == "active"`` (a cancellation or deletion
carries the last content and must reach the ledger to reverse it). Master data comes from
:class:`MasterData`, seeded from the sales database at start and kept current by the
master-data CDC events; invoices and accepted returns are remembered in
:class:`DocumentsView` (every emitted invoice, valid or not — it exists in the sales program —
but only accepted returns, since a rejected return took nothing back).

Timing: master-data rows are applied when they arrive. A document of a source transaction
that also writes master data (a new customer and its first invoice in one transaction) is
validated only after that transaction's master rows were applied (assembly rule 6: the
assembler waits for the master rows the END marker announces, or for a row of the same table
from a later transaction; only transactions younger than the master topics' compaction lag
wait, so a row compaction removed never holds a document back — old history replayed at
start relies on the validator's seed from the database).

Pure: no Kafka, Faust or database import. Master data is in memory (it grows with the master
tables, not with the documents); the :class:`DocumentsView` grows with the documents and takes
its mappings from the caller (plain dicts by default).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, MutableMapping

from salesledger.ledger.model import (
    AnyDocument,
    GoodsReceipt,
    Invoice,
    Payment,
    SalesReturn,
    WriteOff,
)
from salesledger.streams.cdc import ChangeEvent, Op
from salesledger.streams.deadletter import RejectedRecord

#: The master-data tables validation reads (their CDC topics feed :class:`MasterData`).
MASTER_TABLES = frozenset({"sales.customers", "sales.products", "sales.units",
                           "sales.currency_rates"})
#: Every reason code this module gives (see the module docstring).
REASONS = ("unknown_customer", "unknown_sku", "unknown_unit", "non_positive_quantity",
           "vat_rate_not_allowed", "missing_exchange_rate", "totals_mismatch",
           "unknown_invoice", "return_exceeds_sold")
ZERO = Decimal(0)


class ValidationFailed(RejectedRecord):
    """A document version that fails validation; ``reason`` is one of :data:`REASONS`."""

    reason = "validation_failed"


@dataclass(frozen=True, slots=True)
class Product:
    """One ``sales.products`` row: ``vat_rate`` in percent, ``kind`` goods | service."""

    sku: str
    unit: str
    vat_rate: Decimal
    kind: str = "goods"


@dataclass(slots=True)
class MasterData:
    """Master data as of the assembler's position (codes -> what validation needs).

    ``customers``: customer codes; ``products``: SKU -> :class:`Product`; ``units``: unit codes;
    ``rates``: (currency, date) -> rate (units of the functional currency per ``nominal``
    units, as ``sales.currency_rates`` stores it). Fill with :meth:`apply` (CDC events of
    :data:`MASTER_TABLES`) or the ``put_*`` methods (a database seed, tests).
    """

    customers: set[str] = field(default_factory=set)
    products: dict[str, Product] = field(default_factory=dict)
    units: set[str] = field(default_factory=set)
    rates: dict[tuple[str, dt.date], Decimal] = field(default_factory=dict)

    def put_customer(self, code: str) -> None:
        """Add (or keep) a customer code."""
        self.customers.add(code)

    def put_product(self, product: Product) -> None:
        """Add or replace a product by SKU."""
        self.products[product.sku] = product

    def put_unit(self, code: str) -> None:
        """Add (or keep) a unit code."""
        self.units.add(code)

    def put_rate(self, currency: str, day: dt.date, rate: Decimal) -> None:
        """Add or replace the rate of ``currency`` on ``day``."""
        assert isinstance(rate, Decimal), "rates are Decimal"
        self.rates[(currency.strip(), day)] = rate

    def apply(self, event: ChangeEvent) -> bool:
        """Apply one row change of a master-data table; False for any other table.

        Every captured table has REPLICA IDENTITY FULL, so a delete carries the whole old row
        (its code). An update that changes a code removes the old one (``before``).
        """
        table = event.source.qualified_table
        if table not in MASTER_TABLES or event.op in (Op.TRUNCATE, Op.MESSAGE):
            return False
        if event.before is not None and (event.op is Op.DELETE or event.op is Op.UPDATE):
            _forget(self, table, event.before)
        if event.op is not Op.DELETE and event.after is not None:
            _remember(self, table, event.after)
        return True

    def rate_for(self, currency: str, day: dt.date, max_age_days: int) -> Decimal | None:
        """The rate on ``day`` or the latest in the ``max_age_days`` before it, else None."""
        for back in range(max_age_days + 1):
            rate = self.rates.get((currency, day - dt.timedelta(days=back)))
            if rate is not None:
                return rate
        return None


def _remember(master: MasterData, table: str, row: Any) -> None:
    if table == "sales.customers":
        master.put_customer(row.value("code"))
    elif table == "sales.products":
        master.put_product(Product(sku=row.value("sku"), unit=row.value("unit"),
                                   vat_rate=row.money("vat_rate"),
                                   kind=row.get("kind") or "goods"))
    elif table == "sales.units":
        master.put_unit(row.value("code"))
    else:
        master.put_rate(row.value("currency"), row.value("date"), row.money("rate"))


def _forget(master: MasterData, table: str, row: Any) -> None:
    if table == "sales.customers":
        master.customers.discard(row.get("code"))
    elif table == "sales.products":
        master.products.pop(row.get("sku"), None)
    elif table == "sales.units":
        master.units.discard(row.get("code"))
    else:
        master.rates.pop(((row.get("currency") or "").strip(), row.get("date")), None)


# --------------------------------------------------------------------------- documents view


@dataclass(frozen=True, slots=True)
class SoldLine:
    """An invoice line as returns see it: ``line_no``, ``sku``, ``qty`` (units)."""

    line_no: int
    sku: str
    qty: Decimal


@dataclass(slots=True)
class DocumentsView:
    """What returns are checked against: posted invoices' lines by invoice number, and the
    accepted returns.

    ``invoices``: invoice number -> its lines; ``returns``: return number -> (invoice number,
    ((sku, qty, line_no | None), ...)); ``returns_by_invoice``: invoice number -> ((order,
    return number), ...) of the accepted returns against it, by ``order`` — the order in
    which the return was first accepted (kept when it is replaced), so a check reads only the
    returns of its invoice. All three grow with the documents seen: they are plain dicts by
    default, any ``MutableMapping`` will do (values are immutable and always stored back; the
    assembly agent passes disk-backed ones, :mod:`salesledger.streams.local_state`, CDC-20).
    """

    invoices: MutableMapping[str, tuple[SoldLine, ...]] = field(default_factory=dict)
    returns: MutableMapping[str, tuple[str, tuple[tuple[str, Decimal, int | None], ...]]] = \
        field(default_factory=dict)
    returns_by_invoice: MutableMapping[str, tuple[tuple[int, str], ...]] = field(
        default_factory=dict)
    _next_order: int = field(default=0, init=False, repr=False)

    def put_invoice(self, number: str, lines: Iterable[SoldLine]) -> None:
        """Remember (or replace) a posted invoice's lines."""
        self.invoices[number] = tuple(lines)

    def put_return(self, number: str, against: str,
                   lines: Iterable[tuple[str, Decimal, int | None]]) -> None:
        """Remember (or replace) an accepted return (a replaced one keeps its order)."""
        old = self.returns.get(number)
        order = None
        if old is not None:
            order = next(o for o, n in self.returns_by_invoice[old[0]] if n == number)
            if old[0] != against:
                self._unlink(old[0], number)
        if order is None:
            order, self._next_order = self._next_order, self._next_order + 1
        self.returns[number] = (against, tuple(lines))
        linked = self.returns_by_invoice.get(against, ())
        if (order, number) not in linked:
            self.returns_by_invoice[against] = tuple(sorted(linked + ((order, number),)))

    def forget_return(self, number: str) -> None:
        """Forget a return (cancelled or deleted); nothing if it was not accepted."""
        old = self.returns.pop(number, None)
        if old is not None:
            self._unlink(old[0], number)

    def _unlink(self, invoice: str, number: str) -> None:
        left = tuple(item for item in self.returns_by_invoice.get(invoice, ()) if item[1] != number)
        if left:
            self.returns_by_invoice[invoice] = left
        else:
            self.returns_by_invoice.pop(invoice, None)

    def observe(self, document: AnyDocument, accepted: bool) -> None:
        """Update the view with an emitted version (``accepted``: it passed validation)."""
        active = document.status == "active"
        if isinstance(document, Invoice):
            if active:
                self.put_invoice(document.number, (SoldLine(l.line_no, l.sku, l.qty)
                                                   for l in document.lines))
            else:
                self.invoices.pop(document.number, None)
        elif isinstance(document, SalesReturn):
            if active and accepted:
                self.put_return(document.number, document.against,
                                ((l.sku, l.qty, l.line) for l in document.lines))
            elif not active:
                self.forget_return(document.number)

    def left_to_return(self, invoice: str, *, excluding: str | None = None
                       ) -> dict[int, Decimal] | None:
        """Quantity left to return per invoice line_no after the accepted returns (``excluding``
        one return number: the version being checked replaces it); None for an unknown
        invoice, or when the accepted returns already exceed it."""
        lines = self.invoices.get(invoice)
        if lines is None:
            return None
        left = {l.line_no: l.qty for l in lines}
        for _, number in self.returns_by_invoice.get(invoice, ()):
            if number != excluding:
                if _take(lines, left, self.returns[number][1]) is not None:
                    break  # an earlier acceptance no longer fits (the invoice was edited)
        return left


def _take(lines: tuple[SoldLine, ...], left: dict[int, Decimal],
          taken: Iterable[tuple[str, Decimal, int | None]]) -> str | None:
    """Take each (sku, qty, line) from ``left`` as the engine does (a named line, else the
    first line of the SKU with quantity left); the first problem, or None."""
    for sku, qty, line_no in taken:
        match = next((l for l in lines if (l.line_no == line_no if line_no is not None
                                           else l.sku == sku and left[l.line_no] > 0)), None)
        if match is None or match.sku != sku:
            where = f"line {line_no}" if line_no is not None else "any line"
            return f"{sku}: no {where} of the invoice sells it with quantity left"
        if qty > left[match.line_no]:
            return (f"{sku}: returning {qty}, only {left[match.line_no]} left on line "
                    f"{match.line_no}")
        left[match.line_no] -= qty
    return None


# --------------------------------------------------------------------------- the validator


class DocumentValidator:
    """Checks document versions before emission (rules in the module docstring).

    ``master``: the master data; ``view``: invoices and accepted returns;
    ``functional_currency``: ISO code of the ledger (no rate needed); ``rate_max_age_days``: as
    the engine's setting of that name.
    """

    def __init__(self, master: MasterData | None = None, view: DocumentsView | None = None, *,
                 functional_currency: str = "AZN", rate_max_age_days: int = 7) -> None:
        self.master = master if master is not None else MasterData()
        self.view = view if view is not None else DocumentsView()
        self.functional_currency = functional_currency
        self.rate_max_age_days = rate_max_age_days
        self.failures: dict[str, int] = {}

    def enrich(self, document: AnyDocument) -> AnyDocument:
        """``document`` with each invoice line's ``kind`` from its product (goods when the SKU
        is unknown: validation rejects it anyway)."""
        if not isinstance(document, Invoice):
            return document
        lines = tuple(dataclasses.replace(line, kind=product.kind)
                      if (product := self.master.products.get(line.sku)) is not None
                      and product.kind != line.kind else line
                      for line in document.lines)
        return document if lines == document.lines else dataclasses.replace(document,
                                                                             lines=lines)

    def validate(self, document: AnyDocument) -> ValidationFailed | None:
        """Check one emitted version and remember it in the view; the failure, or None.
        Failures are counted per reason in ``failures``."""
        error = self.check(document) if document.status == "active" else None
        self.view.observe(document, accepted=error is None)
        if error is not None:
            self.failures[error.reason] = self.failures.get(error.reason, 0) + 1
        return error

    def check(self, document: AnyDocument) -> ValidationFailed | None:
        """The first problem of ``document`` (pure: the view is not changed), or None."""
        problem = (self._customer(document) or self._lines(document)
                   or self._currency(document) or self._amounts(document)
                   or self._against(document))
        if problem is None:
            return None
        reason, message = problem
        return ValidationFailed(f"{document.key}: {message}", reason=reason,
                                document_id=document.key)

    # ---- rules (each: (reason, message) or None) --------------------------------------------

    def _customer(self, doc: AnyDocument) -> tuple[str, str] | None:
        customer = getattr(doc, "customer", None)
        if isinstance(doc, (Invoice, Payment, SalesReturn)) and customer not in self.master.customers:
            return "unknown_customer", f"customer {customer!r} is not in the customer master data"
        return None

    def _lines(self, doc: AnyDocument) -> tuple[str, str] | None:
        if not isinstance(doc, (Invoice, SalesReturn, GoodsReceipt, WriteOff)):
            return None
        for line in doc.lines:
            product = self.master.products.get(line.sku)
            if product is None:
                return "unknown_sku", f"SKU {line.sku!r} is not in the product master data"
            if product.unit not in self.master.units:
                return "unknown_unit", f"SKU {line.sku!r} has unit {product.unit!r}, not a known unit"
            if line.qty <= 0:
                return "non_positive_quantity", f"SKU {line.sku!r}: quantity {line.qty}"
            rate = line.vat_rate if isinstance(doc, Invoice) else None
            if rate is not None and rate != product.vat_rate:
                return ("vat_rate_not_allowed",
                        f"SKU {line.sku!r}: VAT {rate} %, the product allows {product.vat_rate} %")
        return None

    def _currency(self, doc: AnyDocument) -> tuple[str, str] | None:
        if doc.currency == self.functional_currency:
            return None
        if not any(currency == doc.currency for currency, _ in self.master.rates):
            return ("missing_exchange_rate",
                    f"no {doc.currency} rate at all in sales.currency_rates (unknown currency)")
        return None  # a missing rate for the date: the engine holds it (no_exchange_rate)

    @staticmethod
    def _amounts(doc: AnyDocument) -> tuple[str, str] | None:
        if not isinstance(doc, Payment):
            return None
        if doc.amount <= 0 or any(a.amount <= 0 for a in doc.allocations):
            return "totals_mismatch", "payment amount and allocations must be above zero"
        allocated = sum((a.amount for a in doc.allocations), ZERO)
        if allocated > doc.amount:
            return ("totals_mismatch",
                    f"allocations add up to {allocated}, above the amount {doc.amount}")
        return None

    def _against(self, doc: AnyDocument) -> tuple[str, str] | None:
        if not isinstance(doc, SalesReturn):
            return None
        left = self.view.left_to_return(doc.against, excluding=doc.number)
        if left is None:
            return "unknown_invoice", f"invoice {doc.against!r} is not a posted invoice"
        problem = _take(self.view.invoices[doc.against], left,
                        ((l.sku, l.qty, l.line) for l in doc.lines))
        return ("return_exceeds_sold", f"against {doc.against}: {problem}") if problem else None


__all__ = [
    "MASTER_TABLES",
    "REASONS",
    "DocumentValidator",
    "DocumentsView",
    "MasterData",
    "Product",
    "SoldLine",
    "ValidationFailed",
]
