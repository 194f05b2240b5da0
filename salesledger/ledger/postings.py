"""How each document type is posted: the per-document rules, over a :class:`Tx` (one engine
call's working copy of the state). Called by :mod:`salesledger.ledger.engine`; nothing here is
public API except through it.

Sources of every rule: ``../shared/golden/README.md`` ("Conventions", "Fine points").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

from immutables import Map

from salesledger.ledger import valuation
from salesledger.ledger.charts import Chart
from salesledger.ledger.errors import InvalidDocument, InvariantViolation, UnbalancedEntry
from salesledger.ledger.model import (
    ZERO,
    Advance,
    DocumentRef,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    ItemPosting,
    JournalEntry,
    JournalLine,
    OpenItem,
    OpeningBalance,
    OpeningInvoice,
    Payment,
    PostingResult,
    ReceivableUpdate,
    SalesReturn,
    StockMovement,
    WriteOff,
    entry_id_for,
)
from salesledger.ledger.rules import Leg, LineFigures, cogs_legs, emit, line_figures, money_legs, reversal_lines
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import (
    CustomerAccount,
    DocumentRecord,
    LedgerState,
    LineRecord,
    Settlement,
    StockPosition,
)

#: Account role a payment method debits; ``card`` follows ``LedgerSettings.card_role`` (bank).
METHOD_ROLES = {"bank": "bank", "cash": "cash", "vat_deposit": "vat_deposit", "card": "bank"}
LINES_MAX = 10_000  # lines per document, at most


class Hold(Exception):
    """Internal signal: the document cannot be posted now and goes to the held queue."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(reason)


# --------------------------------------------------------------------------- working copy


