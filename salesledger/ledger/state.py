"""The engine's state as plain, immutable data.

The stream processors keep it in Faust tables, one table per mapping of :class:`LedgerState`:

- ``documents``: document key ``"<type>:<number>"`` -> :class:`DocumentRecord` (last accepted
  version, the entries in effect, per-line figures needed by returns and corrections);
- ``stock``: ``(sku, warehouse)`` -> :class:`StockPosition` (cost layers, last unit cost);
- ``customers``: customer id -> :class:`CustomerAccount` (open items, advances);
- ``held``: document key -> :class:`~salesledger.ledger.model.HeldItem` (insertion order = queue);
- ``locked_through``: the period lock (every day up to and including it is locked);
- ``rates``: currency -> tuple of ``(date, rate)`` sorted by date.

Every value is a frozen dataclass of str / int / date / Decimal / tuples, so it can be encoded
with any codec. The mappings are persistent hash maps (``immutables.Map``: a new version shares
all unchanged keys with the old one, O(log n) per change), so an engine call costs the same
whether the state holds ten documents or a million. A call of the engine returns a new ``LedgerState`` sharing everything it did not
change, and lists the changed keys in ``PostingResult.touched`` (``"stock:<sku>@<warehouse>"``,
``"customer:<id>"``, ``"document:<key>"``, ``"held"``, ``"locks"``, ``"rates"``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping

from immutables import Map

from salesledger.ledger.model import (
    ZERO,
    Advance,
    CostLayer,
    HeldItem,
    JournalEntry,
    OpenItem,
    PostingResult,
)

StockKey = tuple[str, str]  # (sku, warehouse)

_EMPTY: Mapping = Map()


@dataclass(frozen=True, slots=True)
class StockPosition:
    """Stock of one SKU in one warehouse: FIFO ``layers`` oldest first (under moving average one
    merged layer). At most one negative layer, and only when no positive one is left.
    ``last_unit_cost``: cost of the last unit received or issued (functional currency per unit),
    used to cost stock issued beyond what is on hand."""

    sku: str
    warehouse: str
    layers: tuple[CostLayer, ...] = ()
    last_unit_cost: Decimal | None = None

    @property
    def qty(self) -> Decimal:
        """Units on hand (negative when issued beyond stock)."""
        return sum((layer.qty for layer in self.layers), ZERO)

    @property
    def value(self) -> Decimal:
        """Value on hand, functional currency."""
        return sum((layer.value for layer in self.layers), ZERO)


@dataclass(frozen=True, slots=True)
class LineRecord:
    """What an invoice line posted (functional currency), and what returns took back of it.

    ``net`` revenue net of discount, ``vat``, ``discount`` (undiscounted net − net), ``gross`` =
    net + vat, ``cogs`` at cost; ``issued``: the cost layer pieces the goods left with, in order
    (a reversal puts them back at the front). ``returned_*``: cumulative shares of returns.
    """

    line_no: int
    sku: str
    qty: Decimal
    net: Decimal
    vat: Decimal
    discount: Decimal
    cogs: Decimal
    issued: tuple[CostLayer, ...] = ()
    returned_qty: Decimal = ZERO
    returned_net: Decimal = ZERO
    returned_vat: Decimal = ZERO
    returned_discount: Decimal = ZERO
    returned_cogs: Decimal = ZERO

    @property
    def gross(self) -> Decimal:
        """net + vat of the line as posted."""
        return self.net + self.vat


@dataclass(frozen=True, slots=True)
class Settlement:
    """A payment's or return's effect on one open item (``document``) or, with
    ``advance=True``, on the customer's advances (``document`` = the advance's payment number)."""

    document: str
    amount: Decimal
    advance: bool = False


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """The engine's memory of one document.

    ``document``: the last accepted version (held or posted); ``posted``: whether ``entries``
    are in effect; ``entries``: the entries a reversal would reverse; ``accounting_date`` of
    those entries; ``lines``: per-line figures (invoices); ``settlements``: open items and
    advances a payment, return or advance offset changed; ``restocked``: for returns and
    receipts, the (sku, warehouse, qty, value) they added; ``return_shares``: for returns,
    (invoice line_no, qty, net, vat, discount, cogs); ``last_result``: the result returned for
    the last version (a duplicate gets it again); ``rate``: exchange rate used.
    """

    key: str
    document: object
    posted: bool = False
    entries: tuple[JournalEntry, ...] = ()
    accounting_date: dt.date | None = None
    lines: tuple[LineRecord, ...] = ()
    settlements: tuple[Settlement, ...] = ()
    restocked: tuple[tuple[str, str, Decimal, Decimal], ...] = ()
    return_shares: tuple[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal], ...] = ()
    last_result: PostingResult | None = None
    rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CustomerAccount:
    """A customer's open items (by invoice number) and advances (oldest first)."""

    customer: str
    open_items: Mapping[str, OpenItem] = field(default_factory=lambda: _EMPTY)
    advances: tuple[Advance, ...] = ()

    @property
    def advance_open(self) -> Decimal:
        """Σ unused advances of the customer."""
        return sum((a.open for a in self.advances), ZERO)

    def owing_items(self) -> Iterable[OpenItem]:
        """The open items with an amount still owed (``open`` > 0), in no particular order.

        Settled items stay in ``open_items`` (a later return against a paid invoice, ageing
        as of a past day), so a long-standing customer has many. A mapping may list its owing
        items itself (``owing_values()``: the posting worker's table-backed view keeps their
        numbers, so a payment reads those, not the whole history); otherwise all are scanned."""
        listed = getattr(self.open_items, "owing_values", None)
        if listed is not None:
            return listed()
        return (item for item in self.open_items.values() if item.open > 0)


@dataclass(frozen=True, slots=True)
class LedgerState:
    """The whole state of one ledger (see the module docstring). Start from ``LedgerState()``."""

    documents: Mapping[str, DocumentRecord] = field(default_factory=lambda: _EMPTY)
    stock: Mapping[StockKey, StockPosition] = field(default_factory=lambda: _EMPTY)
    customers: Mapping[str, CustomerAccount] = field(default_factory=lambda: _EMPTY)
    held: Mapping[str, HeldItem] = field(default_factory=lambda: _EMPTY)
    locked_through: dt.date | None = None
    rates: Mapping[str, tuple[tuple[dt.date, Decimal], ...]] = field(default_factory=lambda: _EMPTY)

    def is_locked(self, day: dt.date) -> bool:
        """True when ``day`` is in a locked period."""
        return self.locked_through is not None and day <= self.locked_through

    def first_open_day(self) -> dt.date | None:
        """The day after the lock (None when nothing is locked)."""
        return None if self.locked_through is None else self.locked_through + dt.timedelta(days=1)
