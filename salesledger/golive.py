"""Go-live on a sales database that already has history: the opening balances as of a date.

``salesledger golive --date D`` reads the **source** (schema ``sales`` of the sales database,
``deploy/sql/sales``; only ``posted`` documents dated on or before D count, drafts and cancelled
ones never) and builds one :class:`~salesledger.ledger.model.OpeningBalance` numbered
``OB-golive-<D>`` dated D, in the ledger's functional currency:

- **stock per SKU and warehouse at cost.** Quantity on hand = opening stock (the latest
  snapshot with ``as_of`` ≤ D of the loaders' ``salesledger_data.opening_stock``, when that
  table exists; documents dated on or before a snapshot are in it) + goods receipts + returns
  − invoice lines − write-offs; services (``products.kind = 'service'``)
  hold no stock. The source of cost is the ``unit_cost`` of the opening-stock rows and of the
  goods-receipt lines (net of VAT) — invoices, returns and write-offs carry no cost. Costing
  follows the engine's ``valuation`` setting:

  * ``fifo``: the quantity on hand is the most recent receipt layers (newest first until the
    quantity is covered); each remaining layer becomes one opening stock line at its own unit
    cost, so the engine keeps the same FIFO queue. Returns count as un-issued units.
  * ``moving_average``: receipts, returns, issues and write-offs in date order (within a day:
    receipts, returns, then issues); a receipt merges at its cost, everything else moves at the
    current average; one line per SKU and warehouse at the final average (4 decimals).

  A layer's value is ``round(qty × unit_cost)`` (the ledger's rounding); a quantity on hand
  ≤ 0 posts no line and is listed in :attr:`Opening.negative`.
- **open receivables per invoice**: the invoice's gross (the engine's line figures) − payment
  allocations − return credits dated on or before D, due on ``date + payment_terms_days``.
  An item settled beyond its amount (a return after full payment) is an advance of the
  customer keyed by the invoice number.
- **customer advances per payment**: a posted payment's amount − its allocations to posted
  invoices dated on or before D (what the sales program left unallocated).
- **invoices taken over** (:func:`reference_invoices`): every posted invoice dated on or before D
  (``--returnable-days N``: only the last N days) with quantity not yet returned (returns dated
  on or before D taken off its lines: the line they name, else the first line of the SKU with
  quantity left, as the engine matches) becomes an :class:`~salesledger.ledger.model.OpeningInvoice`
  — customer, warehouse, per line the returnable quantity, price, VAT rate, discount, kind and
  the **unit cost at which the goods left stock**, by the same costing as the opening stock
  (:func:`issue_unit_costs`): ``fifo`` — the units of a SKU and warehouse leave in the order they
  were received (the k-th unit issued, net of units returned, is the k-th unit received; issued
  beyond every receipt: the last receipt's cost); ``moving_average`` — the average at the moment
  of the issue. An issue not among the movements (before an opening-stock snapshot, or its
  warehouse out of the branch) takes the position's oldest known receipt cost, and 0 without
  any (services: always 0). They travel in further opening-balance documents
  ``OB-golive-<D>-invoices-<n>`` (at most :data:`REFERENCE_LINES_PER_DOCUMENT` lines each, an
  invoice never split) that post **no entry**: their receivables and stock are already in the
  balances above. A return dated after D against one of them then posts by the engine's return
  rule (revenue and VAT back pro rata to the returnable line, the open item of the invoice
  reduced or — paid already — an advance, the goods back at that cost).

Every amount is taken as it stands in the source: a document in another currency than the
ledger's is refused (:class:`GoliveError`), there is no conversion. ``branch`` restricts the
go-live to one branch (phased roll-out): warehouses of that branch, invoices whose branch (or
their warehouse's) is it, payments whose ``branch_code`` is it.

The pure part (:func:`fifo_layers`, :func:`moving_average`, :func:`open_receivables`,
:func:`open_advances`, :func:`opening_document`) imports no database client; :func:`read_source`
runs the SQL and :func:`produce_opening` sends the document onto the documents topic like every
other document, so the posting stage posts it (the engine's ``post_opening``). Documents dated
on or before D are then refused by the engine with ``before_golive`` (``golive_date`` setting).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Literal

from salesledger.ledger.model import (
    InvoiceLine,
    OpeningAdvance,
    OpeningBalance,
    OpeningInvoice,
    OpeningInvoiceLine,
    OpeningReceivable,
    OpeningStockLine,
)
from salesledger.ledger.rules import line_figures
from salesledger.ledger.settings import LedgerSettings

ZERO = Decimal("0")
UNIT_COST_QUANTUM = Decimal("0.0001")  # the contract's scale of unit costs
LINES_MAX = 100_000  # opening stock lines / items / advances of one go-live, at most
REFERENCE_LINES_PER_DOCUMENT = 5_000  # invoice lines per reference document (a few hundred KiB of Avro)
REFERENCE_DOCUMENTS_MAX = 1_000  # reference documents of one go-live, at most

MovementKind = Literal["receipt", "return", "issue"]


class GoliveError(Exception):
    """The source cannot be taken over as it is (another currency, too many lines)."""


@dataclass(frozen=True, slots=True)
class Movement:
    """One stock movement of the source: ``kind`` receipt (opening stock or goods receipt, with
    ``unit_cost``) | return | issue (invoice line or write-off), ``qty`` > 0, on ``day``;
    ``order`` sorts movements of one day (document number, line)."""

    sku: str
    warehouse: str
    day: dt.date
    kind: MovementKind
    qty: Decimal
    unit_cost: Decimal | None = None
    order: tuple = ()
    snapshot: bool = False
    invoice: bool = False  # an issue by an invoice line (``order`` = (invoice number, line_no))


@dataclass(frozen=True, slots=True)
class SourceInvoice:
    """A posted invoice dated on or before D: header and lines (``sku, qty, unit_price,
    discount_percent, vat_rate, line_no``)."""

    number: str
    customer: str
    day: dt.date
    terms_days: int
    prices_include_vat: bool
    lines: tuple[InvoiceLine, ...]
    warehouse: str = ""


@dataclass(frozen=True, slots=True)
class SourceReturnLine:
    """A returned quantity of ``sku`` against invoice ``against`` (``invoice_line_no`` or None:
    the first invoice line of that SKU)."""

    against: str
    sku: str
    qty: Decimal
    invoice_line_no: int | None


@dataclass(frozen=True, slots=True)
class SourcePayment:
    """A posted payment dated on or before D and its allocations ``(invoice, amount)``."""

    number: str
    customer: str
    day: dt.date
    amount: Decimal
    allocations: tuple[tuple[str, Decimal], ...]
    in_scope: bool = True


@dataclass
class Source:
    """What :func:`read_source` reads (every list in source order)."""

    movements: list[Movement] = field(default_factory=list)
    invoices: list[SourceInvoice] = field(default_factory=list)
    returns: list[SourceReturnLine] = field(default_factory=list)
    payments: list[SourcePayment] = field(default_factory=list)
    posted_invoices: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Opening:
    """The go-live result: the document, the reference documents of the invoices taken over
    (``references``, posting no entry) and what was left out (``negative``: (sku, warehouse,
    qty) whose quantity on hand is ≤ 0)."""

    document: OpeningBalance
    negative: tuple[tuple[str, str, Decimal], ...] = ()
    references: tuple[OpeningBalance, ...] = ()

    @property
    def documents(self) -> tuple[OpeningBalance, ...]:
        """Every document to post, the balances first."""
        return (self.document, *self.references)

    def summary(self) -> dict[str, Any]:
        """Counts and totals (decimal strings) for the CLI's report."""
        r = self.document
        stock_value = sum((_value(l.qty, l.unit_cost) for l in r.stock), ZERO)
        return {"number": r.number, "date": r.date.isoformat(), "currency": r.currency,
                "stock_lines": len(r.stock), "stock_value": str(stock_value),
                "receivables": len(r.receivables),
                "receivable_total": str(sum((i.amount for i in r.receivables), ZERO)),
                "advances": len(r.advances),
                "advance_total": str(sum((a.amount for a in r.advances), ZERO)),
                "invoices_taken_over": sum(len(d.invoices) for d in self.references),
                "reference_documents": len(self.references),
                "negative_stock": [[s, w, str(q)] for s, w, q in self.negative]}