class Tx:
    """One engine call's working copy: reads fall through to the base state, writes go to
    overlays; :meth:`finish` builds the new immutable state and the result."""

    def __init__(self, state: LedgerState, settings: LedgerSettings, chart: Chart, document: Any):
        self.state, self.settings, self.chart, self.doc = state, settings, chart, document
        self.ref = DocumentRef(type=document.doc_type, id=document.id, number=document.number, version=document.version, source=document.source)
        self.currency = settings.functional_currency
        self.storno = chart.reversal == "red_storno"
        self._docs: dict[str, DocumentRecord] = {}
        self._stock: dict[tuple[str, str], StockPosition] = {}
        self._customers: dict[str, CustomerAccount] = {}
        self._rules: set[str] = set()
        self.entries: list[JournalEntry] = []
        self.movements: list[StockMovement] = []
        self.updates: list[ReceivableUpdate] = []
        self.own: dict[str, Any] = {}
        self.rate: Decimal | None = None

    # ---- reads and writes
    def record(self, key: str) -> DocumentRecord | None:
        """The record of document ``key`` as changed so far in this call."""
        return self._docs.get(key) or self.state.documents.get(key)

    def put_record(self, rec: DocumentRecord) -> None:
        """Replace the record of another document (an invoice a return changes)."""
        self._docs[rec.key] = rec

    def position(self, sku: str, warehouse: str) -> StockPosition:
        """Stock of (sku, warehouse) as changed so far (empty if never seen)."""
        key = (sku, warehouse)
        pos = self._stock.get(key) or self.state.stock.get(key)
        return pos if pos is not None else StockPosition(sku=sku, warehouse=warehouse)

    def customer(self, customer: str) -> CustomerAccount:
        """A customer's account as changed so far (empty if never seen)."""
        acc = self._customers.get(customer) or self.state.customers.get(customer)
        return acc if acc is not None else CustomerAccount(customer=customer)

    def put_customer(self, acc: CustomerAccount) -> None:
        """Store a customer's changed account."""
        self._customers[acc.customer] = acc

    # ---- dates and rates
    def open_date(self, day: dt.date, released: bool) -> dt.date:
        """``day`` if its period is open; else the first open day (``shift`` or a release) or
        :class:`Hold` (``hold``)."""
        if not self.state.is_locked(day):
            return day
        if released or self.settings.locked_period_policy == "shift":
            return self.state.first_open_day()
        raise Hold("period_locked", f"{day} is on or before the lock {self.state.locked_through}")

    def rate_for(self, doc: Any) -> Decimal | None:
        """Functional units per document-currency unit on the document date (None when the
        document is in the functional currency); :class:`Hold` ``no_exchange_rate`` if none."""
        if doc.currency == self.currency:
            return None
        for day, rate in reversed(self.state.rates.get(doc.currency, ())):
            if day <= doc.date:
                if (doc.date - day).days <= self.settings.rate_max_age_days:
                    self.rate = rate
                    return rate
                break
        raise Hold("no_exchange_rate", f"no {doc.currency} rate for {doc.date}")

    def fx(self, amount: Decimal, rate: Decimal | None) -> Decimal:
        """``amount`` in the functional currency at ``rate`` (rounded); unchanged when ``rate`` is None."""
        return amount if rate is None else self.settings.round(amount * rate)

    # ---- entries
    def _rule_name(self, rule: str) -> str:
        name, n = rule, 1
        while name in self._rules:
            n += 1
            name = f"{rule}#{n}"
        self._rules.add(name)
        return name

    def entry(self, rule: str, kind: str, day: dt.date, legs: list[Leg], **dims: str | None) -> JournalEntry | None:
        """Append the entry built from ``legs`` (None when every leg is zero)."""
        lines = emit(legs, self.chart, self.currency, storno=self.storno, rule=rule, document=self.doc.key, dims=_dims(self.doc, dims))
        return self.raw_entry(rule, kind, day, lines)

    def raw_entry(self, rule: str, kind: str, day: dt.date, lines: tuple[JournalLine, ...], reverses: str | None = None) -> JournalEntry | None:
        """Append an entry of ready journal lines (None when there are none); raises UnbalancedEntry naming the document and the rule."""
        if not lines:
            return None
        rule = self._rule_name(rule)
        entry = JournalEntry(
            entry_id=entry_id_for(self.doc.doc_type, self.doc.id, self.doc.version, rule),
            rule=rule,
            kind=kind,
            accounting_date=day,
            document=self.ref,
            lines=lines,
            reverses=reverses,
            exchange_rate=self.rate,
            original_currency=self.doc.currency if self.rate is not None else None,
        )
        if not entry.is_balanced():
            raise UnbalancedEntry(f"entry does not balance: {entry.totals()}", document=self.doc.key, rule=rule)
        self.entries.append(entry)
        return entry

    # ---- stock
    def issue(self, sku: str, warehouse: str, qty: Decimal, day: dt.date, kind: str) -> tuple[Decimal, tuple]:
        """Take stock out at cost by the valuation method: (cost, pieces); Hold ``insufficient_stock`` if not allowed."""
        pos = self.position(sku, warehouse)
        try:
            new, cost, pieces = valuation.issue(pos, qty, self.settings)
        except valuation.InsufficientStock as exc:
            raise Hold("insufficient_stock", str(exc)) from None
        self._stock[(sku, warehouse)] = new
        self._move(kind, day, sku, warehouse, -qty, -cost)
        return cost, pieces

    def receive(self, sku: str, warehouse: str, qty: Decimal, value: Decimal, origin: str, day: dt.date, kind: str) -> Decimal:
        """Add stock; returns the cost correction (actual − provisional) of negative stock."""
        new, corrections = valuation.receive(self.position(sku, warehouse), qty, value, origin, day, self.settings)
        self._stock[(sku, warehouse)] = new
        self._move(kind, day, sku, warehouse, qty, value)
        diff = sum((c.actual - c.provisional for c in corrections), ZERO)
        if diff:
            self._move("adjustment", day, sku, warehouse, ZERO, -diff)
        return diff

    def restore(self, sku: str, warehouse: str, pieces: tuple, day: dt.date) -> Decimal:
        """Put issued pieces back; returns the cost correction of negative stock they covered."""
        new, corrections = valuation.restore_front(self.position(sku, warehouse), pieces, self.settings)
        self._stock[(sku, warehouse)] = new
        self._move("reversal", day, sku, warehouse, sum((p.qty for p in pieces), ZERO), sum((p.value for p in pieces), ZERO))
        diff = sum((c.actual - c.provisional for c in corrections), ZERO)
        if diff:
            self._move("adjustment", day, sku, warehouse, ZERO, -diff)
        return diff

    def remove(self, sku: str, warehouse: str, qty: Decimal, value: Decimal, origin: str, day: dt.date) -> Decimal:
        """Take back stock that came in as ``origin``: the value actually removed."""
        try:
            new, removed = valuation.remove_exact(self.position(sku, warehouse), qty, value, origin, self.settings)
        except valuation.InsufficientStock as exc:
            raise Hold("insufficient_stock", str(exc)) from None
        self._stock[(sku, warehouse)] = new
        self._move("reversal", day, sku, warehouse, -qty, -removed)
        return removed

    def _move(self, kind: str, day: dt.date, sku: str, warehouse: str, qty: Decimal, value: Decimal) -> None:
        n = len(self.movements)
        self.movements.append(
            StockMovement(
                movement_id=entry_id_for(self.doc.doc_type, self.doc.id, self.doc.version, f"move:{n}"),
                kind=kind, accounting_date=day, document=self.ref, sku=sku, warehouse=warehouse,
                qty=qty, value=value, currency=self.currency,
            )
        )

    # ---- receivables and advances
    def open_item(self, customer: str, number: str, doc_date: dt.date, due: dt.date) -> None:
        """Create the open item of invoice ``number`` or refresh its dates, keeping its postings."""
        acc = self.customer(customer)
        item = acc.open_items.get(number)
        item = OpenItem(customer=customer, document=number, document_date=doc_date, due_date=due, currency=self.currency, postings=item.postings if item else ())
        self.put_customer(replace(acc, open_items=_with(acc.open_items, number, item)))

    def item_post(self, customer: str, number: str, day: dt.date, amount: Decimal, kind: str) -> None:
        """Change open item ``number`` by ``amount`` (signed) on ``day`` and report the update."""
        if amount == 0:
            return
        acc = self.customer(customer)
        item = acc.open_items[number]
        posting = ItemPosting(accounting_date=day, amount=amount, document=self.doc.number, kind=kind)
        item = replace(item, postings=item.postings + (posting,))
        self.put_customer(replace(acc, open_items=_with(acc.open_items, number, item)))
        self.updates.append(ReceivableUpdate(customer=customer, document=number, accounting_date=day, amount=amount, currency=self.currency, by=self.ref, kind=kind, due_date=item.due_date))

    def advance_post(self, customer: str, source: str, day: dt.date, amount: Decimal, kind: str) -> None:
        """Change the advance ``source`` (payment or return number) by ``amount`` (signed); created on first use."""
        if amount == 0:
            return
        acc = self.customer(customer)
        posting = ItemPosting(accounting_date=day, amount=amount, document=self.doc.number, kind=kind)
        advances = list(acc.advances)
        for i, adv in enumerate(advances):
            if adv.payment == source:
                advances[i] = replace(adv, postings=adv.postings + (posting,))
                break
        else:
            advances.append(Advance(customer=customer, payment=source, received=day, currency=self.currency, postings=(posting,)))
        self.put_customer(replace(acc, advances=tuple(advances)))
        self.updates.append(ReceivableUpdate(customer=customer, document=source, accounting_date=day, amount=amount, currency=self.currency, by=self.ref, kind=kind, is_advance=True))

    # ---- result
    def _check_invariants(self) -> None:
        """Bugs, not operating errors: amounts are Decimal in the functional currency, a
        negative layer is the only layer of its position."""
        for entry in self.entries:
            for line in entry.lines:
                if not (isinstance(line.debit, Decimal) and isinstance(line.credit, Decimal) and line.currency == self.currency):
                    raise InvariantViolation(f"{entry.rule}: line {line} is not a Decimal amount in {self.currency}")
        for pos in self._stock.values():
            if any(layer.qty < 0 for layer in pos.layers) and len(pos.layers) != 1:
                raise InvariantViolation(f"{pos.sku}@{pos.warehouse}: a negative layer beside others {pos.layers}")

    def finish(self, status: str) -> tuple[LedgerState, PostingResult]:
        """Check the invariants, then return the new state (overlays merged, the document's
        record with this result, its held entry cleared) and the result."""
        self._check_invariants()
        doc = self.doc
        touched = [f"document:{k}" for k in self._docs] + [f"document:{doc.key}"]
        touched += [f"stock:{s}@{w}" for s, w in self._stock] + [f"customer:{c}" for c in self._customers]
        result = PostingResult(
            status=status, document=self.ref, entries=tuple(self.entries), movements=tuple(self.movements),
            receivable_updates=tuple(self.updates), touched=tuple(touched + (["held"] if doc.key in self.state.held else [])),
        )
        prev = self.state.documents.get(doc.key)
        fields = {k: v for k, v in self.own.items()}
        base = prev if prev is not None else DocumentRecord(key=doc.key, document=doc)
        self._docs[doc.key] = replace(base, document=doc, last_result=result, **fields)
        state = self.state
        held = state.held
        if doc.key in held:
            held = held.delete(doc.key)
        new_state = replace(
            state,
            documents=_merge(state.documents, self._docs),
            stock=_merge(state.stock, self._stock),
            customers=_merge(state.customers, self._customers),
            held=held,
        )
        return new_state, result


