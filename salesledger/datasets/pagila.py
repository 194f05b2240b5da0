"""Pagila (``devrimgunduz/pagila``, PostgreSQL License; fictional DVD rental): rentals and their
real payments as a slice plan.

Input: the data-only dump ``pagila-data.sql`` given by path; its ``COPY public.<table> (…) FROM
stdin;`` blocks are read directly (tab-separated, ``\\N`` = NULL, ended by ``\\.``). ``payment``
is partitioned by month in the original schema: every ``payment_p…`` block is read.

Assumptions (each one also in the README section "Data"):

1. Currency USD, prices net, VAT 0% (no tax in the data). Times are ``timestamptz``; a
   document's date is its UTC date, its time the UTC time.
2. A rental is a sale of a **service**: invoice ``R<rental_id>`` dated at the rental, to customer
   ``PG<customer_id>``, from the store of the rented copy (branch ``PG-S<store>``, warehouse
   ``PG-W<store>``), terms 0 days; line 1 is the film rental (SKU ``FILM<film_id>``, qty 1, the
   film's ``rental_rate``), line 2 a ``LATEFEE`` service of what the rental's payments exceed the
   rate by (late fees), when positive. There is no stock, so no costs, opening stock or receipts;
   the tape coming back (``return_date``) is not a sales return.
3. Every real payment with a positive amount is a payment ``P<payment_id>`` (method ``cash``, at
   the counter) at its own time, allocated to its rental's invoice when that invoice is in the
   slice and belongs to the same customer; otherwise unallocated (the ledger's payment rule then
   settles open documents or keeps an advance). Pagila's payments mostly precede their rentals,
   so most become advances offset by the later invoice.
4. Dead letters: a payment of amount 0 (``zero_amount_payment``; the ledger requires a positive
   amount). No seeded model is needed: Pagila has the payments.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from salesledger.datasets import online_retail as orr
from salesledger.datasets.plan import Builder, Customer, Document, Plan, Product

DATASET = "pagila"
CURRENCY = "USD"
VAT_RATE_PERCENT = Decimal(0)
LATE_FEE_SKU = "LATEFEE"
TABLES = ("country", "city", "address", "customer", "film", "inventory", "rental", "payment")
_COPY = re.compile(r"^COPY public\.(\w+) \((.*)\) FROM stdin;$")


class PagilaError(ValueError):
    """The dump cannot be read (a table missing or a row of the wrong width)."""


def read_dump(path: Path | str) -> dict[str, list[dict[str, str | None]]]:
    """Rows of :data:`TABLES` as column dicts (``payment_p…`` partitions merged into ``payment``).

    Raises:
        PagilaError: a needed table is missing or a row has the wrong number of fields.
    """
    rows: dict[str, list] = {t: [] for t in TABLES}
    table: str | None = None
    columns: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            if table is None:
                match = _COPY.match(line)
                if match:
                    name = "payment" if match.group(1).startswith("payment_p") else match.group(1)
                    table, columns = (name if name in rows else "", match.group(2).split(", "))
                continue
            if line == "\\.":
                table = None
                continue
            if table:
                fields = line.split("\t")
                if len(fields) != len(columns):
                    raise PagilaError(f"line {line_no}: {len(fields)} fields, expected {len(columns)}")
                rows[table].append({c: (None if v == "\\N" else v) for c, v in zip(columns, fields)})
    empty = [t for t, r in rows.items() if not r]
    if empty:
        raise PagilaError(f"not the Pagila data dump: no rows for {', '.join(empty)}")
    return rows


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc).replace(tzinfo=None)


def activity_days(rows: dict[str, list]) -> list[dt.date]:
    """Distinct UTC dates with a rental or a payment, ascending."""
    return sorted({_utc(r["rental_date"]).date() for r in rows["rental"]}
                  | {_utc(p["payment_date"]).date() for p in rows["payment"]})


def plan_pagila(rows: dict[str, list], days: list[dt.date], seed: int) -> Plan:
    """The :class:`~salesledger.datasets.plan.Plan` of the rentals and payments dated on ``days``.
    ``seed`` only names the plan (Pagila needs no generated data)."""
    wanted = set(days)
    film = {r["film_id"]: r for r in rows["film"]}
    inventory = {r["inventory_id"]: r for r in rows["inventory"]}
    customers = {r["customer_id"]: r for r in rows["customer"]}
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for p in rows["payment"]:
        paid[p["rental_id"]] += Decimal(p["amount"])
    b, counts = Builder(), Counter()
    rentals_in = {}
    for r in rows["rental"]:
        at = _utc(r["rental_date"])
        if at.date() in wanted:
            rentals_in[r["rental_id"]] = (r, at)
    used_customers: set[str] = set()
    skus: dict[str, str] = {}
    stores: set[str] = set()
    for rental_id, (r, at) in sorted(rentals_in.items(), key=lambda kv: (kv[1][1], int(kv[0]))):
        copy = inventory[r["inventory_id"]]
        title, rate = film[copy["film_id"]]["title"], Decimal(film[copy["film_id"]]["rental_rate"])
        sku = f"FILM{copy['film_id']}"
        skus[sku] = title
        lines = [{"line_no": 1, "sku": sku, "description": f"Rental: {title}", "qty": Decimal(1),
                  "unit_price": rate, "discount_percent": Decimal(0), "vat_rate": VAT_RATE_PERCENT}]
        fee = paid[rental_id] - rate
        if fee > 0:
            skus[LATE_FEE_SKU] = "Late fee"
            lines.append({"line_no": 2, "sku": LATE_FEE_SKU, "description": "Late fee", "qty": Decimal(1),
                          "unit_price": fee, "discount_percent": Decimal(0), "vat_rate": VAT_RATE_PERCENT})
        store = copy["store_id"]
        stores.add(store)
        customer = f"PG{r['customer_id']}"
        used_customers.add(r["customer_id"])
        header = {"customer_code": customer, "warehouse_code": f"PG-W{store}", "branch_code": f"PG-S{store}",
                  "currency": CURRENCY, "prices_include_vat": False, "payment_terms_days": 0}
        b.document(Document("invoice", f"R{rental_id}", at.date(), header, tuple(lines), "dataset"), at, seed)
    for p in sorted(rows["payment"], key=lambda p: (_utc(p["payment_date"]), int(p["payment_id"]))):
        at = _utc(p["payment_date"])
        if at.date() not in wanted:
            continue
        amount = Decimal(p["amount"])
        number = f"P{p['payment_id']}"
        if amount <= 0:
            line = orr.SourceLine(int(p["payment_id"]), number, "-", "", Decimal(0), at, amount,
                                  f"PG{p['customer_id']}", "")
            b.add(at, "dead_letter", "dead_letter", number, dead_letter=orr.DeadLetter(
                line, "zero_amount_payment", f"{number}: amount {amount}"))
            continue
        used_customers.add(p["customer_id"])
        rental = rentals_in.get(p["rental_id"])
        allocations: tuple[dict[str, Any], ...] = ()
        if rental is not None and rental[0]["customer_id"] == p["customer_id"]:
            allocations = ({"line_no": 1, "invoice_number": f"R{p['rental_id']}", "amount": amount},)
        else:
            counts["payments_unallocated"] += 1
        store = customers[p["customer_id"]]["store_id"]
        stores.add(store)
        header = {"customer_code": f"PG{p['customer_id']}", "branch_code": f"PG-S{store}", "method": "cash",
                  "currency": CURRENCY, "amount": amount}
        not_before = rental[1] if allocations and rental[1] <= at else None
        b.document(Document("payment", number, at.date(), header, allocations, "dataset"), at, seed,
                   not_before=not_before)
    return _plan(rows, days, seed, b, counts, used_customers, skus, stores, len(rentals_in))


def _country_of(rows: dict[str, list]) -> dict[str, str]:
    country = {r["country_id"]: r["country"] for r in rows["country"]}
    city = {r["city_id"]: country.get(r["country_id"]) for r in rows["city"]}
    return {r["address_id"]: city.get(r["city_id"]) for r in rows["address"]}


def _plan(rows, days, seed, b: Builder, counts: Counter, used_customers, skus, stores, rentals) -> Plan:
    by_address = _country_of(rows)
    known = {r["customer_id"]: r for r in rows["customer"]}
    customers = tuple(
        Customer(f"PG{c}", f"{known[c]['first_name']} {known[c]['last_name']}".title(), 0,
                 by_address.get(known[c]["address_id"]), "on_time")
        for c in sorted(used_customers, key=int))
    products = tuple(Product(sku, name, "service", None, VAT_RATE_PERCENT) for sku, name in skus.items())
    steps = tuple(sorted(b.steps, key=lambda s: (s.at, s.seq)))
    inserted = [s.document for s in steps if s.action == "insert"]
    reasons = Counter(s.dead_letter.reason for s in steps if s.action == "dead_letter")
    by_kind = dict(sorted(Counter(d.kind for d in inserted).items()))
    lines: Counter = Counter()
    for d in inserted:
        lines[d.kind] += len(d.lines)
    summary = {
        "documents": by_kind, "documents_from_dataset": by_kind,
        "documents_from_dataset_total": len(inserted), "duplicates_cancelled": 0,
        "lines": dict(sorted(lines.items())), "dead_letters": dict(sorted(reasons.items())),
        "dead_letters_total": sum(reasons.values()),
        "source_documents": rentals + by_kind.get("payment", 0) + sum(reasons.values()),
        "source_lines": rentals + by_kind.get("payment", 0) + sum(reasons.values()),
        **dict(sorted(counts.items())),
    }
    store = sorted(stores, key=int)[0] if stores else "1"
    return Plan(DATASET, seed, tuple(days), customers, products, (), (), steps, summary,
                branch=(f"PG-S{store}", f"Pagila store {store}"),
                warehouse=(f"PG-W{store}", f"Pagila store {store} shelves"), currency=CURRENCY,
                extra_branches=tuple((f"PG-S{s}", f"Pagila store {s}") for s in sorted(stores, key=int)),
                extra_warehouses=tuple((f"PG-W{s}", f"Pagila store {s} shelves", f"PG-S{s}")
                                       for s in sorted(stores, key=int)))
