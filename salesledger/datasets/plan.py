"""One slice of Online Retail as master data, opening stock and a timeline of sales-program steps.

:func:`plan_online_retail` is pure: (source lines, slice days, seed) -> :class:`Plan`. The plan is
what a clerk would do in the sales program, in time order: insert a document as a draft, post it
(status update), edit a posted invoice, cancel a posted duplicate, record a payment, and — for a
source line that becomes no document — a dead letter. The runner
(:mod:`salesledger.simulation.runner`) executes each step in its own transaction. Dates are the
dataset's own; the runner shifts them (``--shift-to-today``).

Counting rule (so a test can recompute it from the CSV): documents from the dataset =
invoices (non-``C`` numbers that are not stock adjustments) + write-offs (stock adjustments with
negative lines) + returns (one per cancellation and matched invoice); generated documents =
payments + goods receipts + duplicates (posted then cancelled). Every source line of the slice
is either on one of the dataset's documents or one dead letter.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from salesledger.datasets import model
from salesledger.datasets import online_retail as orr
from salesledger.datasets.model import DEFAULT_PARAMETERS, ModelParameters

STEPS_MAX = 5_000_000


@dataclass(frozen=True)
class Document:
    """A sales-DB document: ``kind`` invoice | payment | return | goods_receipt | write_off,
    ``number``, business ``date`` (unshifted), ``header`` columns (without number, date,
    status) and ``lines`` (column dicts, child table rows with ``line_no``)."""

    kind: str
    number: str
    date: dt.date
    header: dict[str, Any]
    lines: tuple[dict[str, Any], ...]
    origin: str  # "dataset" | "generated" | "duplicate"


@dataclass(frozen=True)
class Step:
    """One action of the sales program at simulated time ``at``: ``insert`` (a draft document),
    ``post``, ``edit_add_line`` (append ``line`` to a posted invoice), ``cancel``, or
    ``dead_letter`` (``dead_letter`` set). ``seq`` breaks ties in time order."""

    at: dt.datetime
    seq: int
    action: str
    kind: str
    number: str
    document: Document | None = None
    line: dict[str, Any] | None = None
    dead_letter: orr.DeadLetter | None = None


@dataclass(frozen=True)
class Customer:
    """A customer as master data, with the model's payer class (on_time | late | partial |
    never | cash) and payment terms in days."""

    code: str
    name: str
    payment_terms_days: int
    country: str | None
    payer: str


@dataclass(frozen=True)
class Product:
    """A SKU as master data: ``kind`` goods | service, VAT rate in percent, unit cost (goods)."""

    sku: str
    name: str
    kind: str
    unit_cost: Decimal | None  # goods only, document currency, net of VAT
    vat_rate: Decimal = orr.VAT_RATE_PERCENT


@dataclass(frozen=True)
class OpeningStock:
    """Opening stock of ``sku`` in ``warehouse`` as of the day before the slice (GBP cost)."""

    sku: str
    warehouse: str
    qty: Decimal
    unit_cost: Decimal


@dataclass(frozen=True)
class Plan:
    """Everything one slice becomes. ``steps`` in execution order; ``counts`` summarises them."""

    dataset: str
    seed: int
    days: tuple[dt.date, ...]
    customers: tuple[Customer, ...]
    products: tuple[Product, ...]
    suppliers: tuple[tuple[str, str], ...]
    opening_stock: tuple[OpeningStock, ...]
    steps: tuple[Step, ...]
    counts: dict[str, Any] = field(default_factory=dict)
    branch: tuple[str, str] = (orr.BRANCH, "UK online retail (Online Retail dataset)")
    warehouse: tuple[str, str] = (orr.WAREHOUSE, "UK main warehouse")
    currency: str = orr.CURRENCY
    #: more branches (code, name) and warehouses (code, name, branch code) than the main ones
    extra_branches: tuple[tuple[str, str], ...] = ()
    extra_warehouses: tuple[tuple[str, str, str], ...] = ()

    @property
    def opening_as_of(self) -> dt.date:
        """The opening balance date: the day before the slice's first day."""
        return self.days[0] - dt.timedelta(days=1)