def _merge(base: Map, changes: dict) -> Map:
    if not changes:
        return base
    with base.mutate() as out:
        for key, value in changes.items():
            out[key] = value
        return out.finish()


def _with(mapping: Map, key: str, value: Any) -> Map:
    return mapping.set(key, value)


def _dims(doc: Any, extra: dict) -> dict:
    dims = {"branch": doc.branch, "warehouse": getattr(doc, "warehouse", None), "customer": getattr(doc, "customer", None)}
    dims.update(extra)
    return dims


# --------------------------------------------------------------------------- validation


def validate(doc: Any, settings: LedgerSettings) -> None:
    """Refuse bad input with :class:`InvalidDocument` naming the document and the check."""
    if doc.status != "active":
        return
    key = doc.key
    lines = getattr(doc, "lines", ()) or getattr(doc, "stock", ())
    if len(lines) > LINES_MAX:
        raise InvalidDocument(f"more than {LINES_MAX} lines", document=key, rule="validate.lines")
    for line in lines:
        qty = getattr(line, "qty", None)
        if not isinstance(qty, Decimal) or qty <= 0:
            raise InvalidDocument(f"line quantity must be a positive Decimal, got {qty!r}", document=key, rule="validate.qty")
    if isinstance(doc, Invoice):
        if not doc.lines:
            raise InvalidDocument("an invoice needs lines", document=key, rule="sale.lines")
        if len({l.line_no for l in doc.lines}) != len(doc.lines):
            raise InvalidDocument("invoice line numbers repeat", document=key, rule="sale.lines")
        for line in doc.lines:
            if not isinstance(line.unit_price, Decimal) or line.unit_price < 0:
                raise InvalidDocument(f"line {line.line_no}: no valid price ({line.unit_price!r})", document=key, rule="sale.price")
            if not isinstance(line.vat_rate, Decimal) or line.vat_rate < 0:
                raise InvalidDocument(f"line {line.line_no}: bad VAT rate {line.vat_rate!r}", document=key, rule="sale.vat")
            if not (ZERO <= line.discount_percent <= 100):
                raise InvalidDocument(f"line {line.line_no}: discount {line.discount_percent} outside 0-100", document=key, rule="sale.discount")
        if doc.payment_terms_days < 0:
            raise InvalidDocument("negative payment terms", document=key, rule="sale.terms")
    elif isinstance(doc, Payment):
        if not isinstance(doc.amount, Decimal) or doc.amount <= 0:
            raise InvalidDocument(f"payment amount must be positive, got {doc.amount!r}", document=key, rule="payment.amount")
        if any(a.amount <= 0 for a in doc.allocations):
            raise InvalidDocument("allocation amounts must be positive", document=key, rule="payment.allocations")
        if sum((a.amount for a in doc.allocations), ZERO) > doc.amount:
            raise InvalidDocument("allocations add up to more than the payment", document=key, rule="payment.allocations")
    elif isinstance(doc, GoodsReceipt):
        for line in doc.lines:
            if not isinstance(line.unit_cost, Decimal) or line.unit_cost < 0:
                raise InvalidDocument(f"{line.sku}: no valid unit cost ({line.unit_cost!r})", document=key, rule="receipt.cost")


# --------------------------------------------------------------------------- dispatch