def _value(qty: Decimal, unit_cost: Decimal, settings: LedgerSettings | None = None) -> Decimal:
    return (settings or LedgerSettings()).round(qty * unit_cost)


# --------------------------------------------------------------------------- stock (pure)


def fifo_layers(movements: Iterable[Movement]) -> tuple[list[tuple[Decimal, Decimal]], Decimal]:
    """FIFO remainder of one SKU and warehouse: ``([(qty, unit_cost)] oldest first, on_hand)``.

    On hand = Σ receipts + Σ returns − Σ issues; the layers are the newest receipts covering it
    (the oldest of them cut to size). On hand beyond every receipt (more returned than issued)
    takes the oldest receipt's cost. On hand ≤ 0: no layers.
    """
    moves = list(movements)
    on_hand = sum((m.qty if m.kind != "issue" else -m.qty for m in moves), ZERO)
    receipts = sorted((m for m in moves if m.kind == "receipt"), key=lambda m: (m.day, m.order))
    if on_hand <= 0 or not receipts:
        return [], on_hand
    layers: list[tuple[Decimal, Decimal]] = []
    need = on_hand
    for m in reversed(receipts):
        take = min(m.qty, need)
        layers.append((take, m.unit_cost))
        need -= take
        if need == 0:
            break
    if need > 0:
        layers.append((need, receipts[0].unit_cost))
    layers.reverse()
    return layers, on_hand


