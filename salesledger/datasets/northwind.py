"""Northwind (``pthom/northwind_psql``, Ms-PL; fictional): the classic ERP order schema as a slice plan.

Input: the plain-SQL dump ``northwind.sql`` given by path; only its one-line
``INSERT INTO <table> VALUES (…);`` statements of ``customers``, ``suppliers``, ``products``,
``orders`` and ``order_details`` are read (SQL literals: ``'text'`` with ``''`` escapes, NULL,
numbers kept as text).

Assumptions (each one also in the README section "Data"):

1. **Exact decimals from ``real``**: money columns are ``real`` (float4) printed with 9
   significant digits (``9.80000019``). Rule: the printed literal is read as a ``Decimal`` and
   rounded to 0.01 with ROUND_HALF_UP (``9.80``, freight ``32.3800011`` -> ``32.38``); a discount
   fraction is read likewise, × 100 and rounded to 0.01 as a percentage (``0.150000006`` ->
   ``15.00``). Quantities are integers.
2. Currency USD, prices **net**, VAT rate 0% (Northwind has no tax columns; sales tax is not
   modelled). A document's amounts need a USD rate when the ledger's functional currency is
   another one.
3. An order is an invoice numbered ``NW<order_id>``, dated and posted on its ``shipped_date``
   (at a seeded time 09:00-16:59; the dump has dates only) to ``customer_id`` from warehouse
   ``NW-MAIN``; its lines are the order details (SKU ``NW<product_id>``, discount percent) plus a
   service line ``FREIGHT`` (qty 1, the freight) when the freight is positive. An order never
   shipped (21) is entered as a draft on its order date (when that date falls within the
   slice) and never posted. The slice's days are shipping dates.
4. Suppliers are the dump's (``NWS<supplier_id>``, each product's own supplier), so goods
   receipts follow the data; costs, opening stock, receipts and payers follow the seeded model
   of :mod:`salesledger.datasets.model`. No returns (Northwind has none) and no simulated
   corrections.
5. Dead letters: an order line whose product is unknown (``unknown_product``) or whose quantity
   is not positive (``non_positive_quantity``); an order without a known customer
   (``unknown_customer``) or without lines (``order_without_lines``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from salesledger.datasets import model
from salesledger.datasets import online_retail as orr
from salesledger.datasets.model import CENT, DEFAULT_PARAMETERS, ModelParameters
from salesledger.datasets.plan import (Builder, Customer, Document, Plan, Product, plan_stock)

DATASET = "northwind"
CURRENCY = "USD"
VAT_RATE_PERCENT = Decimal(0)
BRANCH = ("NW", "Northwind Traders")
WAREHOUSE = ("NW-MAIN", "Northwind main warehouse")
FREIGHT_SKU = "FREIGHT"
TABLES = ("customers", "suppliers", "products", "orders", "order_details")
_INSERT = re.compile(r"^INSERT INTO (\w+) VALUES \((.*)\);\s*$")
_TOKEN = re.compile(r"\s*(?:'((?:[^']|'')*)'|(NULL)|([-+0-9.eE]+))\s*(?:,|$)")


class NorthwindError(ValueError):
    """The dump cannot be read (line number in the message)."""


def money(text: str) -> Decimal:
    """A ``real`` literal as an exact amount: ``Decimal(text)`` rounded to 0.01 ROUND_HALF_UP."""
    return Decimal(text).quantize(CENT, rounding=ROUND_HALF_UP)


def discount_percent(text: str) -> Decimal:
    """A ``real`` discount fraction as a percentage rounded to 0.01 (``0.150000006`` -> 15.00)."""
    return (Decimal(text) * 100).quantize(CENT, rounding=ROUND_HALF_UP)


def parse_values(text: str, line_no: int = 0) -> tuple[str | None, ...]:
    """The literals of one ``VALUES (…)`` list: strings unescaped, NULL as None, numbers as text."""
    out: list[str | None] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise NorthwindError(f"line {line_no}: cannot read values at {text[pos:pos + 30]!r}")
        string, null, number = match.groups()
        out.append(string.replace("''", "'") if string is not None else None if null else number)
        pos = match.end()
    return tuple(out)


def read_dump(path: Path | str) -> dict[str, list[tuple[str | None, ...]]]:
    """Rows of :data:`TABLES` from the dump, in file order.

    Raises:
        NorthwindError: a statement of those tables cannot be read, or a table is missing.
    """
    rows: dict[str, list] = {t: [] for t in TABLES}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            match = _INSERT.match(line)
            if match and match.group(1) in rows:
                rows[match.group(1)].append(parse_values(match.group(2), line_no))
    empty = [t for t, r in rows.items() if not r]
    if empty:
        raise NorthwindError(f"not the Northwind dump: no rows for {', '.join(empty)}")
    return rows


@dataclass(frozen=True)
class Order:
    """An order with its exact lines: (sku, qty, unit_price, discount_percent) and freight."""

    order_id: int
    customer: str | None
    order_date: dt.date | None
    shipped_date: dt.date | None
    freight: Decimal
    lines: tuple[tuple[str, Decimal, Decimal, Decimal], ...]
    dead: tuple[tuple[str, str, Decimal], ...]  # (sku, reason, qty)

    @property
    def number(self) -> str:
        """The invoice number ``NW<order_id>``."""
        return f"NW{self.order_id}"


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def orders_of(rows: dict[str, list]) -> list[Order]:
    """The orders with their lines, exact decimals by rule 1; dead lines kept apart."""
    products = {int(r[0]) for r in rows["products"]}
    details: dict[int, list] = defaultdict(list)
    for order_id, product_id, price, qty, discount in rows["order_details"]:
        details[int(order_id)].append((int(product_id), money(price), Decimal(qty), discount_percent(discount)))
    out = []
    for r in rows["orders"]:
        order_id = int(r[0])
        lines, dead = [], []
        for product_id, price, qty, disc in details.get(order_id, ()):
            sku = f"NW{product_id}"
            if product_id not in products:
                dead.append((sku, "unknown_product", qty))
            elif qty <= 0:
                dead.append((sku, "non_positive_quantity", qty))
            else:
                lines.append((sku, qty, price, disc))
        out.append(Order(order_id, r[1], _date(r[3]), _date(r[5]),
                         money(r[7]) if r[7] is not None else Decimal(0), tuple(lines), tuple(dead)))
    return out


def shipping_days(orders: list[Order]) -> list[dt.date]:
    """Distinct shipped dates, ascending (the dataset's trading days)."""
    return sorted({o.shipped_date for o in orders if o.shipped_date})


def _dead_letter(order: Order, sku: str, reason: str, qty: Decimal, at: dt.datetime,
                 customer: str | None, position: int = 0) -> orr.DeadLetter:
    line = orr.SourceLine(order.order_id, order.number, sku, "", qty, at, Decimal(0), customer or "-", "")
    return orr.DeadLetter(line, reason, f"{order.number}: {reason} ({sku})", position)


def _invoice_lines(order: Order) -> tuple[dict[str, Any], ...]:
    """The order's detail lines, then the freight line (rule 3)."""
    lines = tuple({"line_no": no, "sku": sku, "description": None, "qty": qty, "unit_price": price,
                   "discount_percent": disc, "vat_rate": VAT_RATE_PERCENT}
                  for no, (sku, qty, price, disc) in enumerate(order.lines, start=1))
    if order.freight > 0:
        lines += ({"line_no": len(lines) + 1, "sku": FREIGHT_SKU, "description": "Freight",
                   "qty": Decimal(1), "unit_price": order.freight, "discount_percent": Decimal(0),
                   "vat_rate": VAT_RATE_PERCENT},)
    return lines


def _order_time(seed: int, order: Order, day: dt.date) -> dt.datetime:
    minute = model.rng_for(seed, "nw-time", order.order_id).randint(9 * 60, 17 * 60 - 1)
    return dt.datetime.combine(day, dt.time(minute // 60, minute % 60))


def plan_northwind(rows: dict[str, list], days: list[dt.date], seed: int,
                   params: ModelParameters = DEFAULT_PARAMETERS) -> Plan:
    """The :class:`~salesledger.datasets.plan.Plan` of the orders shipped on ``days`` (and the
    never-shipped orders dated within them) under ``seed``."""
    orders = orders_of(rows)
    customers_known = {r[0]: (r[1], r[8]) for r in rows["customers"]}
    b, counts, issues = Builder(), Counter(), []
    used_customers: set[str] = set()
    used_skus: dict[str, None] = {}
    for order in sorted(orders, key=lambda o: (o.shipped_date or o.order_date or dt.date.min, o.order_id)):
        shipped = order.shipped_date in set(days)
        draft_only = (order.shipped_date is None and order.order_date is not None
                      and days[0] <= order.order_date <= days[-1])
        if not (shipped or draft_only):
            continue
        counts["source_documents"] += 1
        counts["source_lines"] += len(order.lines) + len(order.dead)
        day = order.shipped_date if shipped else order.order_date
        at = _order_time(seed, order, day)
        customer = order.customer if order.customer in customers_known else None
        for position, (sku, reason, qty) in enumerate(order.dead, start=1):
            b.add(at, "dead_letter", "dead_letter", order.number,
                  dead_letter=_dead_letter(order, sku, reason, qty, at, order.customer, position))
        if customer is None or not order.lines:
            reason = "unknown_customer" if customer is None else "order_without_lines"
            b.add(at, "dead_letter", "dead_letter", order.number,
                  dead_letter=_dead_letter(order, "-", reason, Decimal(0), at, order.customer))
            continue
        used_customers.add(customer)
        payer = model.payer_of(seed, customer, False, params)
        lines = _invoice_lines(order)
        used_skus.update((l["sku"], None) for l in lines)
        header = {"customer_code": customer, "warehouse_code": WAREHOUSE[0], "currency": CURRENCY,
                  "prices_include_vat": False, "payment_terms_days": payer.terms_days}
        doc = Document("invoice", order.number, day, header, lines, "dataset")
        if draft_only:
            b.add(at, "insert", "invoice", order.number, document=doc)
            counts["drafts_never_posted"] += 1
            continue
        b.document(doc, at, seed)
        issues.extend((at, 0, sku, -qty) for sku, qty, _, _ in order.lines)
        total = sum((model.line_total(l["qty"], l["unit_price"], l["discount_percent"], VAT_RATE_PERCENT, False)
                     for l in lines), Decimal(0))
        _plan_payment(b, order, customer, payer, at, total, days[-1], seed, params, counts)
    return _finish(rows, orders, days, seed, params, b, counts, issues, used_customers, used_skus)


def _finish(rows, orders: list[Order], days: list[dt.date], seed: int, params: ModelParameters,
            b: Builder, counts: Counter, issues: list, used_customers: set[str],
            used_skus: dict[str, None]) -> Plan:
    """Master data, opening stock and receipts (:func:`plan_stock`), summary."""
    product_rows = {f"NW{int(r[0])}": r for r in rows["products"]}
    customers_known = {r[0]: (r[1], r[8]) for r in rows["customers"]}
    lowest: dict[str, Decimal] = {}
    for order in orders:
        for sku, _, price, _ in order.lines:
            if price > 0:
                lowest[sku] = min(lowest.get(sku, price), price)
    products = tuple(
        Product(sku, product_rows[sku][1] if sku in product_rows else "Freight",
                "goods" if sku in product_rows else "service",
                model.unit_cost(seed, sku, lowest.get(sku), params, VAT_RATE_PERCENT)
                if sku in product_rows else None, VAT_RATE_PERCENT)
        for sku in used_skus)
    supplier_by_sku = {sku: f"NWS{int(r[2])}" for sku, r in product_rows.items() if r[2] is not None}
    cost = {p.sku: p.unit_cost for p in products}
    goods = {p.sku for p in products if p.kind == "goods"}
    opening = plan_stock(b, [i for i in issues if i[2] in goods], cost, days, seed, params,
                         supplier=lambda sku: supplier_by_sku.get(sku, "NWS0"),
                         warehouse=WAREHOUSE[0], currency=CURRENCY, vat_rate=VAT_RATE_PERCENT)
    steps = tuple(sorted(b.steps, key=lambda s: (s.at, s.seq)))
    customers = tuple(Customer(c, customers_known[c][0], model.payer_of(seed, c, False, params).terms_days,
                               customers_known[c][1], model.payer_of(seed, c, False, params).kind)
                      for c in sorted(used_customers))
    suppliers = tuple((f"NWS{int(r[0])}", r[1]) for r in rows["suppliers"])
    summary = _counts(steps)
    summary.update(sorted(counts.items()))
    return Plan(DATASET, seed, tuple(days), customers, products, suppliers, opening, steps, summary,
                branch=BRANCH, warehouse=WAREHOUSE, currency=CURRENCY)


def _plan_payment(b: Builder, order: Order, customer: str, payer: model.Payer, at: dt.datetime,
                  total: Decimal, last_day: dt.date, seed: int, params: ModelParameters,
                  counts: Counter) -> None:
    pay = model.payment_for(seed, order.number, payer, at, total, params)
    if pay is None:
        counts["invoices_never_paid"] += 1
        return
    if pay.at.date() > last_day:
        counts["payments_after_slice"] += 1
        return
    header = {"customer_code": customer, "method": pay.method, "currency": CURRENCY, "amount": pay.amount}
    allocation = ({"line_no": 1, "invoice_number": order.number, "amount": pay.amount},)
    b.document(Document("payment", f"PAY-{order.number}", pay.at.date(), header, allocation, "generated"),
               pay.at, seed, not_before=at)


def _counts(steps) -> dict[str, Any]:
    inserted = [s.document for s in steps if s.action == "insert"]
    posted = {(s.kind, s.number) for s in steps if s.action == "post"}
    lines: Counter = Counter()
    for d in inserted:
        lines[d.kind] += len(d.lines)
    reasons = Counter(s.dead_letter.reason for s in steps if s.action == "dead_letter")
    from_dataset = Counter(d.kind for d in inserted if d.origin == "dataset" and (d.kind, d.number) in posted)
    return {
        "documents": dict(sorted(Counter(d.kind for d in inserted).items())),
        "documents_from_dataset": dict(sorted(from_dataset.items())),
        "documents_from_dataset_total": sum(from_dataset.values()),
        "duplicates_cancelled": 0,
        "lines": dict(sorted(lines.items())),
        "dead_letters": dict(sorted(reasons.items())),
        "dead_letters_total": sum(reasons.values()),
    }