def apply_document(tx: Tx, doc: Any, *, released: bool) -> None:
    """Post ``doc`` (a new document, or a new version of a posted one) into ``tx``."""
    rec = tx.record(doc.key)
    posted = rec is not None and rec.posted
    if isinstance(doc, OpeningBalance):
        if posted:
            raise InvalidDocument("opening balances cannot change once posted", document=doc.key, rule="opening")
        post_opening(tx, doc)
        return
    if rec is not None and isinstance(rec.document, OpeningInvoice):
        raise InvalidDocument(
            f"invoice {doc.number} was taken over at go-live (its receivable and stock are in the opening "
            f"balance); a version dated after go-live would post it a second time", document=doc.key, rule="golive.reference")
    if not posted:
        if doc.status == "active":
            day = tx.open_date(doc.date, released)
            POST[doc.doc_type](tx, doc, day, tx.rate_for(doc))
        return
    if same_substance(rec.document, doc):
        return  # a new version that changes nothing the ledger uses (another column, a touch)
    if not tx.state.is_locked(rec.accounting_date):
        day = tx.open_date(doc.date, released) if doc.status == "active" else rec.accounting_date
        rate = tx.rate_for(doc) if doc.status == "active" else None
        reverse(tx, rec, rec.accounting_date)
        if doc.status == "active":
            POST[doc.doc_type](tx, doc, day, rate)
        elif isinstance(doc, Invoice):
            settle_item(tx, rec.document.customer, doc.number, rec.accounting_date)
        return
    if not released and tx.settings.locked_period_policy == "hold":
        raise Hold("period_locked", f"posted on {rec.accounting_date}, locked through {tx.state.locked_through}")
    day = max(tx.state.first_open_day(), doc.date)
    if isinstance(doc, Invoice) and tx.settings.late_corrections == "adjustment":
        adjust_invoice(tx, rec, doc, day)
        return
    rate = tx.rate_for(doc) if doc.status == "active" else None
    reverse(tx, rec, day)
    if doc.status == "active":
        POST[doc.doc_type](tx, doc, day, rate)
    elif isinstance(doc, Invoice):
        settle_item(tx, rec.document.customer, doc.number, day)


_NOT_SUBSTANCE = frozenset({"version", "source", "entered_at"})


def same_substance(old: Any, new: Any) -> bool:
    """True when two versions of a document differ only in version, source position or entry
    time: nothing to reverse or post again."""
    if type(old) is not type(new):
        return False
    return all(
        getattr(old, f.name) == getattr(new, f.name)
        for f in dataclasses.fields(old)
        if f.name not in _NOT_SUBSTANCE
    )


# --------------------------------------------------------------------------- invoices


def post_invoice(tx: Tx, inv: Invoice, day: dt.date, rate: Decimal | None) -> None:
    """Revenue (sale rule of the chart), cost of sales (valuation), then the advance offset."""
    figs = [line_figures(l, inv.prices_include_vat, tx.settings, rate) for l in inv.lines]
    gross = sum((f.gross for f in figs), ZERO)
    tx.open_item(inv.customer, inv.number, inv.date, inv.date + dt.timedelta(days=inv.payment_terms_days))
    revenue = tx.entry("sale.revenue", "revenue", day, money_legs(figs, gross, ZERO, inv.number, tx.chart, tx.settings))
    tx.item_post(inv.customer, inv.number, day, gross, "revenue")
    records, costs = [], []
    previous = tx.state.documents.get(inv.key)
    returned = {(l.line_no, l.sku): l for l in (previous.lines if previous is not None else ())}
    for line, fig in zip(inv.lines, figs):
        if line.kind == "service":  # a service is sold, never issued from stock
            cost, pieces = ZERO, ()
        else:
            cost, pieces = tx.issue(line.sku, inv.warehouse, line.qty, day, "issue")
        record = LineRecord(line_no=line.line_no, sku=line.sku, qty=line.qty, net=fig.net, vat=fig.vat, discount=fig.discount, cogs=cost, issued=pieces)
        records.append(_keep_returns(record, returned.get((line.line_no, line.sku)), inv))
        costs.append((line.sku, cost))
    cogs = tx.entry("sale.cogs", "cogs", day, cogs_legs(costs))
    offset, settlements = settle_item(tx, inv.customer, inv.number, day)
    tx.own.update(
        posted=True, accounting_date=day, lines=tuple(records), settlements=settlements, rate=rate,
        entries=tuple(e for e in (revenue, cogs, offset) if e is not None),
    )


def _service_lines(inv: Invoice) -> set[tuple[int, str]]:
    """(line_no, sku) of the invoice's service lines (``InvoiceLine.kind``)."""
    return {(l.line_no, l.sku) for l in inv.lines if l.kind == "service"}


def _keep_returns(record: LineRecord, old: LineRecord | None, inv: Invoice) -> LineRecord:
    """A new version of an invoice line keeps what returns already took back of it; a new
    quantity below the quantity returned is refused."""
    if old is None or old.returned_qty == 0:
        return record
    if record.qty < old.returned_qty:
        raise InvalidDocument(
            f"line {record.line_no}: new quantity {record.qty} is below the {old.returned_qty} already returned",
            document=inv.key, rule="sale.returned",
        )
    return replace(record, returned_qty=old.returned_qty, returned_net=old.returned_net, returned_vat=old.returned_vat,
                   returned_discount=old.returned_discount, returned_cogs=old.returned_cogs)