_DAY_ORDER = {"receipt": 0, "return": 1, "issue": 2}


def moving_average(movements: Iterable[Movement], settings: LedgerSettings) -> tuple[Decimal, Decimal]:
    """Moving-average position of one SKU and warehouse: ``(qty, value)`` after every movement
    in date order (module docstring). Issues beyond stock take the last average."""
    qty, value, _ = _moving_average_run(movements, settings)
    return qty, value


def _moving_average_run(movements: Iterable[Movement], settings: LedgerSettings
                        ) -> tuple[Decimal, Decimal, dict[tuple, Decimal]]:
    """:func:`moving_average` and the unit cost of every invoice issue (by ``order``)."""
    qty, value, average = ZERO, ZERO, ZERO
    costs: dict[tuple, Decimal] = {}
    for m in sorted(movements, key=lambda m: (m.day, _DAY_ORDER[m.kind], m.order)):
        if m.kind == "receipt":
            qty, value = qty + m.qty, value + settings.round(m.qty * m.unit_cost)
            average = value / qty if qty > 0 else m.unit_cost
        elif m.kind == "return":
            qty, value = qty + m.qty, value + settings.round(m.qty * average)
        else:
            out = value if m.qty == qty else settings.round(m.qty * average)
            qty, value = qty - m.qty, value - out
            if m.invoice:
                costs[m.order] = (out / m.qty).quantize(UNIT_COST_QUANTUM)
    return qty, value, costs


def _fifo_cost(receipts: list[Movement], start: Decimal, qty: Decimal) -> Decimal:
    """Cost of units ``start`` … ``start + qty`` of the receipt sequence (oldest first); units
    beyond every receipt at the last receipt's unit cost."""
    cost, position, need = ZERO, ZERO, qty
    for r in receipts:
        lo, hi = max(start, position), min(start + qty, position + r.qty)
        if hi > lo:
            cost += (hi - lo) * r.unit_cost
            need -= hi - lo
        position += r.qty
    return cost + need * receipts[-1].unit_cost


def _fifo_issue_costs(moves: list[Movement]) -> dict[tuple, Decimal]:
    """Unit cost of every invoice issue of one position under FIFO (module docstring): the
    k-th unit issued, net of units returned, is the k-th unit received."""
    receipts = sorted((m for m in moves if m.kind == "receipt"), key=lambda m: (m.day, m.order))
    if not receipts:
        return {}
    costs: dict[tuple, Decimal] = {}
    taken = ZERO
    for m in sorted((m for m in moves if m.kind != "receipt"), key=lambda m: (m.day, _DAY_ORDER[m.kind], m.order)):
        if m.kind == "return":
            taken = max(ZERO, taken - m.qty)
            continue
        if m.invoice:
            costs[m.order] = (_fifo_cost(receipts, taken, m.qty) / m.qty).quantize(UNIT_COST_QUANTUM)
        taken += m.qty
    return costs


