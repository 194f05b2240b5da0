"""Pure assembly of the reports of issue 8 from rows read out of the accounting store.

Every function takes plain rows (tuples of ``str`` / ``Decimal`` / ``date`` as the store returns
them) and returns the report's JSON contract: amounts as decimal strings (:func:`amount_text`),
dates as ISO strings. Nothing here reads a database, so the shapes are tested without one.
Amounts are in the ledger's functional currency; nothing is rounded (sums of NUMERIC are exact).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any, Iterable, Sequence

from salesledger.ledger.receivables import BUCKETS, bucket

ZERO = Decimal("0")
CENT = Decimal("0.01")
#: Ageing buckets in report order (golden README: days past due on the as-of date).
BUCKET_NAMES: tuple[str, ...] = tuple(name for _, name in BUCKETS) + ("121+",)
#: Dimensions a P&L may be grouped by (``--by day,branch,sku``).
PNL_DIMENSIONS = ("day", "branch", "sku")
PNL_MEASURES = ("revenue", "returns", "discounts", "cogs", "gross_margin")


def amount_text(value: Decimal | None) -> str:
    """A money amount as a decimal string with at least two decimals (``Decimal("59")`` ->
    ``"59.00"``, ``Decimal("1.2345")`` -> ``"1.2345"``); never goes through float.

    Raises ``TypeError`` for anything but a ``Decimal`` (or None, read as zero).
    """
    value = ZERO if value is None else value
    if not isinstance(value, Decimal):
        raise TypeError(f"amounts are Decimal, got {type(value).__name__}")
    if value.as_tuple().exponent > -2:  # type: ignore[operator]
        value = value.quantize(CENT)
    return format(value, "f")


def qty_text(value: Decimal | None) -> str:
    """A quantity as a plain decimal string without trailing zeros (``22.000`` -> ``"22"``)."""
    value = ZERO if value is None else value
    if not isinstance(value, Decimal):
        raise TypeError(f"quantities are Decimal, got {type(value).__name__}")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


# --------------------------------------------------------------------------- trial balance


def trial_balance(rows: Iterable[tuple[str, str | None, Decimal, Decimal]], *, as_of: dt.date,
                  currency: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    """``{"as_of", "currency", "accounts": [{"account", "name", "debit", "credit", "balance"}],
    "total_debit", "total_credit"}`` from ``(account, name, debit turnover, credit turnover)``
    rows; balance = debit − credit (positive: a debit balance). The name falls back to the
    chart's (``names``); accounts are ordered by code."""
    names = names or {}
    accounts = []
    total_debit = total_credit = ZERO
    for account, name, debit, credit in sorted(rows, key=lambda r: r[0]):
        total_debit += debit
        total_credit += credit
        accounts.append({"account": account, "name": name or names.get(account, ""),
                         "debit": amount_text(debit), "credit": amount_text(credit),
                         "balance": amount_text(debit - credit)})
    return {"as_of": as_of.isoformat(), "currency": currency, "accounts": accounts,
            "total_debit": amount_text(total_debit), "total_credit": amount_text(total_credit)}


# --------------------------------------------------------------------------- AR ageing