def settle_item(tx: Tx, customer: str, number: str, day: dt.date) -> tuple[JournalEntry | None, tuple[Settlement, ...]]:
    """After an open item changed: settle it from the customer's advances (oldest first) when
    it is open, or re-apply the excess by the payment rule when it is over-settled."""
    acc = tx.customer(customer)
    open_amount = acc.open_items[number].open
    if open_amount < 0:
        reallocate(tx, customer, number, -open_amount, day)
        return None, ()
    available = acc.advance_open
    if open_amount == 0 or available <= 0:
        return None, ()
    amount = min(open_amount, available)
    legs, settlements, left = [], [], amount
    for adv in acc.advances:
        take = min(adv.open, left)
        if take <= 0:
            continue
        legs.append(Leg("customer_advances", "D", take, advance=adv.payment))
        settlements.append(Settlement(document=adv.payment, amount=take, advance=True))
        tx.advance_post(customer, adv.payment, day, -take, "advance_offset")
        left -= take
        if left == 0:
            break
    legs.append(Leg("receivable", "C", amount, open_item=number))
    tx.item_post(customer, number, day, -amount, "advance_offset")
    entry = tx.entry("sale.advance_offset", "advance_offset", day, legs)
    return entry, tuple(settlements)


def oldest_first_plan(acc: CustomerAccount, amount: Decimal, planned: dict[str, Decimal], exclude: str | None = None) -> Decimal:
    """Spread ``amount`` over the customer's open items, oldest due date first (ties: older
    document date, then lower number), adding to ``planned``; returns what is left."""
    if amount <= 0:  # nothing to spread: the customer's items are not read
        return amount
    items = sorted(
        (i for i in acc.owing_items() if i.document != exclude and i.open - planned.get(i.document, ZERO) > 0),
        key=lambda i: (i.due_date, i.document_date, i.document),
    )
    for item in items:
        if amount <= 0:
            break
        take = min(amount, item.open - planned.get(item.document, ZERO))
        planned[item.document] = planned.get(item.document, ZERO) + take
        amount -= take
    return amount


def reallocate(tx: Tx, customer: str, number: str, excess: Decimal, day: dt.date) -> None:
    """Money settled on ``number`` above what it now owes is applied again by the payment rule
    (other open items oldest first, the rest an advance): one ``payment_reallocation`` entry."""
    tx.item_post(customer, number, day, excess, "payment_reallocation")
    planned: dict[str, Decimal] = {}
    rest = oldest_first_plan(tx.customer(customer), excess, planned, exclude=number)
    legs = [Leg("receivable", "D", excess, open_item=number)]
    for doc, take in planned.items():
        legs.append(Leg("receivable", "C", take, open_item=doc))
        tx.item_post(customer, doc, day, -take, "payment_reallocation")
    if rest:
        legs.append(Leg("customer_advances", "C", rest, advance=number))
        tx.advance_post(customer, number, day, rest, "payment_reallocation")
    tx.entry("payment.reallocation", "payment_reallocation", day, legs)


def adjust_invoice(tx: Tx, rec: DocumentRecord, new: Invoice, day: dt.date) -> None:
    """A change of an invoice whose period is locked, posted as the difference on ``day``:
    a decrease like a return (goods back at the cost they left with, as a new layer), an
    increase like an additional sale (``adjustment`` + ``adjustment_cogs``)."""
    old_doc: Invoice = rec.document
    if new.customer != old_doc.customer:
        raise InvalidDocument("customer changed after the period was locked", document=new.key, rule="late_correction")
    rate = tx.rate_for(new) if new.status == "active" else rec.rate
    new_lines = {(l.line_no, l.sku): l for l in new.lines} if new.status == "active" else {}
    old_lines = {(l.line_no, l.sku): l for l in rec.lines}
    services = _service_lines(old_doc) | (_service_lines(new) if new.status == "active" else set())
    deltas, costs, records = [], [], []
    for key in sorted(set(old_lines) | set(new_lines)):
        old, line = old_lines.get(key), new_lines.get(key)
        fig = line_figures(line, new.prices_include_vat, tx.settings, rate) if line else LineFigures(key[0], key[1], ZERO, ZERO, ZERO, ZERO)
        old = old or LineRecord(line_no=key[0], sku=key[1], qty=ZERO, net=ZERO, vat=ZERO, discount=ZERO, cogs=ZERO)
        dq = fig.qty - old.qty
        cogs, issued = old.cogs, old.issued
        if key in services:
            pass  # a service line moves no stock and has no cost
        elif dq < 0:
            share = old.cogs if fig.qty == 0 else tx.settings.round(-dq * old.cogs / old.qty)
            _cost_adjust(tx, key[1], tx.receive(key[1], old_doc.warehouse, -dq, share, old_doc.number, day, "adjustment"), day)
            cogs -= share
            costs.append((key[1], -share))
        elif dq > 0:
            cost, pieces = tx.issue(key[1], new.warehouse, dq, day, "issue")
            cogs, issued = cogs + cost, issued + pieces
            costs.append((key[1], cost))
        delta = LineFigures(key[0], key[1], dq, fig.net - old.net, fig.vat - old.vat, fig.discount - old.discount)
        if delta.net or delta.vat or delta.discount:
            deltas.append(delta)
        if fig.qty < old.returned_qty:
            raise InvalidDocument(f"line {key[0]}: new quantity {fig.qty} is below the {old.returned_qty} already returned", document=new.key, rule="sale.returned")
        if fig.qty:
            records.append(replace(old, qty=fig.qty, net=fig.net, vat=fig.vat, discount=fig.discount, cogs=cogs, issued=issued))
    change = sum((d.gross for d in deltas), ZERO)
    item = tx.customer(old_doc.customer).open_items[old_doc.number]
    to_item = change if change >= 0 else -min(-change, max(item.open, ZERO))
    to_advance = to_item - change
    legs = money_legs(deltas, to_item, to_advance, old_doc.number, tx.chart, tx.settings, advance_ref=old_doc.number)
    entries = [tx.entry("late.adjustment", "adjustment", day, legs), tx.entry("late.adjustment_cogs", "adjustment_cogs", day, cogs_legs(costs))]
    tx.open_item(old_doc.customer, old_doc.number, new.date, new.date + dt.timedelta(days=new.payment_terms_days))
    tx.item_post(old_doc.customer, old_doc.number, day, to_item, "adjustment")
    tx.advance_post(old_doc.customer, old_doc.number, day, to_advance, "adjustment")
    offset, settlements = settle_item(tx, old_doc.customer, old_doc.number, day) if change > 0 else (None, ())
    entries.append(offset)
    tx.own.update(
        posted=True, accounting_date=rec.accounting_date, lines=tuple(records),
        settlements=rec.settlements + settlements, entries=rec.entries + tuple(e for e in entries if e is not None),
    )