@dataclass(frozen=True)
class IssueCosts:
    """Unit costs (functional currency, 4 decimals) at which invoice lines left stock:
    ``by_line[(invoice number, line_no)]``; ``fallback[(sku, warehouse)]``: the position's oldest
    known receipt cost, for an issue not among the movements."""

    by_line: dict[tuple, Decimal]
    fallback: dict[tuple[str, str], Decimal]

    def unit_cost(self, invoice: str, line: InvoiceLine, warehouse: str) -> Decimal:
        """The unit cost of ``line`` of ``invoice`` (0 for a service or an unknown position)."""
        if line.kind == "service":
            return ZERO
        found = self.by_line.get((invoice, line.line_no))
        return found if found is not None else self.fallback.get((line.sku, warehouse), ZERO)


def issue_unit_costs(movements: Iterable[Movement], settings: LedgerSettings) -> IssueCosts:
    """The unit cost at which every invoice line among ``movements`` left stock, by
    ``settings.valuation`` (module docstring: the costing of the opening stock)."""
    by_position: dict[tuple[str, str], list[Movement]] = defaultdict(list)
    for m in movements:
        by_position[(m.sku, m.warehouse)].append(m)
    by_line: dict[tuple, Decimal] = {}
    fallback: dict[tuple[str, str], Decimal] = {}
    for position, moves in by_position.items():
        receipts = sorted((m for m in moves if m.kind == "receipt"), key=lambda m: (m.day, m.order))
        if receipts:
            fallback[position] = receipts[0].unit_cost
        if settings.valuation == "fifo":
            by_line.update(_fifo_issue_costs(moves))
        else:
            by_line.update(_moving_average_run(moves, settings)[2])
    return IssueCosts(by_line=by_line, fallback=fallback)


def stock_lines(movements: Iterable[Movement], settings: LedgerSettings
                ) -> tuple[tuple[OpeningStockLine, ...], tuple[tuple[str, str, Decimal], ...]]:
    """Opening stock lines of every SKU and warehouse by ``settings.valuation`` (sorted by SKU,
    warehouse), and the positions left out for a quantity ≤ 0."""
    by_position: dict[tuple[str, str], list[Movement]] = defaultdict(list)
    for m in movements:
        by_position[(m.sku, m.warehouse)].append(m)
    lines, negative = [], []
    for (sku, warehouse), moves in sorted(by_position.items()):
        if settings.valuation == "fifo":
            layers, on_hand = fifo_layers(moves)
        else:
            on_hand, value = moving_average(moves, settings)
            layers = [(on_hand, (value / on_hand).quantize(UNIT_COST_QUANTUM))] if on_hand > 0 else []
        if on_hand < 0:
            negative.append((sku, warehouse, on_hand))
        if on_hand <= 0:
            continue
        lines += [OpeningStockLine(sku=sku, warehouse=warehouse, qty=q, unit_cost=c) for q, c in layers]
    return tuple(lines), tuple(negative)


# --------------------------------------------------------------------------- money (pure)


def invoice_gross(invoice: SourceInvoice, settings: LedgerSettings) -> Decimal:
    """Gross of an invoice by the engine's line figures (functional currency)."""
    return sum((line_figures(l, invoice.prices_include_vat, settings, None).gross
                for l in invoice.lines), ZERO)


def return_credit(invoice: SourceInvoice, line: SourceReturnLine, settings: LedgerSettings) -> Decimal:
    """Gross credit of a returned quantity at its invoice line's price (0 if the SKU is not on
    the invoice)."""
    match = [l for l in invoice.lines if (l.line_no == line.invoice_line_no if line.invoice_line_no
                                           is not None else l.sku == line.sku)]
    if not match:
        return ZERO
    sold = match[0]
    returned = InvoiceLine(line_no=sold.line_no, sku=sold.sku, qty=line.qty, unit_price=sold.unit_price,
                           vat_rate=sold.vat_rate, discount_percent=sold.discount_percent, kind=sold.kind)
    return line_figures(returned, invoice.prices_include_vat, settings, None).gross


