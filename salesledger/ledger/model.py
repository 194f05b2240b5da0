"""The document model of the posting engine: what comes in (sales documents) and what goes out
(journal entries, stock movements, receivable and advance postings).

Conventions for every class here (the Avro contracts in ``schemas/`` mirror these names):

- All classes are frozen dataclasses (``slots``, keyword-only): values, never mutated.
- Every amount is a :class:`decimal.Decimal` (never float) and has a currency: a document's
  amounts are in the document's ``currency`` (ISO 4217 code); journal lines, stock values, open
  items and advances are in the **functional currency** of the ledger (``LedgerSettings``), each
  carrying its own ``currency`` field. Amounts the engine computes are rounded to the settings'
  ``rounding_quantum`` (0.01 by default) with the settings' rounding mode (ROUND_HALF_UP).
- Quantities are ``Decimal`` in the SKU's unit of measure (fractional quantities allowed).
- Rates (``vat_rate``, ``discount_percent``) are percentages: ``Decimal("18")`` means 18 %.
- ``date`` fields are business dates (``datetime.date``) in the business time zone
  (Asia/Baku by default); ``*_at`` / ``commit_time`` are timezone-aware ``datetime``.
- Documents are identified by ``id`` (the source row's primary key) and referenced by other
  documents (payment allocations, a return's ``against``) by ``number``. Each change of the source
  row is a new ``version`` (strictly increasing; a processor may use the commit LSN). An edit is
  a new version with new lines, a cancellation a new version with ``status="cancelled"``, a delete
  a new version with ``status="deleted"`` (or a :class:`Deletion` when only the key is known).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Literal, Union

ZERO = Decimal("0")

DocumentType = Literal[
    "invoice", "payment", "return", "goods_receipt", "write_off", "opening_balance"
]
DocumentStatus = Literal["active", "cancelled", "deleted"]
PaymentMethod = Literal["bank", "cash", "card", "vat_deposit"]
#: What an invoice line sells (``products.kind``): goods leave stock, services do not.
LineKind = Literal["goods", "service"]

# Entry kinds (journal entry ``kind``), the words of the golden cases.
EntryKind = Literal[
    "opening_balance",
    "revenue",
    "cogs",
    "payment",
    "payment_reallocation",
    "goods_receipt",
    "return",
    "return_cogs",
    "reversal",
    "advance_offset",
    "adjustment",
    "adjustment_cogs",
    "cost_adjustment",
    "write_off",
]

MovementKind = Literal[
    "opening", "receipt", "issue", "return", "reversal", "adjustment", "write_off"
]

# Namespace of the deterministic UUIDs of entries and movements (uuid5 of a readable key).
ENTRY_NAMESPACE = uuid.UUID("6f1c1c1e-8e0b-5b7a-9a53-5a1e5d1e6e01")


# --------------------------------------------------------------------------- source position


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcePosition:
    """Where a document version was read in the source database (the CDC envelope's ``source``).

    All optional: documents built by hand (tests, golden cases) have none.
    ``lsn``: PostgreSQL log sequence number of the change (int); ``tx_id``: source transaction id;
    ``commit_time``: the transaction's commit time (tz-aware).
    """

    lsn: int | None = None
    tx_id: int | None = None
    commit_time: dt.datetime | None = None


# --------------------------------------------------------------------------- documents (input)


@dataclass(frozen=True, slots=True, kw_only=True)
class InvoiceLine:
    """One line of a sales invoice.

    ``qty`` (units, > 0) × ``unit_price`` (document currency, net of VAT unless the invoice's
    ``prices_include_vat``) gives the line's gross-before-discount, rounded per line;
    ``discount_percent`` (0-100) applies to it; ``vat_rate`` is a percentage. ``line_no`` is the
    1-based position a return may name. ``kind`` is the product's (``products.kind``, filled by
    assembly from the product master data): a ``service`` line is sold but never issued from
    stock (no stock movement, no cost of sales; a return of it restocks nothing).
    """

    line_no: int
    sku: str
    qty: Decimal
    unit_price: Decimal
    vat_rate: Decimal
    discount_percent: Decimal = ZERO
    kind: LineKind = "goods"


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    """Part of a payment the payer assigned to an invoice (by invoice ``document`` number).

    ``amount`` is in the payment's currency. An allocation above the invoice's open amount counts
    only up to it (the rest goes through the oldest-due-first rule).
    """

    document: str
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnLine:
    """A returned quantity of ``sku``; ``line`` names the invoice line (1-based) or, if None,
    the first line of that SKU with quantity left to return."""

    sku: str
    qty: Decimal
    line: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptLine:
    """A received quantity of ``sku`` at ``unit_cost`` (document currency, net of VAT) with input
    VAT at ``vat_rate`` percent."""

    sku: str
    qty: Decimal
    unit_cost: Decimal
    vat_rate: Decimal = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOffLine:
    """A quantity of ``sku`` written off (shrinkage, damage); costed by the valuation method."""

    sku: str
    qty: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OpeningStockLine:
    """Opening stock: ``qty`` units of ``sku`` in ``warehouse`` at ``unit_cost`` (functional
    currency); the layer's value is ``round(qty × unit_cost)``."""

    sku: str
    warehouse: str
    qty: Decimal
    unit_cost: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OpeningReceivable:
    """An open receivable at go-live: ``customer`` still owes ``amount`` (functional currency,
    > 0) on invoice ``document`` dated ``document_date``, due on ``due_date``. Later payments
    and returns settle it by that invoice number like any open item."""

    customer: str
    document: str
    document_date: dt.date
    due_date: dt.date
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OpeningAdvance:
    """A customer advance at go-live: the unallocated ``amount`` (functional currency, > 0) of
    payment ``payment`` of ``customer``, received on ``received``; later invoices draw on it."""

    customer: str
    payment: str
    received: dt.date
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OpeningInvoiceLine:
    """A line of an invoice taken over at go-live, as far as it can still be returned: ``qty``
    (units, > 0) not yet returned on or before the go-live date, at the invoice's ``unit_price``
    / ``vat_rate`` / ``discount_percent`` (functional currency, the invoice's VAT basis), and
    ``unit_cost`` (functional currency per unit, 4 decimals): the cost at which the goods left
    stock (0 for a ``service`` line, which restocks nothing)."""

    line_no: int
    sku: str
    qty: Decimal
    unit_price: Decimal
    vat_rate: Decimal
    discount_percent: Decimal = ZERO
    kind: LineKind = "goods"
    unit_cost: Decimal = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class OpeningInvoice:
    """Reference record of an invoice dated on or before go-live that can still be returned
    (posted in the source, not cancelled, quantity left to return). Carried by an
    ``opening_balance`` document and registered by the engine under the invoice's key
    (``invoice:<number>``) **without any entry**: its receivable and the stock are already in
    the opening balances. A later return against it posts by the return rule (revenue and VAT
    reversed pro rata to :attr:`lines`, receivable or advance, goods back at ``unit_cost``).
    ``warehouse`` is where the goods left; ``prices_include_vat`` as on the invoice."""

    number: str
    customer: str
    warehouse: str
    date: dt.date
    lines: tuple[OpeningInvoiceLine, ...]
    prices_include_vat: bool = False

    doc_type: ClassVar[str] = "invoice"
    version: ClassVar[int] = 0

    @property
    def key(self) -> str:
        """State key of the invoice it stands for: ``"invoice:<number>"``."""
        return f"invoice:{self.number}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """Fields every document version has.

    ``id``: source primary key (str); ``number``: the business number (``INV-1``) other
    documents refer to; ``date``: the document date (business date); ``version``: strictly
    increasing per ``id``; ``status``: ``active`` | ``cancelled`` | ``deleted``; ``currency``: the
    currency of every amount in the document; ``branch``: reporting dimension; ``entered_at``:
    when the document was entered in the source system (informational); ``source``: where the
    version was read.
    """

    doc_type: ClassVar[str] = "document"

    id: str
    number: str
    date: dt.date
    currency: str
    version: int = 1
    status: DocumentStatus = "active"
    branch: str | None = None
    entered_at: dt.datetime | None = None
    source: SourcePosition | None = None

    @property
    def key(self) -> str:
        """State key of the document: ``"<type>:<number>"``."""
        return f"{self.doc_type}:{self.number}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoice(Document):
    """A sales invoice: goods leave ``warehouse`` and ``customer`` owes the gross.

    Due date = ``date`` + ``payment_terms_days``. ``prices_include_vat``: unit prices are gross
    (VAT extracted per line) instead of net (VAT added per line).
    """

    doc_type: ClassVar[str] = "invoice"

    customer: str
    warehouse: str
    lines: tuple[InvoiceLine, ...]
    payment_terms_days: int = 0
    prices_include_vat: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Payment(Document):
    """Money received from ``customer``: ``amount`` (> 0, document currency) by ``method``
    (``bank`` | ``cash`` | ``vat_deposit``), with optional explicit ``allocations``; allocations
    adding up to more than ``amount`` are invalid."""

    doc_type: ClassVar[str] = "payment"

    customer: str
    method: PaymentMethod
    amount: Decimal
    allocations: tuple[Allocation, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SalesReturn(Document):
    """Goods a customer returns ``against`` an invoice (its number); credited pro rata to the
    invoice lines, goods back at the cost they left with."""

    doc_type: ClassVar[str] = "return"

    customer: str
    warehouse: str
    against: str
    lines: tuple[ReturnLine, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GoodsReceipt(Document):
    """Goods received from ``supplier`` into ``warehouse`` (Dr inventory, Dr input VAT / Cr
    payable); each line becomes a FIFO cost layer (or enters the moving average)."""

    doc_type: ClassVar[str] = "goods_receipt"

    supplier: str
    warehouse: str
    lines: tuple[ReceiptLine, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOff(Document):
    """Stock written off from ``warehouse`` (Dr inventory_losses / Cr inventory), at cost."""

    doc_type: ClassVar[str] = "write_off"

    warehouse: str
    lines: tuple[WriteOffLine, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpeningBalance(Document):
    """Opening balances (against the technical opening-balance account ``000``): stock
    (Dr inventory), open receivables per invoice (Dr receivable) and customer advances per
    payment (Cr customer_advances). Exempt from period locks and from ``golive_date``.
    ``invoices``: reference records of returnable invoices dated on or before go-live
    (:class:`OpeningInvoice`; no entry of their own). ``salesledger golive`` sends them in
    further opening-balance documents of their own (``OB-golive-<D>-invoices-<n>``)."""

    doc_type: ClassVar[str] = "opening_balance"

    stock: tuple[OpeningStockLine, ...]
    receivables: tuple[OpeningReceivable, ...] = ()
    advances: tuple[OpeningAdvance, ...] = ()
    invoices: tuple[OpeningInvoice, ...] = ()


AnyDocument = Union[Invoice, Payment, SalesReturn, GoodsReceipt, WriteOff, OpeningBalance]

DOCUMENT_CLASSES: dict[str, type] = {
    cls.doc_type: cls
    for cls in (Invoice, Payment, SalesReturn, GoodsReceipt, WriteOff, OpeningBalance)
}


# --------------------------------------------------------------------------- operations (input)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deletion:
    """The source row of a document was deleted (a CDC delete / tombstone) and only its key is
    known: the engine treats it as version ``version`` of the last known document with
    ``status="deleted"``."""

    doc_type: str
    number: str
    version: int
    at: dt.datetime | None = None
    source: SourcePosition | None = None

    @property
    def key(self) -> str:
        """State key of the deleted document: ``"<type>:<number>"``."""
        return f"{self.doc_type}:{self.number}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodLock:
    """Lock every day up to and including ``through``: no posting dated on or before it."""

    through: dt.date
    at: dt.datetime | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """An authorised user releases the held document ``document_key`` (``"<type>:<number>"``)."""

    document_key: str
    at: dt.datetime | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeRate:
    """``rate`` units of the functional currency for one unit of ``currency`` on ``date``."""

    currency: str
    date: dt.date
    rate: Decimal


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentRef:
    """Reference from an entry or movement to the document version that caused it."""

    type: str
    id: str
    number: str
    version: int
    source: SourcePosition | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalLine:
    """One journal line: ``debit`` and ``credit`` (one of them zero) in ``currency``.

    Red storno (ru-1c reversals and decreasing adjustments) keeps the original side and makes the
    amount negative: ``debit=Decimal("-11.80")``. Dimensions for reports: ``branch``,
    ``warehouse``, ``customer``, ``sku``; ``open_item`` is the number of the receivable document
    a receivable line concerns; ``advance`` the payment number whose advance a
    customer-advances line concerns.
    """

    account: str
    debit: Decimal
    credit: Decimal
    currency: str
    branch: str | None = None
    warehouse: str | None = None
    customer: str | None = None
    sku: str | None = None
    open_item: str | None = None
    advance: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    """A balanced journal entry (per currency: Σ debit = Σ credit).

    ``entry_id`` is deterministic: uuid5 of ``"<doc type>:<doc id>:v<version>:<rule>"``, so a
    re-run yields the same ids. ``rule`` names the posting rule (``sale.revenue``,
    ``reversal:<entry id>`` ...). ``kind`` is the golden-case word. ``accounting_date`` may differ
    from the document date (shifted out of a locked period). ``reverses`` is the entry id a
    reversal cancels. ``exchange_rate`` / ``original_currency`` are set when the document was in
    a foreign currency.
    """

    entry_id: str
    rule: str
    kind: str
    accounting_date: dt.date
    document: DocumentRef
    lines: tuple[JournalLine, ...]
    reverses: str | None = None
    exchange_rate: Decimal | None = None
    original_currency: str | None = None

    def totals(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Per currency: (Σ debit, Σ credit)."""
        out: dict[str, tuple[Decimal, Decimal]] = {}
        for line in self.lines:
            d, c = out.get(line.currency, (ZERO, ZERO))
            out[line.currency] = (d + line.debit, c + line.credit)
        return out

    def is_balanced(self) -> bool:
        """True when Σ debit = Σ credit in every currency."""
        return all(d == c for d, c in self.totals().values())