# --------------------------------------------------------------------------- payments


def post_payment(tx: Tx, pay: Payment, day: dt.date, rate: Decimal | None) -> None:
    """Dr bank | cash | vat_deposit / Cr receivable (explicit allocations first, capped at the
    open amount; then oldest due first) / Cr customer_advances (the rest)."""
    amount = tx.fx(pay.amount, rate)
    acc = tx.customer(pay.customer)
    planned: dict[str, Decimal] = {}
    left = amount
    for alloc in pay.allocations:
        item = acc.open_items.get(alloc.document)
        if item is None:
            continue
        take = min(tx.fx(alloc.amount, rate), item.open - planned.get(alloc.document, ZERO), left)
        if take > 0:
            planned[alloc.document] = planned.get(alloc.document, ZERO) + take
            left -= take
    left = oldest_first_plan(acc, left, planned)
    role = tx.settings.card_role if pay.method == "card" else METHOD_ROLES[pay.method]
    legs = [Leg(role, "D", amount)]
    settlements = []
    for doc, take in planned.items():
        legs.append(Leg("receivable", "C", take, open_item=doc))
        settlements.append(Settlement(document=doc, amount=take))
    if left:
        legs.append(Leg("customer_advances", "C", left, advance=pay.number))
        settlements.append(Settlement(document=pay.number, amount=left, advance=True))
    entry = tx.entry("payment", "payment", day, legs)
    for doc, take in planned.items():
        tx.item_post(pay.customer, doc, day, -take, "payment")
    tx.advance_post(pay.customer, pay.number, day, left, "payment")
    tx.own.update(posted=True, accounting_date=day, entries=(entry,), settlements=tuple(settlements), rate=rate)


# --------------------------------------------------------------------------- returns


def _return_line(lines: list[LineRecord], ret_line: Any, ret: SalesReturn) -> int:
    for i, lr in enumerate(lines):
        if ret_line.line is not None:
            if lr.line_no == ret_line.line:
                if lr.sku != ret_line.sku:
                    raise InvalidDocument(f"invoice line {lr.line_no} is {lr.sku}, not {ret_line.sku}", document=ret.key, rule="return.line")
                return i
        elif lr.sku == ret_line.sku and lr.qty - lr.returned_qty > 0:
            return i
    raise InvalidDocument(f"no line of {ret.against} with {ret_line.sku} left to return", document=ret.key, rule="return.line")


def post_return(tx: Tx, ret: SalesReturn, day: dt.date, rate: Decimal | None) -> None:
    """Credit pro rata to the invoice line (the last return of a line takes exactly what is
    left); goods back at the cost they left with as a new layer at the end; the credit above
    the invoice's open amount becomes an advance."""
    inv_rec = tx.record(f"invoice:{ret.against}")
    if inv_rec is None or not inv_rec.posted or f"invoice:{ret.against}" in tx.state.held:
        raise Hold("awaiting_original", f"invoice {ret.against} not posted or its last version held")
    if inv_rec.document.customer != ret.customer:
        raise InvalidDocument(f"{ret.against} belongs to another customer", document=ret.key, rule="return.customer")
    r = tx.settings.round
    lines = list(inv_rec.lines)
    services = _service_lines(inv_rec.document)
    figs, costs, shares, restocked = [], [], [], []
    for rl in ret.lines:
        i = _return_line(lines, rl, ret)
        lr = lines[i]
        left = lr.qty - lr.returned_qty
        if rl.qty > left:
            raise InvalidDocument(f"{rl.sku}: returning {rl.qty}, only {left} left on line {lr.line_no}", document=ret.key, rule="return.qty")
        if rl.qty == left:
            net, vat, disc, cost = lr.net - lr.returned_net, lr.vat - lr.returned_vat, lr.discount - lr.returned_discount, lr.cogs - lr.returned_cogs
        else:
            net, vat, disc, cost = (r(rl.qty * x / lr.qty) for x in (lr.net, lr.vat, lr.discount, lr.cogs))
        lines[i] = replace(lr, returned_qty=lr.returned_qty + rl.qty, returned_net=lr.returned_net + net, returned_vat=lr.returned_vat + vat, returned_discount=lr.returned_discount + disc, returned_cogs=lr.returned_cogs + cost)
        figs.append(LineFigures(lr.line_no, lr.sku, -rl.qty, -net, -vat, -disc))
        costs.append((lr.sku, -cost))
        shares.append((lr.line_no, rl.qty, net, vat, disc, cost))
        if (lr.line_no, lr.sku) not in services:  # a returned service restocks nothing
            restocked.append((lr.sku, ret.warehouse, rl.qty, cost))
    credit = -sum((f.gross for f in figs), ZERO)
    item = tx.customer(ret.customer).open_items.get(ret.against)  # None: an invoice settled before go-live
    to_item = min(credit, max(item.open, ZERO)) if item is not None else ZERO
    to_advance = credit - to_item
    money = tx.entry("return.money", "return", day, money_legs(figs, -to_item, to_advance, ret.against, tx.chart, tx.settings, advance_ref=ret.number))
    cogs = tx.entry("return.cogs", "return_cogs", day, cogs_legs(costs))
    corrections = ZERO
    for sku, wh, qty, cost in restocked:
        if qty > 0:
            corrections += _cost_adjust(tx, sku, tx.receive(sku, wh, qty, cost, ret.number, day, "return"), day)
    tx.item_post(ret.customer, ret.against, day, -to_item, "return")
    tx.advance_post(ret.customer, ret.number, day, to_advance, "return")
    tx.put_record(replace(inv_rec, lines=tuple(lines)))
    settlements = (Settlement(ret.against, to_item),) + ((Settlement(ret.number, to_advance, advance=True),) if to_advance else ())
    tx.own.update(
        posted=True, accounting_date=day, entries=tuple(e for e in (money, cogs) if e is not None),
        settlements=settlements, restocked=tuple(restocked), return_shares=tuple(shares),
    )