def open_receivables(source: Source, settings: LedgerSettings
                     ) -> tuple[tuple[OpeningReceivable, ...], tuple[OpeningAdvance, ...]]:
    """Open items of the invoices in ``source.invoices`` (gross − allocations − return
    credits), and the over-settled ones as advances keyed by the invoice number."""
    settled: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for pay in source.payments:
        for number, amount in pay.allocations:
            settled[number] += amount
    by_number = {inv.number: inv for inv in source.invoices}
    for ret in source.returns:
        if ret.against in by_number:
            settled[ret.against] += return_credit(by_number[ret.against], ret, settings)
    items, over = [], []
    for inv in source.invoices:
        left = invoice_gross(inv, settings) - settled[inv.number]
        if left > 0:
            items.append(OpeningReceivable(customer=inv.customer, document=inv.number, document_date=inv.day,
                                           due_date=inv.day + dt.timedelta(days=inv.terms_days), amount=left))
        elif left < 0:
            over.append(OpeningAdvance(customer=inv.customer, payment=inv.number, received=inv.day, amount=-left))
    return tuple(items), tuple(over)


def open_advances(source: Source) -> tuple[OpeningAdvance, ...]:
    """Unallocated part of every in-scope payment (allocations to posted invoices dated on or
    before D count; others are not allocations)."""
    out = []
    for pay in source.payments:
        if not pay.in_scope:
            continue
        allocated = sum((a for n, a in pay.allocations if n in source.posted_invoices), ZERO)
        left = pay.amount - allocated
        if left > 0:
            out.append(OpeningAdvance(customer=pay.customer, payment=pay.number, received=pay.day, amount=left))
    return tuple(out)


def returnable_quantities(invoice: SourceInvoice, returns: Iterable[SourceReturnLine]) -> dict[int, Decimal]:
    """Quantity left to return per line of ``invoice`` (line_no -> qty) after ``returns``
    against it: a return line takes the line it names, else the first line of its SKU with
    quantity left (the engine's matching); what matches no line is ignored."""
    left = {line.line_no: line.qty for line in invoice.lines}
    for ret in returns:
        if ret.against != invoice.number:
            continue
        for line in invoice.lines:
            named = ret.invoice_line_no is not None
            if (line.line_no == ret.invoice_line_no) if named else (line.sku == ret.sku and left[line.line_no] > 0):
                left[line.line_no] = max(ZERO, left[line.line_no] - ret.qty)
                break
    return left


def reference_invoices(source: Source, costs: IssueCosts, as_of: dt.date, returnable_days: int | None = None
                       ) -> tuple[OpeningInvoice, ...]:
    """The invoices of ``source`` taken over at go-live (module docstring): those dated within
    ``returnable_days`` before ``as_of`` (None: all) with quantity left to return, each with
    only its returnable lines, in source order."""
    since = None if returnable_days is None else as_of - dt.timedelta(days=returnable_days)
    by_invoice: dict[str, list[SourceReturnLine]] = defaultdict(list)
    for ret in source.returns:
        by_invoice[ret.against].append(ret)
    out = []
    for inv in source.invoices:
        if since is not None and inv.day <= since:
            continue
        left = returnable_quantities(inv, by_invoice.get(inv.number, ()))
        lines = tuple(OpeningInvoiceLine(line_no=l.line_no, sku=l.sku, qty=left[l.line_no], unit_price=l.unit_price,
                                         vat_rate=l.vat_rate, discount_percent=l.discount_percent, kind=l.kind,
                                         unit_cost=costs.unit_cost(inv.number, l, inv.warehouse))
                      for l in inv.lines if left[l.line_no] > 0)
        if lines:
            out.append(OpeningInvoice(number=inv.number, customer=inv.customer, warehouse=inv.warehouse, date=inv.day,
                                      lines=lines, prices_include_vat=inv.prices_include_vat))
    return tuple(out)