def ar_aging(items: Iterable[tuple[str, str, dt.date | None, dt.date, Decimal]],
             advances: Iterable[tuple[str, Decimal]], *, as_of: dt.date) -> dict[str, Any]:
    """AR ageing on ``as_of`` from open items ``(customer, document, due date, document's first
    accounting date, open amount)`` and advances ``(customer, unused amount)``.

    ``days_past_due = as_of − due`` (negative while not yet due; an item without a due date is
    due on its first accounting date); the bucket is :func:`salesledger.ledger.receivables.
    bucket`. Items with a zero open amount are left out. ``total`` = Σ open items (= the
    receivable account's balance); advances are reported apart (= the advances account).
    """
    per_customer: dict[str, dict[str, Any]] = {}
    buckets = {name: ZERO for name in BUCKET_NAMES}
    total = total_advances = ZERO

    def customer(code: str) -> dict[str, Any]:
        return per_customer.setdefault(code, {"customer": code, "documents": [], "total": ZERO,
                                              "advances": ZERO})

    for code, document, due, first_day, open_amount in items:
        if open_amount == 0:
            continue
        due = due or first_day
        days = (as_of - due).days
        name = bucket(days)
        entry = customer(code)
        entry["documents"].append({"document": document, "due": due.isoformat(),
                                   "open": open_amount, "days_past_due": days, "bucket": name})
        entry["total"] += open_amount
        buckets[name] += open_amount
        total += open_amount
    for code, amount in advances:
        if amount == 0:
            continue
        customer(code)["advances"] += amount
        total_advances += amount
    customers = []
    for code in sorted(per_customer):
        entry = per_customer[code]
        docs = sorted(entry["documents"], key=lambda d: (d["due"], d["document"]))
        customers.append({"customer": code,
                          "documents": [{**d, "open": amount_text(d["open"])} for d in docs],
                          "total": amount_text(entry["total"]),
                          "advances": amount_text(entry["advances"])})
    return {"as_of": as_of.isoformat(), "customers": customers,
            "buckets": {name: amount_text(buckets[name]) for name in BUCKET_NAMES},
            "total": amount_text(total), "advances": amount_text(total_advances)}


# --------------------------------------------------------------------------- stock


def stock(rows: Iterable[tuple[str, str, Decimal, Decimal]]) -> list[dict[str, str]]:
    """``[{"sku", "warehouse", "qty", "value"}]`` from ``(sku, warehouse, Σ quantity, Σ value)``
    rows, ordered by SKU and warehouse; positions with zero quantity and value are left out.
    Σ value equals the inventory account's balance."""
    return [{"sku": sku, "warehouse": warehouse, "qty": qty_text(qty), "value": amount_text(value)}
            for sku, warehouse, qty, value in sorted(rows, key=lambda r: (r[0], r[1]))
            if qty != 0 or value != 0]


# --------------------------------------------------------------------------- P&L


def parse_dimensions(text: str) -> tuple[str, ...]:
    """``"day,branch,sku"`` -> the P&L grouping, in the canonical order day, branch, sku.

    Raises ``ValueError`` on an unknown or empty dimension list."""
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(wanted) - set(PNL_DIMENSIONS))
    if unknown or not wanted:
        raise ValueError(f"--by takes a comma list of {', '.join(PNL_DIMENSIONS)}; got {text!r}")
    return tuple(d for d in PNL_DIMENSIONS if d in wanted)


def pnl(rows: Iterable[tuple[dt.date | None, str | None, str | None, Decimal, Decimal, Decimal,
                             Decimal]], *, date_from: dt.date, date_to: dt.date,
        by: Sequence[str]) -> dict[str, Any]:
    """``{"from", "to", "rows": [{"day", "branch", "sku", "revenue", "returns", "discounts",
    "cogs", "gross_margin"}], "totals": {...}}`` from ``(day, branch, sku, revenue, returns,
    discounts, cogs)`` rows (already summed per group; a dimension not in ``by`` is None).

    gross_margin = revenue − returns − discounts − cogs. Revenue is net of VAT; returns and
    discounts are positive when they reduce revenue; cogs is net of goods that came back.
    Rows with all measures zero are left out; ordered by the grouped dimensions.
    """
    grouped: dict[tuple, list[Decimal]] = defaultdict(lambda: [ZERO] * 4)
    for day, branch, sku, *measures in rows:
        key = (day if "day" in by else None, branch if "branch" in by else None,
               sku if "sku" in by else None)
        sums = grouped[key]
        for i, value in enumerate(measures):
            sums[i] += value or ZERO
    totals = [ZERO] * 4
    out = []
    for (day, branch, sku), sums in sorted(grouped.items(), key=lambda kv: tuple(
            "" if v is None else str(v) for v in kv[0])):
        if not any(sums):
            continue
        totals = [t + s for t, s in zip(totals, sums)]
        out.append({"day": _day(day), "branch": branch, "sku": sku, **_measures(sums)})
    return {"from": date_from.isoformat(), "to": date_to.isoformat(), "by": list(by),
            "rows": out, "totals": _measures(totals)}