def _cost_adjust(tx: Tx, sku: str, diff: Decimal, day: dt.date) -> Decimal:
    """Post ``diff`` (cost that left the stock − cost booked to inventory) as a
    ``cost_adjustment`` entry: Dr cost_of_sales / Cr inventory (negative: the other way)."""
    if diff:
        tx.entry(f"cost_adjustment:{sku}", "cost_adjustment", day, cogs_legs([(sku, diff)]))
    return diff


# --------------------------------------------------------------------------- stock documents


def post_receipt(tx: Tx, gr: GoodsReceipt, day: dt.date, rate: Decimal | None) -> None:
    """Dr inventory (net) and Dr vat_recoverable / Cr payable; each line a new cost layer.
    Stock issued on negative stock and covered now gets a ``cost_adjustment``."""
    r = tx.settings.round
    legs, vat_total, total, restocked, diffs = [], ZERO, ZERO, [], []
    for line in gr.lines:
        value_doc = r(line.qty * line.unit_cost)
        value, vat = tx.fx(value_doc, rate), tx.fx(r(value_doc * line.vat_rate / 100), rate)
        legs.append(Leg("inventory", "D", value, sku=line.sku))
        vat_total += vat
        total += value + vat
        restocked.append((line.sku, gr.warehouse, line.qty, value))
        diffs.append((line.sku, tx.receive(line.sku, gr.warehouse, line.qty, value, gr.number, day, "receipt")))
    legs += [Leg("vat_recoverable", "D", vat_total), Leg("payable", "C", total)]
    entry = tx.entry("receipt", "goods_receipt", day, legs)
    for sku, diff in diffs:
        _cost_adjust(tx, sku, diff, day)
    tx.own.update(posted=True, accounting_date=day, entries=(entry,), restocked=tuple(restocked), rate=rate)


def post_write_off(tx: Tx, wo: WriteOff, day: dt.date, rate: Decimal | None) -> None:
    """Dr inventory_losses / Cr inventory at cost (valuation method)."""
    legs, records = [], []
    for i, line in enumerate(wo.lines, start=1):
        cost, pieces = tx.issue(line.sku, wo.warehouse, line.qty, day, "write_off")
        legs += [Leg("inventory_losses", "D", cost, sku=line.sku), Leg("inventory", "C", cost, sku=line.sku)]
        records.append(LineRecord(line_no=i, sku=line.sku, qty=line.qty, net=ZERO, vat=ZERO, discount=ZERO, cogs=cost, issued=pieces))
    entry = tx.entry("write_off", "write_off", day, legs)
    tx.own.update(posted=True, accounting_date=day, entries=tuple(e for e in (entry,) if e), lines=tuple(records))


def post_opening(tx: Tx, ob: OpeningBalance) -> None:
    """Opening balances against the technical account ``000``, exempt from locks: stock
    (Dr inventory, a cost layer each), open receivables (Dr receivable, an open item per
    invoice with its due date), customer advances (Cr customer_advances per payment)."""
    r = tx.settings.round
    lines = []
    inv = tx.chart.account("inventory", rule="opening", document=ob.key)
    opening = tx.chart.account("opening_balance", rule="opening", document=ob.key)
    for sl in ob.stock:
        value = r(sl.qty * sl.unit_cost)
        tx.receive(sl.sku, sl.warehouse, sl.qty, value, ob.number, ob.date, "opening")
        for account, debit, credit in ((inv, value, ZERO), (opening, ZERO, value)):
            lines.append(JournalLine(account=account, debit=debit, credit=credit, currency=tx.currency, branch=ob.branch, warehouse=sl.warehouse, sku=sl.sku))
    entry = tx.raw_entry("opening", "opening_balance", ob.date, tuple(lines))
    money = tx.raw_entry("opening.money", "opening_balance", ob.date, _opening_money_lines(tx, ob, opening))
    for ref in ob.invoices:
        _register_reference(tx, ob, ref)
    tx.own.update(posted=True, accounting_date=ob.date, entries=tuple(e for e in (entry, money) if e))