def reference_documents(invoices: Iterable[OpeningInvoice], as_of: dt.date, currency: str
                        ) -> tuple[OpeningBalance, ...]:
    """``invoices`` in opening-balance documents ``OB-golive-<as_of>-invoices-<n>`` (n from 1)
    of at most :data:`REFERENCE_LINES_PER_DOCUMENT` lines each (an invoice is never split).

    Raises:
        GoliveError: more than :data:`REFERENCE_DOCUMENTS_MAX` documents.
    """
    chunks: list[list[OpeningInvoice]] = []
    lines = 0
    for ref in invoices:
        if not chunks or lines + len(ref.lines) > REFERENCE_LINES_PER_DOCUMENT:
            chunks.append([])
            lines = 0
        chunks[-1].append(ref)
        lines += len(ref.lines)
    if len(chunks) > REFERENCE_DOCUMENTS_MAX:
        raise GoliveError(f"{len(chunks)} reference documents: more than {REFERENCE_DOCUMENTS_MAX}; "
                          "take over fewer invoices (--returnable-days)")
    out = []
    for n, chunk in enumerate(chunks, start=1):
        number = f"OB-golive-{as_of.isoformat()}-invoices-{n}"
        out.append(OpeningBalance(id=number, number=number, date=as_of, currency=currency, stock=(),
                                  invoices=tuple(chunk)))
    return tuple(out)


def opening_document(source: Source, as_of: dt.date, settings: LedgerSettings,
                     returnable_days: int | None = None) -> Opening:
    """The ``OB-golive-<as_of>`` opening balance of ``source`` and the reference documents of
    the invoices it takes over (module docstring; ``returnable_days`` as in
    :func:`reference_invoices`).

    Raises:
        GoliveError: more than :data:`LINES_MAX` stock lines, items or advances, or more than
            :data:`REFERENCE_DOCUMENTS_MAX` reference documents.
    """
    stock, negative = stock_lines(source.movements, settings)
    items, over = open_receivables(source, settings)
    advances = over + open_advances(source)
    for name, rows in (("stock lines", stock), ("receivables", items), ("advances", advances)):
        if len(rows) > LINES_MAX:
            raise GoliveError(f"{len(rows)} {name}: more than {LINES_MAX} in one opening balance")
    number = f"OB-golive-{as_of.isoformat()}"
    document = OpeningBalance(id=number, number=number, date=as_of, currency=settings.functional_currency,
                              stock=stock, receivables=items, advances=advances)
    invoices = reference_invoices(source, issue_unit_costs(source.movements, settings), as_of, returnable_days)
    references = reference_documents(invoices, as_of, settings.functional_currency)
    return Opening(document=document, negative=negative, references=references)


# --------------------------------------------------------------------------- SQL


def _scope(branch: str | None, column: str) -> tuple[str, tuple]:
    return ("", ()) if branch is None else (f" AND {column} = %s", (branch,))