def _measures(sums: Sequence[Decimal]) -> dict[str, str]:
    revenue, returns, discounts, cogs = sums
    margin = revenue - returns - discounts - cogs
    return {"revenue": amount_text(revenue), "returns": amount_text(returns),
            "discounts": amount_text(discounts), "cogs": amount_text(cogs),
            "gross_margin": amount_text(margin)}


# --------------------------------------------------------------------------- journal


ENTRY_COLUMNS = ("entry_id", "kind", "accounting_date", "document_type", "document_number",
                 "document_version", "document_id", "rule", "reverses", "source_lsn",
                 "source_txid", "source_commit_at")
LINE_COLUMNS = ("entry_id", "line_no", "account", "debit", "credit", "currency", "branch",
                "warehouse", "customer", "sku", "open_item", "advance")


def journal(document: str, entries: Iterable[Sequence[Any]], lines: Iterable[Sequence[Any]],
            *, as_of: dt.date | None, names: dict[str, str] | None = None,
            subledgers: dict[str, list[Sequence[Any]]] | None = None) -> dict[str, Any]:
    """The journal of one document: ``{"document", "as_of", "entries": [{"entry_id", "kind",
    "date", "document_type", "version", "rule", "reverses", "source": {"document_id", "lsn",
    "txid", "commit_at"}, "lines": [{"line_no", "account", "name", "debit", "credit", "currency",
    "branch", "warehouse", "customer", "sku", "open_item", "advance"}], "total_debit",
    "total_credit"}]}``. ``entries`` rows follow :data:`ENTRY_COLUMNS`, ``lines`` rows
    :data:`LINE_COLUMNS`. The source trace is where the sales database's WAL held the posted
    change (LSN, transaction id, commit time) and the source row's primary key (document_id).
    ``subledgers`` (rows of :func:`salesledger.reports.store.subledger_rows`) adds what the
    document moved in the subledgers: ``"stock": [{"date", "kind", "sku", "warehouse", "qty",
    "value", "version"}]``, ``"receivables"`` and ``"advances"``: ``[{"date", "kind",
    "customer", "document", "amount", "version"}]``."""
    names = names or {}
    by_entry: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in lines:
        line = dict(zip(LINE_COLUMNS, row))
        entry_id = line.pop("entry_id")
        line["name"] = names.get(line["account"], "")
        by_entry[entry_id].append(line)
    out = []
    for row in sorted(entries, key=lambda r: (r[2], r[5], r[1], r[0])):
        e = dict(zip(ENTRY_COLUMNS, row))
        entry_lines = sorted(by_entry.get(e["entry_id"], []), key=lambda l: l["line_no"])
        commit_at = e["source_commit_at"]
        out.append({
            "entry_id": e["entry_id"], "kind": e["kind"], "date": _day(e["accounting_date"]),
            "document_type": e["document_type"], "version": e["document_version"],
            "rule": e["rule"], "reverses": e["reverses"],
            "source": {"document_id": e["document_id"], "lsn": e["source_lsn"],
                       "txid": e["source_txid"],
                       "commit_at": commit_at.isoformat() if commit_at else None},
            "lines": [{**{k: v for k, v in l.items() if k not in ("debit", "credit")},
                       "debit": amount_text(l["debit"]), "credit": amount_text(l["credit"])}
                      for l in entry_lines],
            "total_debit": amount_text(sum((l["debit"] for l in entry_lines), ZERO)),
            "total_credit": amount_text(sum((l["credit"] for l in entry_lines), ZERO)),
        })
    report: dict[str, Any] = {"document": document, "as_of": _day(as_of), "entries": out}
    if subledgers is not None:
        report["stock"] = [
            {"date": _day(d), "kind": k, "sku": sku, "warehouse": w, "qty": qty_text(q),
             "value": amount_text(v), "version": ver}
            for d, k, sku, w, q, v, ver in subledgers.get("stock", [])]
        for name in ("receivables", "advances"):
            report[name] = [
                {"date": _day(d), "kind": k, "customer": c, "document": doc,
                 "amount": amount_text(a), "version": ver}
                for d, k, c, doc, a, ver in subledgers.get(name, [])]
    return report