def _register_reference(tx: Tx, ob: OpeningBalance, ref: OpeningInvoice) -> None:
    """Record invoice ``ref`` (dated on or before go-live) as posted **without an entry**, so a
    later return finds its original and posts by :func:`post_return` (``../shared/golden/README.md``,
    "Conventions": a return credits pro rata to the original invoice line, the goods come back
    at the cost they left with, the credit above the invoice's open amount is an advance). Each line's figures
    are those of its returnable quantity by the sale rule (:func:`line_figures` at the line's
    price, no exchange rate: the reference is in the functional currency), its cost
    ``round(qty × unit_cost)``; nothing is returned yet. An invoice the engine already knows
    (posted after go-live) keeps its own record."""
    if tx.record(ref.key) is not None:
        return
    records = []
    for line in ref.lines:
        sold = InvoiceLine(line_no=line.line_no, sku=line.sku, qty=line.qty, unit_price=line.unit_price,
                           vat_rate=line.vat_rate, discount_percent=line.discount_percent, kind=line.kind)
        fig = line_figures(sold, ref.prices_include_vat, tx.settings, None)
        records.append(LineRecord(line_no=line.line_no, sku=line.sku, qty=line.qty, net=fig.net, vat=fig.vat,
                                  discount=fig.discount, cogs=tx.settings.round(line.qty * line.unit_cost)))
    tx.put_record(DocumentRecord(key=ref.key, document=ref, posted=True, accounting_date=ob.date, lines=tuple(records)))


def _opening_money_lines(tx: Tx, ob: OpeningBalance, opening: str) -> tuple[JournalLine, ...]:
    """Open items and advances of ``ob`` into the customers' accounts; their journal lines."""
    receivable = tx.chart.account("receivable", rule="opening", document=ob.key)
    advances = tx.chart.account("customer_advances", rule="opening", document=ob.key)
    lines = []
    for item in ob.receivables:
        amount = tx.settings.round(item.amount)
        tx.open_item(item.customer, item.document, item.document_date, item.due_date)
        tx.item_post(item.customer, item.document, ob.date, amount, "opening_balance")
        lines += [JournalLine(account=receivable, debit=amount, credit=ZERO, currency=tx.currency, branch=ob.branch, customer=item.customer, open_item=item.document),
                  JournalLine(account=opening, debit=ZERO, credit=amount, currency=tx.currency, branch=ob.branch, customer=item.customer)]
    for adv in ob.advances:
        amount = tx.settings.round(adv.amount)
        tx.advance_post(adv.customer, adv.payment, ob.date, amount, "opening_balance")
        lines += [JournalLine(account=opening, debit=amount, credit=ZERO, currency=tx.currency, branch=ob.branch, customer=adv.customer),
                  JournalLine(account=advances, debit=ZERO, credit=amount, currency=tx.currency, branch=ob.branch, customer=adv.customer, advance=adv.payment)]
    return tuple(lines)


# --------------------------------------------------------------------------- reversals


def reverse(tx: Tx, rec: DocumentRecord, day: dt.date) -> None:
    """Reverse everything ``rec`` posted (entries in effect, stock, open items, advances),
    dated ``day``: debit and credit swapped, or red storno by chart."""
    for entry in rec.entries:
        tx.raw_entry(f"reversal:{entry.entry_id}", "reversal", day, reversal_lines(entry.lines, tx.storno), reverses=entry.entry_id)
    doc = rec.document
    if isinstance(doc, Invoice):
        tx.item_post(doc.customer, doc.number, day, -sum((l.gross for l in rec.lines), ZERO), "reversal")
        for s in rec.settlements:
            tx.advance_post(doc.customer, s.document, day, s.amount, "reversal")
            tx.item_post(doc.customer, doc.number, day, s.amount, "reversal")
        for line in rec.lines:
            if line.issued:  # service lines issued nothing
                _cost_adjust(tx, line.sku, tx.restore(line.sku, doc.warehouse, line.issued, day), day)
    elif isinstance(doc, Payment):
        for s in rec.settlements:
            if s.advance:
                tx.advance_post(doc.customer, s.document, day, -s.amount, "reversal")
            else:
                tx.item_post(doc.customer, s.document, day, s.amount, "reversal")
    elif isinstance(doc, SalesReturn):
        _reverse_return(tx, rec, day)
    elif isinstance(doc, GoodsReceipt):
        for sku, wh, qty, value in rec.restocked:
            _cost_adjust(tx, sku, tx.remove(sku, wh, qty, value, doc.number, day) - value, day)
    elif isinstance(doc, WriteOff):
        for line in rec.lines:
            _cost_adjust(tx, line.sku, tx.restore(line.sku, doc.warehouse, line.issued, day), day)
    tx.own.update(posted=False, entries=(), lines=(), settlements=(), restocked=(), return_shares=())


def _reverse_return(tx: Tx, rec: DocumentRecord, day: dt.date) -> None:
    doc: SalesReturn = rec.document
    inv_rec = tx.record(f"invoice:{doc.against}")
    lines = {l.line_no: l for l in inv_rec.lines}
    for line_no, qty, net, vat, disc, cost in rec.return_shares:
        lr = lines[line_no]
        lines[line_no] = replace(lr, returned_qty=lr.returned_qty - qty, returned_net=lr.returned_net - net, returned_vat=lr.returned_vat - vat, returned_discount=lr.returned_discount - disc, returned_cogs=lr.returned_cogs - cost)
    tx.put_record(replace(inv_rec, lines=tuple(lines[l.line_no] for l in inv_rec.lines)))
    for s in rec.settlements:
        if s.advance:
            tx.advance_post(doc.customer, s.document, day, -s.amount, "reversal")
        else:
            tx.item_post(doc.customer, s.document, day, s.amount, "reversal")
    for sku, wh, qty, value in rec.restocked:
        _cost_adjust(tx, sku, tx.remove(sku, wh, qty, value, doc.number, day) - value, day)


POST = {
    "invoice": post_invoice,
    "payment": post_payment,
    "return": post_return,
    "goods_receipt": post_receipt,
    "write_off": post_write_off,
}