def read_source(conn: Any, as_of: dt.date, currency: str, branch: str | None = None) -> Source:
    """Read ``source`` as of ``as_of`` from the sales database (a psycopg connection).

    Raises:
        GoliveError: a posted document dated on or before ``as_of`` in another currency.
    """
    scope = {"d": as_of, "c": currency, "b": branch}
    other = conn.execute(
        "SELECT 'invoice ' || i.number FROM sales.invoices i LEFT JOIN sales.warehouses w ON w.code = i.warehouse_code"
        " WHERE i.status = 'posted' AND i.date <= %(d)s AND i.currency <> %(c)s"
        " AND (%(b)s::text IS NULL OR coalesce(i.branch_code, w.branch_code) = %(b)s)"
        " UNION ALL SELECT 'payment ' || number FROM sales.payments WHERE status = 'posted' AND date <= %(d)s"
        " AND currency <> %(c)s AND (%(b)s::text IS NULL OR branch_code = %(b)s)"
        " UNION ALL SELECT 'goods receipt ' || g.number FROM sales.goods_receipts g"
        " LEFT JOIN sales.warehouses w ON w.code = g.warehouse_code WHERE g.status = 'posted' AND g.date <= %(d)s"
        " AND g.currency <> %(c)s AND (%(b)s::text IS NULL OR w.branch_code = %(b)s) LIMIT 5", scope).fetchall()
    if other:
        raise GoliveError(f"documents in another currency than {currency}: {[r[0] for r in other]}")
    source = Source()
    source.movements = _movements(conn, as_of, branch, currency)
    where, args = _scope(branch, "coalesce(i.branch_code, w.branch_code)")
    heads = conn.execute(
        "SELECT i.invoice_id, i.number, i.customer_code, i.date, i.payment_terms_days, i.prices_include_vat,"
        " i.warehouse_code FROM sales.invoices i LEFT JOIN sales.warehouses w ON w.code = i.warehouse_code"
        f" WHERE i.status = 'posted' AND i.date <= %s{where} ORDER BY i.date, i.number", (as_of, *args)).fetchall()
    lines: dict[int, list[InvoiceLine]] = defaultdict(list)
    for inv_id, no, sku, qty, price, disc, vat, kind in conn.execute(
            "SELECT l.invoice_id, l.line_no, l.sku, l.qty, l.unit_price, l.discount_percent, l.vat_rate,"
            " coalesce(p.kind, 'goods') FROM sales.invoice_lines l JOIN sales.invoices i USING (invoice_id)"
            " LEFT JOIN sales.products p ON p.sku = l.sku WHERE i.status = 'posted' AND i.date <= %s"
            " ORDER BY l.invoice_id, l.line_no", (as_of,)):
        lines[inv_id].append(InvoiceLine(line_no=no, sku=sku, qty=qty, unit_price=price, vat_rate=vat,
                                         discount_percent=disc, kind=kind))
    source.invoices = [SourceInvoice(number=n, customer=c, day=d, terms_days=t, prices_include_vat=p,
                                     lines=tuple(lines[i]), warehouse=w) for i, n, c, d, t, p, w in heads]
    source.posted_invoices = {r[0] for r in conn.execute(
        "SELECT number FROM sales.invoices WHERE status = 'posted' AND date <= %s", (as_of,))}
    source.returns = [SourceReturnLine(*row) for row in conn.execute(
        "SELECT r.against_invoice_number, l.sku, l.qty, l.invoice_line_no FROM sales.return_lines l"
        " JOIN sales.returns r USING (return_id) WHERE r.status = 'posted' AND r.date <= %s"
        " ORDER BY r.date, r.number, l.line_no", (as_of,))]
    source.payments = _payments(conn, as_of, branch)
    return source


def _payments(conn: Any, as_of: dt.date, branch: str | None) -> list[SourcePayment]:
    allocations: dict[int, list[tuple[str, Decimal]]] = defaultdict(list)
    for pay_id, number, amount in conn.execute(
            "SELECT a.payment_id, a.invoice_number, a.amount FROM sales.payment_allocations a"
            " JOIN sales.payments p USING (payment_id) WHERE p.status = 'posted' AND p.date <= %s"
            " ORDER BY a.payment_id, a.line_no", (as_of,)):
        allocations[pay_id].append((number, amount))
    return [SourcePayment(number=n, customer=c, day=d, amount=a, allocations=tuple(allocations[i]),
                          in_scope=branch is None or b == branch)
            for i, n, c, d, a, b in conn.execute(
                "SELECT payment_id, number, customer_code, date, amount, branch_code FROM sales.payments"
                " WHERE status = 'posted' AND date <= %s ORDER BY date, number", (as_of,))]