def entry_id_for(doc_type: str, doc_id: str, version: int, rule: str) -> str:
    """Deterministic entry id: uuid5 of ``"<doc_type>:<doc_id>:v<version>:<rule>"`` under
    :data:`ENTRY_NAMESPACE` (the RFC 4122 algorithm, inlined for speed; equal to
    ``str(uuid.uuid5(ENTRY_NAMESPACE, name))``)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{doc_type}:{doc_id}:v{version}:{rule}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACE_BYTES = ENTRY_NAMESPACE.bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StockMovement:
    """A change of stock: ``qty`` (signed, + in / − out) of ``sku`` in ``warehouse`` at ``value``
    (signed, functional currency ``currency``), dated ``accounting_date``."""

    movement_id: str
    kind: str
    accounting_date: dt.date
    document: DocumentRef
    sku: str
    warehouse: str
    qty: Decimal
    value: Decimal
    currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CostLayer:
    """A FIFO cost layer: ``qty`` units worth ``value`` in total (functional currency).

    ``origin`` is the document number that created it (``restored:<number>`` for quantities put
    back by a reversal). A negative layer (qty < 0) records stock issued beyond what was on hand
    (``negative_stock: allow``), costed at the last known unit cost.
    """

    qty: Decimal
    value: Decimal
    origin: str
    received: dt.date


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemPosting:
    """A dated change of an open item or advance (functional currency): ``amount`` (signed) by
    ``document`` (number) through an entry of ``kind``."""

    accounting_date: dt.date
    amount: Decimal
    document: str
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenItem:
    """A receivable open item: what ``customer`` owes on ``document`` (an invoice number).

    ``postings`` is the item's own small ledger (invoice +gross, payments −, returns −, ...);
    :meth:`open_as_of` sums those dated on or before a date. Functional currency ``currency``.
    """

    customer: str
    document: str
    document_date: dt.date
    due_date: dt.date
    currency: str
    postings: tuple[ItemPosting, ...] = ()

    @property
    def open(self) -> Decimal:
        """The open amount now (all postings)."""
        return sum((p.amount for p in self.postings), ZERO)

    def open_as_of(self, as_of: dt.date) -> Decimal:
        """The open amount counting postings dated on or before ``as_of``."""
        return sum((p.amount for p in self.postings if p.accounting_date <= as_of), ZERO)


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    """An advance received from ``customer`` by ``payment`` (number): money paid before any
    invoice to settle; consumed oldest first by advance offsets. Functional currency."""

    customer: str
    payment: str
    received: dt.date
    currency: str
    postings: tuple[ItemPosting, ...] = ()

    @property
    def open(self) -> Decimal:
        """The unused part of the advance now."""
        return sum((p.amount for p in self.postings), ZERO)

    def open_as_of(self, as_of: dt.date) -> Decimal:
        """The unused part counting postings dated on or before ``as_of``."""
        return sum((p.amount for p in self.postings if p.accounting_date <= as_of), ZERO)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivableUpdate:
    """Output record: open item ``document`` of ``customer`` changed by ``amount`` (signed,
    functional currency) on ``accounting_date`` through ``by`` (the document causing it)."""

    customer: str
    document: str
    accounting_date: dt.date
    amount: Decimal
    currency: str
    by: DocumentRef
    kind: str
    due_date: dt.date | None = None
    is_advance: bool = False


HeldReason = Literal[
    "period_locked", "no_exchange_rate", "insufficient_stock", "awaiting_original"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldItem:
    """A document version waiting in the held queue for ``reason`` (``period_locked``,
    ``no_exchange_rate``, ``insufficient_stock``, ``awaiting_original``)."""

    document_key: str
    document: object  # AnyDocument
    reason: str
    since: dt.datetime | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PostingResult:
    """What one call of the engine produced.

    ``status``: ``posted`` | ``duplicate`` (same version again: same entries, state unchanged) |
    ``ignored`` (older version) | ``held`` | ``released`` | ``locked`` | ``rate`` | ``withdrawn``
    (a version dated on or before go-live of a document posted or held after it: the posting is
    reversed and ``errors`` holds the ``before_golive`` refusal of the new version). ``entries``,
    ``movements`` and ``receivable_updates`` are the new facts to write down; ``held`` the items
    put in (or left in) the held queue; ``errors`` the typed errors (from :func:`try_post`);
    ``touched`` the state keys changed; ``also`` the results of held documents this call
    posted as a consequence (a receipt lets a document held for stock through).
    """

    status: str
    document: DocumentRef | None = None
    entries: tuple[JournalEntry, ...] = ()
    movements: tuple[StockMovement, ...] = ()
    receivable_updates: tuple[ReceivableUpdate, ...] = ()
    held: tuple[HeldItem, ...] = ()
    errors: tuple[Exception, ...] = field(default=())
    touched: tuple[str, ...] = ()
    also: tuple["PostingResult", ...] = ()