class Builder:
    """Collects a plan's steps; ``seq`` is the creation order, the tie-break of equal times."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, at: dt.datetime, action: str, kind: str, number: str, **extra: Any) -> None:
        """Append one :class:`Step` (fields as there)."""
        self.steps.append(Step(at, len(self.steps), action, kind, number, **extra))
        assert len(self.steps) <= STEPS_MAX, "plan exceeds STEPS_MAX steps"

    def document(self, doc: Document, posted_at: dt.datetime, seed: int,
                 not_before: dt.datetime | None = None) -> None:
        """Insert ``doc`` as a draft 1-4 minutes before ``posted_at`` (never before
        ``not_before``, the posting of the invoice it refers to), then post it."""
        lead = model.draft_lead_minutes(seed, doc.kind, doc.number)
        draft_at = posted_at - dt.timedelta(minutes=lead)
        if not_before is not None:
            assert posted_at >= not_before, f"{doc.kind} {doc.number} posted before what it refers to"
            draft_at = max(draft_at, not_before)
        self.add(draft_at, "insert", doc.kind, doc.number, document=doc)
        self.add(posted_at, "post", doc.kind, doc.number)


def _invoice_lines(inv: orr.InvoiceDoc) -> tuple[dict[str, Any], ...]:
    return tuple({"line_no": no, "sku": l.sku, "description": l.description or None,
                  "qty": l.qty, "unit_price": l.unit_price, "discount_percent": Decimal(0),
                  "vat_rate": orr.VAT_RATE_PERCENT}
                 for no, l in enumerate(inv.lines, start=1))


def _invoice_doc(number: str, inv: orr.InvoiceDoc, terms: int, lines: tuple[dict, ...],
                 origin: str) -> Document:
    header = {"customer_code": inv.customer, "warehouse_code": orr.WAREHOUSE,
              "currency": orr.CURRENCY, "prices_include_vat": orr.PRICES_INCLUDE_VAT,
              "payment_terms_days": terms}
    return Document("invoice", number, inv.at.date(), header, lines, origin)


def plan_online_retail(all_lines: list[orr.SourceLine], days: list[dt.date], seed: int,
                       params: ModelParameters = DEFAULT_PARAMETERS) -> Plan:
    """Build the :class:`Plan` of the slice ``days`` of the file ``all_lines`` under ``seed``."""
    docs = orr.build_documents(all_lines, days)
    catalogue = orr.product_catalogue(all_lines)
    wanted = set(days)
    slice_lines = [l for l in all_lines if l.at.date() in wanted]
    countries = orr.customer_countries(slice_lines)
    countries.setdefault(orr.WALK_IN, "United Kingdom")
    payers = {c: model.payer_of(seed, c, c == orr.WALK_IN, params) for c in countries}
    customers = tuple(
        Customer(c, "Walk-in customer (cash sales)" if c == orr.WALK_IN else f"Customer {c}",
                 payers[c].terms_days, countries[c], payers[c].kind)
        for c in sorted(countries))
    skus = list(dict.fromkeys(l.sku for l in slice_lines))
    products = tuple(
        Product(s, catalogue[s].name, catalogue[s].kind,
                model.unit_cost(seed, s, catalogue[s].min_price_gross, params)
                if catalogue[s].kind == "goods" else None)
        for s in skus)
    cost = {p.sku: p.unit_cost for p in products}
    returned_against = {r.against for r in docs.returns}
    b = Builder()
    issues: list[tuple[dt.datetime, int, str, Decimal]] = []  # (at, order, sku, signed qty)
    counts: Counter = Counter()
    last_day = days[-1]
    invoice_at = {inv.number: inv.at for inv in docs.invoices}
    for inv in docs.invoices:
        _plan_invoice(b, inv, payers[inv.customer], returned_against, seed, params, issues,
                      counts, last_day)
    for ret in docs.returns:
        header = {"customer_code": ret.customer, "warehouse_code": orr.WAREHOUSE,
                  "against_invoice_number": ret.against}
        lines = tuple({"line_no": no, "sku": m.sku, "qty": m.qty, "invoice_line_no": m.invoice_line_no}
                      for no, m in enumerate(ret.lines, start=1))
        b.document(Document("return", ret.number, ret.at.date(), header, lines, "dataset"), ret.at, seed,
                   not_before=invoice_at[ret.against])
        issues.extend((ret.at, 1, m.sku, m.qty) for m in ret.lines)
    for wo in docs.write_offs:
        lines = tuple({"line_no": no, "sku": l.sku, "qty": -l.qty} for no, l in enumerate(wo.lines, start=1))
        header = {"warehouse_code": orr.WAREHOUSE, "reason": wo.reason}
        b.document(Document("write_off", wo.number, wo.at.date(), header, lines, "dataset"), wo.at, seed)
        issues.extend((wo.at, 0, l.sku, l.qty) for l in wo.lines)
    for dead in docs.dead_letters:
        b.add(dead.at, "dead_letter", "dead_letter", dead.line.invoice_no, dead_letter=dead)
    goods = {p.sku for p in products if p.kind == "goods"}
    opening = plan_stock(b, [i for i in issues if i[2] in goods], cost, days, seed, params,
                         supplier=lambda sku: model.supplier_of(seed, sku, params))
    steps = tuple(sorted(b.steps, key=lambda s: (s.at, s.seq)))
    summary = {**_count(steps, slice_lines, docs), **dict(sorted(counts.items()))}
    suppliers = tuple((model.supplier_code(i), f"Supplier {i:02d} Ltd")
                      for i in range(1, params.suppliers + 1))
    return Plan(orr.DATASET, seed, tuple(days), customers, products, suppliers, opening, steps,
                summary)


def _plan_invoice(b: Builder, inv: orr.InvoiceDoc, payer: model.Payer, returned_against: set[str],
                  seed: int, params: ModelParameters, issues: list, counts: Counter,
                  last_day: dt.date) -> None:
    lines = _invoice_lines(inv)
    doc = _invoice_doc(inv.number, inv, payer.terms_days, lines, "dataset")
    issues.extend((inv.at, 0, l.sku, -l.qty) for l in inv.lines)
    correction = None
    if inv.customer != orr.WALK_IN and inv.number not in returned_against:
        correction = model.correction_of(seed, inv.number, len(lines), params)
    if correction and correction[0] == "missing_line":
        first = Document(doc.kind, doc.number, doc.date, doc.header, lines[:-1], doc.origin)
        b.document(first, inv.at, seed)
        b.add(inv.at + dt.timedelta(minutes=correction[1]), "edit_add_line", "invoice",
              inv.number, line=lines[-1])
        counts["edited_invoices"] += 1
    else:
        b.document(doc, inv.at, seed)
    if correction and correction[0] == "duplicate":
        dup_at = inv.at + dt.timedelta(minutes=correction[1])
        number = f"{inv.number}-DUP"
        b.document(_invoice_doc(number, inv, payer.terms_days, lines, "duplicate"), dup_at, seed)
        b.add(dup_at + dt.timedelta(minutes=correction[2]), "cancel", "invoice", number)
        issues.extend((dup_at, 0, l.sku, -l.qty) for l in inv.lines)
    gross = sum((model.line_gross(l["qty"], l["unit_price"]) for l in lines), Decimal(0))
    pay = model.payment_for(seed, inv.number, payer, inv.at, gross, params)
    if pay is None:
        counts["invoices_never_paid" if gross > 0 else "invoices_zero_gross"] += 1
        return
    if pay.at.date() > last_day:
        counts["payments_after_slice"] += 1
        return
    number = f"{'CASH' if pay.method == 'cash' else 'PAY'}-{inv.number}"
    header = {"customer_code": inv.customer, "method": pay.method, "currency": orr.CURRENCY,
              "amount": pay.amount}
    allocation = ({"line_no": 1, "invoice_number": inv.number, "amount": pay.amount},)
    b.document(Document("payment", number, pay.at.date(), header, allocation, "generated"), pay.at, seed,
               not_before=inv.at)


def plan_stock(b: Builder, issues: list[tuple[dt.datetime, int, str, Decimal]],
               cost: dict[str, Decimal | None], days: list[dt.date], seed: int,
               params: ModelParameters, supplier: Callable[[str], str],
               warehouse: str = orr.WAREHOUSE, currency: str = orr.CURRENCY,
               vat_rate: Decimal = orr.VAT_RATE_PERCENT) -> tuple[OpeningStock, ...]:
    """Opening stock and morning goods receipts so that no goods SKU ever goes negative.

    ``issues``: (time, tie order, sku, signed quantity) of every stock movement the plan makes
    (issues negative, returns positive); ``supplier(sku)`` names who delivers it."""
    issued: Counter = Counter()
    for _, _, sku, qty in issues:
        if qty < 0:
            issued[sku] -= qty
    order = list(dict.fromkeys(sku for _, _, sku, _ in issues))
    on_hand = {s: model.opening_quantity(seed, s, Decimal(issued[s]), params) for s in order}
    opening = tuple(OpeningStock(s, warehouse, on_hand[s], cost[s]) for s in order
                    if on_hand[s] > 0)
    by_day: dict[dt.date, list] = defaultdict(list)
    for item in issues:
        by_day[item[0].date()].append(item)
    for day in days:
        events = sorted(by_day.get(day, ()), key=lambda e: (e[0], e[1]))
        if not events:
            continue
        running, low = dict(on_hand), {}
        for _, _, sku, qty in events:
            running[sku] += qty
            low[sku] = min(low.get(sku, running[sku]), running[sku])
        receipts: dict[str, list[dict[str, Any]]] = {}
        for sku in dict.fromkeys(e[2] for e in events):
            if low[sku] < 0:
                qty = model.receipt_quantity(-low[sku], model.pack_size(seed, sku, params))
                lines = receipts.setdefault(supplier(sku), [])
                lines.append({"line_no": len(lines) + 1, "sku": sku, "qty": qty,
                              "unit_cost": cost[sku], "vat_rate": vat_rate})
                running[sku] += qty
        at = min(dt.datetime.combine(day, params.receipt_time), events[0][0] - dt.timedelta(minutes=10))
        for code in sorted(receipts):
            header = {"supplier_code": code, "warehouse_code": warehouse,
                      "currency": currency, "prices_include_vat": False}
            number = f"GR-{day:%Y%m%d}-{code}"
            b.document(Document("goods_receipt", number, day, header, tuple(receipts[code]),
                                "generated"), at, seed)
        on_hand = running
        assert all(q >= 0 for q in on_hand.values()), "stock plan left a SKU negative"
    return opening


def _count(steps: tuple[Step, ...], slice_lines: list[orr.SourceLine],
           docs: orr.SliceDocuments) -> dict[str, Any]:
    inserted = [s.document for s in steps if s.action == "insert"]
    by_kind: Counter = Counter(d.kind for d in inserted)
    from_dataset: Counter = Counter(d.kind for d in inserted if d.origin == "dataset")
    reasons: Counter = Counter(s.dead_letter.reason for s in steps if s.action == "dead_letter")
    lines: Counter = Counter()
    for d in inserted:
        lines[d.kind] += len(d.lines)
    lines["invoice"] += sum(1 for s in steps if s.action == "edit_add_line")
    covered = [l.row for inv in docs.invoices for l in inv.lines]
    covered += [l.row for wo in docs.write_offs for l in wo.lines]
    covered += list({m.source_row for r in docs.returns for m in r.lines})
    covered += [d.line.row for d in docs.dead_letters]
    assert sorted(covered) == [l.row for l in slice_lines], \
        "every source line is on exactly one document or one dead letter"
    return {
        "documents": dict(sorted(by_kind.items())),
        "documents_from_dataset": dict(sorted(from_dataset.items())),
        "documents_from_dataset_total": sum(from_dataset.values()),
        "duplicates_cancelled": sum(1 for s in steps if s.action == "cancel"),
        "lines": dict(sorted(lines.items())),
        "dead_letters": dict(sorted(reasons.items())),
        "dead_letters_total": sum(reasons.values()),
        "source_documents": len({l.invoice_no for l in slice_lines}),
        "source_lines": len(slice_lines),
    }