_MOVEMENTS_SQL = """
SELECT l.sku, g.warehouse_code, g.date, 'receipt', l.qty, l.unit_cost, g.number, l.line_no, false
  FROM sales.goods_receipt_lines l JOIN sales.goods_receipts g USING (goods_receipt_id)
 WHERE g.status = 'posted' AND g.date <= %(d)s
UNION ALL
SELECT l.sku, r.warehouse_code, r.date, 'return', l.qty, NULL, r.number, l.line_no, false
  FROM sales.return_lines l JOIN sales.returns r USING (return_id)
  LEFT JOIN sales.products p ON p.sku = l.sku
 WHERE r.status = 'posted' AND r.date <= %(d)s AND coalesce(p.kind, 'goods') = 'goods'
UNION ALL
SELECT l.sku, i.warehouse_code, i.date, 'issue', l.qty, NULL, i.number, l.line_no, true
  FROM sales.invoice_lines l JOIN sales.invoices i USING (invoice_id)
  LEFT JOIN sales.products p ON p.sku = l.sku
 WHERE i.status = 'posted' AND i.date <= %(d)s AND coalesce(p.kind, 'goods') = 'goods'
UNION ALL
SELECT l.sku, o.warehouse_code, o.date, 'issue', l.qty, NULL, o.number, l.line_no, false
  FROM sales.stock_write_off_lines l JOIN sales.stock_write_offs o USING (stock_write_off_id)
 WHERE o.status = 'posted' AND o.date <= %(d)s
"""

_OPENING_STOCK_SQL = """
SELECT sku, warehouse_code, as_of, 'receipt', qty, unit_cost, NULL, 0, false
  FROM salesledger_data.opening_stock WHERE as_of <= %(d)s AND currency = %(c)s
"""


def _movements(conn: Any, as_of: dt.date, branch: str | None, currency: str) -> list[Movement]:
    statement = _MOVEMENTS_SQL
    if conn.execute("SELECT to_regclass('salesledger_data.opening_stock') IS NOT NULL").fetchone()[0]:
        statement += " UNION ALL " + _OPENING_STOCK_SQL
    in_branch = None
    if branch is not None:
        in_branch = {r[0] for r in conn.execute("SELECT code FROM sales.warehouses WHERE branch_code = %s", (branch,))}
    out = []
    for sku, warehouse, day, kind, qty, cost, number, line, by_invoice in conn.execute(
            statement, {"d": as_of, "c": currency}):
        if in_branch is None or warehouse in in_branch:
            out.append(Movement(sku=sku, warehouse=warehouse, day=day, kind=kind, qty=qty, unit_cost=cost,
                                order=(number or "", line), snapshot=number is None, invoice=by_invoice))
    return after_snapshots(out)


def after_snapshots(movements: list[Movement]) -> list[Movement]:
    """Per SKU and warehouse, keep the latest opening-stock snapshot and only the movements
    dated after it (the snapshot already holds the earlier ones); earlier snapshots drop."""
    latest: dict[tuple[str, str], dt.date] = {}
    for m in movements:
        if m.snapshot:
            key = (m.sku, m.warehouse)
            latest[key] = max(latest.get(key, m.day), m.day)
    return [m for m in movements
            if (m.sku, m.warehouse) not in latest
            or (m.day == latest[(m.sku, m.warehouse)] if m.snapshot else m.day > latest[(m.sku, m.warehouse)])]


# --------------------------------------------------------------------------- posting


def produce_opening(settings: Any, document: OpeningBalance, references: Iterable[OpeningBalance] = ()) -> str:
    """Produce ``document``, then the ``references`` (:attr:`Opening.references`), onto the
    profile's documents topic, each as version (0, 0) (it sorts before every captured document;
    producing it again is a duplicate the engine ignores); returns the topic name. Raises
    :class:`GoliveError` when the broker does not take them."""
    from confluent_kafka import Producer

    from salesledger.ledger.model import SourcePosition
    from salesledger.streams.assembly import DocumentEvent
    from salesledger.streams.documents import DOCUMENT_SUBJECT, document_datum
    from salesledger.streams.serde import AvroSerde

    serde = AvroSerde.for_settings(settings)
    topic = settings.topic("documents")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True, "message.max.bytes": 4_000_000})
    for doc in (document, *references):  # one partition, idempotent producer: in this order
        event = DocumentEvent(key=doc.key, operation="created", version=(0, 0), document=doc,
                              source=SourcePosition())
        producer.produce(topic, key=doc.key.encode(), value=serde.encode(DOCUMENT_SUBJECT, document_datum(event)))
    if producer.flush(60) != 0:
        raise GoliveError(f"the opening balance could not be produced to {topic}")
    return topic
