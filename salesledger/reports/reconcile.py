"""Reconciliation of the ledger with the sales database (``salesledger reconcile``).

The **source side is computed by SQL over the sales database, never by the posting engine**:
per posted document (schema ``sales``), with the golden README's conventions written in SQL —
a line's gross-before-discount ``round(qty × unit_price, 2)``, the discount ``round(g × pct / 100,
2)``, VAT per line (on top: ``round(net × rate / 100, 2)``; included: ``round(gross × rate / (100 +
rate), 2)``, net = gross − VAT); a return's share of its invoice line ``round(q × line_net /
line_qty, 2)`` (VAT likewise), the return that completes the line taking what is left (returns of
a line ordered by date, id, line); goods quantities count only lines whose product is goods
(``products.kind``; a service moves no stock); amounts of another currency converted with the latest
``currency_rates`` rate (rate / nominal) on or before the document date, each figure rounded.
PostgreSQL's ``round(numeric, 2)`` rounds half away from zero, as ROUND_HALF_UP does.

The ledger side comes from the accounting store: per document, Σ (credit − debit) on the net
sales accounts (revenue, sales_returns, discounts_granted, vat_on_sales) and on vat_payable,
Σ (credit − debit) on receivable + customer_advances for a payment, and the stock ledger's
quantities. Checks per document (``check`` names):

- invoice: ``invoiced_net``, ``invoiced_vat``, ``invoiced_gross``, ``goods_issued`` (quantity);
- return: ``returned_net``, ``returned_vat``, ``goods_returned`` (quantity);
- payment: ``paid``;
- ``exchange_rate`` (source and ledger None): a document in another currency without a rate
  in the sales database on or before its date; its money is not compared.

And the ledger's own invariants (``source`` = the subledger / debit side, ``ledger`` = the
account / credit side): ``balanced`` (per entry: Σ debit vs Σ credit, document = the entry's
document), ``receivable_account`` (per open item: Σ receivable items vs the receivable
account), ``advances_account`` (per customer: Σ advances vs the advances account, credit
balance), ``inventory_account`` (per SKU and warehouse, document = ``"SKU@WAREHOUSE"``: Σ stock
value vs the inventory account). Invariants count what is dated on or before ``date_to``.

Go-live (``salesledger golive --date D``): the ledger starts from the opening balance
``OB-golive-D`` and the engine refuses every document dated on or before D (``before_golive``);
their figures are inside the opening balance. When the store holds that opening balance, source
documents dated on or before D are therefore left out (counted as ``before_golive`` in
``checked``, D reported as ``golive``); what happened after D — payments of opening items,
returns against taken-over invoices — is compared as usual.

Differences carry the document's day, branch (the document's branch, else its warehouse's) and
customer; ``groups`` gives both sides summed per day, branch and customer. Amounts are in the
functional currency, exact ``Decimal``; JSON carries decimal strings.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

import psycopg

from salesledger.reports.accounts import ReportAccounts
from salesledger.reports.assemble import amount_text, qty_text

ZERO = Decimal("0")
#: Checks per document type, in report order; quantities are not money.
CHECKS: dict[str, tuple[str, ...]] = {
    "invoice": ("invoiced_net", "invoiced_vat", "invoiced_gross", "goods_issued"),
    "return": ("returned_net", "returned_vat", "goods_returned"),
    "payment": ("paid",),
}
QUANTITY_CHECKS = frozenset({"goods_issued", "goods_returned"})
METRICS = ("invoiced_net", "invoiced_vat", "invoiced_gross", "returned_net", "returned_vat",
           "paid", "goods_issued", "goods_returned")


@dataclass
class DocFigures:
    """One document's figures on one side: ``doc_type`` (invoice | return | payment),
    ``number``, its ``day``, ``branch``, ``customer`` and ``figures`` (check -> Decimal);
    ``no_rate``: the document is in another currency and the sales database has no rate on
    or before its date, so its money cannot be converted (only quantities are compared)."""

    doc_type: str
    number: str
    day: dt.date | None
    branch: str | None
    customer: str | None
    figures: dict[str, Decimal] = field(default_factory=dict)
    no_rate: bool = False


@dataclass(frozen=True)
class Difference:
    """A check that differs: ``source`` and ``ledger`` values (None: absent on that side);
    ``held``: the reason when the document waits in the store's held queue (e.g.
    ``period_locked``), which explains the difference until it is released."""

    check: str
    day: dt.date | None
    branch: str | None
    customer: str | None
    document: str
    source: Decimal | None
    ledger: Decimal | None
    held: str | None = None

    def as_json(self) -> dict[str, Any]:
        text = qty_text if self.check in QUANTITY_CHECKS else amount_text
        out = {"check": self.check, "day": self.day.isoformat() if self.day else None,
               "branch": self.branch, "customer": self.customer, "document": self.document,
               "source": None if self.source is None else text(self.source),
               "ledger": None if self.ledger is None else text(self.ledger)}
        if self.held:
            out["held"] = self.held
        return out


Key = tuple[str, str]

# --------------------------------------------------------------------------- source (sales DB)

_SOURCE_SQL = """
WITH inv AS (
    SELECT i.invoice_id, i.number, i.date, i.customer_code AS customer,
           coalesce(i.branch_code, w.branch_code) AS branch, i.prices_include_vat AS incl,
           i.currency <> %(fc)s AS foreign_currency,
           CASE WHEN i.currency = %(fc)s THEN NULL ELSE (
               SELECT r.rate / r.nominal FROM sales.currency_rates r
                WHERE r.currency = i.currency AND r.date <= i.date
                ORDER BY r.date DESC LIMIT 1) END AS fx
      FROM sales.invoices i LEFT JOIN sales.warehouses w ON w.code = i.warehouse_code
     WHERE i.status = 'posted'
), line_doc AS (
    SELECT inv.*, l.line_no, l.sku, l.qty, l.vat_rate, coalesce(p.kind, 'goods') AS kind,
           round(l.qty * l.unit_price, 2)
             - round(round(l.qty * l.unit_price, 2) * l.discount_percent / 100, 2) AS d
      FROM inv JOIN sales.invoice_lines l ON l.invoice_id = inv.invoice_id
      LEFT JOIN sales.products p ON p.sku = l.sku
), line_vat AS (
    SELECT line_doc.*,
           CASE WHEN incl THEN round(d * vat_rate / (100 + vat_rate), 2)
                ELSE round(d * vat_rate / 100, 2) END AS vat_doc
      FROM line_doc
), fig AS (
    SELECT number, date, customer, branch, line_no, sku, qty, kind,
           foreign_currency AND fx IS NULL AS no_rate,
           CASE WHEN fx IS NULL THEN (CASE WHEN incl THEN d - vat_doc ELSE d END)
                ELSE round((CASE WHEN incl THEN d - vat_doc ELSE d END) * fx, 2) END AS net,
           CASE WHEN fx IS NULL THEN vat_doc ELSE round(vat_doc * fx, 2) END AS vat
      FROM line_vat
), ret AS (
    SELECT r.return_id, r.number, r.date, r.customer_code AS customer, w.branch_code AS branch,
           r.against_invoice_number AS against, rl.line_no AS rline, rl.qty AS q,
           coalesce(rl.invoice_line_no, (SELECT min(f.line_no) FROM fig f
                                          WHERE f.number = r.against_invoice_number
                                            AND f.sku = rl.sku)) AS inv_line
      FROM sales.returns r JOIN sales.return_lines rl ON rl.return_id = r.return_id
      LEFT JOIN sales.warehouses w ON w.code = r.warehouse_code
     WHERE r.status = 'posted'
), share AS (
    SELECT ret.*, f.qty AS line_qty, f.net AS line_net, f.vat AS line_vat,
           coalesce(f.no_rate, false) AS no_rate, coalesce(f.kind, 'goods') AS line_kind,
           sum(ret.q) OVER w AS cum_q,
           round(ret.q * f.net / nullif(f.qty, 0), 2) AS net_share,
           round(ret.q * f.vat / nullif(f.qty, 0), 2) AS vat_share
      FROM ret LEFT JOIN fig f ON f.number = ret.against AND f.line_no = ret.inv_line
    WINDOW w AS (PARTITION BY ret.against, ret.inv_line
                 ORDER BY ret.date, ret.return_id, ret.rline)
), ret_fig AS (
    SELECT share.*,
           CASE WHEN cum_q = line_qty
                THEN line_net - coalesce(sum(net_share) OVER p, 0) ELSE net_share END AS net,
           CASE WHEN cum_q = line_qty
                THEN line_vat - coalesce(sum(vat_share) OVER p, 0) ELSE vat_share END AS vat
      FROM share
    WINDOW p AS (PARTITION BY against, inv_line ORDER BY date, return_id, rline
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), docs AS (
    SELECT 'invoice' AS doc_type, number, date, customer, branch,
           sum(net) AS net, sum(vat) AS vat,
           coalesce(sum(qty) FILTER (WHERE kind = 'goods'), 0) AS qty, bool_or(no_rate) AS no_rate
      FROM fig GROUP BY number, date, customer, branch
    UNION ALL
    SELECT 'return', number, date, customer, branch,
           coalesce(sum(net), 0), coalesce(sum(vat), 0),
           coalesce(sum(q) FILTER (WHERE line_kind = 'goods'), 0), bool_or(no_rate)
      FROM ret_fig GROUP BY number, date, customer, branch
    UNION ALL
    SELECT 'payment', p.number, p.date, p.customer_code, p.branch_code,
           CASE WHEN p.currency = %(fc)s THEN p.amount ELSE round(p.amount * fx.rate, 2) END,
           0, 0, p.currency <> %(fc)s AND fx.rate IS NULL
      FROM sales.payments p
      LEFT JOIN LATERAL (SELECT r.rate / r.nominal AS rate FROM sales.currency_rates r
                          WHERE r.currency = p.currency AND r.date <= p.date
                          ORDER BY r.date DESC LIMIT 1) fx ON true
     WHERE p.status = 'posted'
)
SELECT doc_type, number, date, customer, branch, net, vat, qty, no_rate FROM docs
 WHERE (%(from)s::date IS NULL OR date >= %(from)s) AND date <= %(to)s
   AND (%(customer)s::text IS NULL OR customer = %(customer)s)
   AND (%(branch)s::text IS NULL OR branch = %(branch)s)
"""


def source_documents(sales: psycopg.Connection, *, date_from: dt.date | None, date_to: dt.date,
                     functional_currency: str = "AZN", customer: str | None = None,
                     branch: str | None = None) -> dict[Key, DocFigures]:
    """The source side: posted invoices, returns and payments of the sales database dated in
    [date_from, date_to] with their figures (see the module doc), by (type, number)."""
    rows = sales.execute(_SOURCE_SQL, {"fc": functional_currency, "from": date_from,
                                       "to": date_to, "customer": customer,
                                       "branch": branch}).fetchall()
    out: dict[Key, DocFigures] = {}
    for doc_type, number, day, cust, br, net, vat, qty, no_rate in rows:
        doc = DocFigures(doc_type, number, day, br, cust, no_rate=bool(no_rate))
        net, vat, qty = net or ZERO, vat or ZERO, qty or ZERO
        if doc_type == "invoice":
            doc.figures = {"invoiced_net": net, "invoiced_vat": vat, "invoiced_gross": net + vat,
                           "goods_issued": qty}
        elif doc_type == "return":
            doc.figures = {"returned_net": net, "returned_vat": vat, "goods_returned": qty}
        else:
            doc.figures = {"paid": net}
        out[(doc_type, number)] = doc
    return out


def warehouse_branches(sales: psycopg.Connection) -> dict[str, str]:
    """Warehouse code -> branch code, from the sales database's master data."""
    return dict(sales.execute("SELECT code, branch_code FROM sales.warehouses").fetchall())


# --------------------------------------------------------------------------- ledger (store)


def ledger_documents(ledger: psycopg.Connection, accounts: ReportAccounts, *,
                     numbers: Iterable[str], date_from: dt.date | None, date_to: dt.date,
                     branches: dict[str, str]) -> dict[Key, DocFigures]:
    """The ledger side per invoice / return / payment: the documents named in ``numbers`` and
    those with an entry dated in [date_from, date_to] (all their entries, whatever the date)."""
    params = {"numbers": sorted(set(numbers)), "from": date_from, "to": date_to,
              "net": list(accounts.net_sales), "vat": list(accounts.vat_payable),
              "settle": list(accounts.receivable + accounts.customer_advances)}
    rows = ledger.execute(
        """WITH picked AS (
               SELECT DISTINCT document_type, document_number FROM journal_entries
                WHERE document_type IN ('invoice', 'return', 'payment')
                  AND (document_number = ANY(%(numbers)s)
                       OR ((%(from)s::date IS NULL OR accounting_date >= %(from)s)
                           AND accounting_date <= %(to)s)))
           SELECT e.document_type, e.document_number, min(e.accounting_date), max(l.branch),
                  max(l.warehouse), max(l.customer),
                  coalesce(sum(l.credit - l.debit) FILTER (WHERE l.account = ANY(%(net)s)), 0),
                  coalesce(sum(l.credit - l.debit) FILTER (WHERE l.account = ANY(%(vat)s)), 0),
                  coalesce(sum(l.credit - l.debit) FILTER (WHERE l.account = ANY(%(settle)s)), 0)
             FROM picked p
             JOIN journal_entries e USING (document_type, document_number)
             JOIN journal_lines l USING (entry_id)
            GROUP BY 1, 2""", params).fetchall()
    quantities = dict(((t, n), q) for t, n, q in ledger.execute(
        """SELECT by_type, by_number, sum(quantity) FROM stock_ledger
            WHERE by_type IN ('invoice', 'return') AND by_number = ANY(%s)
            GROUP BY 1, 2""", ([r[1] for r in rows],)).fetchall())
    out: dict[Key, DocFigures] = {}
    for doc_type, number, day, br, warehouse, cust, net, vat, settled in rows:
        doc = DocFigures(doc_type, number, day, br or branches.get(warehouse or ""), cust)
        qty = quantities.get((doc_type, number), ZERO)
        if doc_type == "invoice":
            doc.figures = {"invoiced_net": net, "invoiced_vat": vat, "invoiced_gross": net + vat,
                           "goods_issued": -qty}
        elif doc_type == "return":
            doc.figures = {"returned_net": -net, "returned_vat": -vat, "goods_returned": qty}
        else:
            doc.figures = {"paid": settled}
        out[(doc_type, number)] = doc
    return out


_GOLIVE_SQL = r"""
SELECT max(accounting_date) FROM journal_entries
 WHERE document_type = 'opening_balance' AND document_number ~ '^OB-golive-\d{4}-\d{2}-\d{2}$'"""


def golive_date(ledger: psycopg.Connection) -> dt.date | None:
    """The go-live day D of the ledger: the date of its ``OB-golive-D`` opening balance entry
    (written by ``salesledger golive``), or None when the ledger did not start that way."""
    return ledger.execute(_GOLIVE_SQL).fetchone()[0]


def held_documents(ledger: psycopg.Connection) -> dict[Key, str]:
    """Documents waiting in the store's held queue: (type, number) -> reason."""
    out: dict[Key, str] = {}
    for key, reason in ledger.execute("SELECT document_key, reason FROM held_queue").fetchall():
        doc_type, _, number = key.partition(":")
        out[(doc_type, number)] = reason
    return out


_UNBALANCED_SQL = """
SELECT e.entry_id, e.document_number, e.accounting_date,
       coalesce(sum(l.debit), 0), coalesce(sum(l.credit), 0)
  FROM journal_entries e LEFT JOIN journal_lines l USING (entry_id)
 WHERE e.accounting_date <= %(as_of)s
 GROUP BY e.entry_id, e.document_number, e.accounting_date, l.currency
HAVING coalesce(sum(l.debit), 0) <> coalesce(sum(l.credit), 0) OR count(l.entry_id) = 0"""

# Per open item: Σ receivable items (subledger) vs the receivable account's lines.
_OPEN_ITEMS_SQL = """
WITH acc AS (
    SELECT coalesce(l.open_item, '') AS doc, max(l.customer) AS customer,
           sum(l.debit - l.credit) AS amount
      FROM journal_lines l JOIN journal_entries e USING (entry_id)
     WHERE l.account = ANY(%(rec)s) AND e.accounting_date <= %(as_of)s
     GROUP BY 1),
sub AS (
    SELECT document_number AS doc, max(customer) AS customer, sum(amount) AS amount,
           min(accounting_date) AS day
      FROM receivable_items WHERE accounting_date <= %(as_of)s GROUP BY 1)
SELECT coalesce(sub.doc, acc.doc), coalesce(sub.customer, acc.customer), sub.day,
       coalesce(sub.amount, 0), coalesce(acc.amount, 0)
  FROM acc FULL JOIN sub ON acc.doc = sub.doc"""

# Per customer: Σ advances (subledger) vs the advances account (credit balance).
_ADVANCES_SQL = """
WITH acc AS (
    SELECT coalesce(l.customer, '') AS customer, sum(l.credit - l.debit) AS amount
      FROM journal_lines l JOIN journal_entries e USING (entry_id)
     WHERE l.account = ANY(%(adv)s) AND e.accounting_date <= %(as_of)s GROUP BY 1),
sub AS (
    SELECT customer, sum(amount) AS amount FROM advances
     WHERE accounting_date <= %(as_of)s GROUP BY 1)
SELECT coalesce(sub.customer, acc.customer), coalesce(sub.amount, 0), coalesce(acc.amount, 0)
  FROM acc FULL JOIN sub ON acc.customer = sub.customer"""

# Per SKU and warehouse: Σ stock value (stock ledger) vs the inventory account.
_STOCK_SQL = """
WITH acc AS (
    SELECT coalesce(l.sku, '') AS sku, coalesce(l.warehouse, '') AS warehouse,
           sum(l.debit - l.credit) AS amount
      FROM journal_lines l JOIN journal_entries e USING (entry_id)
     WHERE l.account = ANY(%(inv)s) AND e.accounting_date <= %(as_of)s GROUP BY 1, 2),
sub AS (
    SELECT sku, warehouse, sum(value) AS amount FROM stock_ledger
     WHERE accounting_date <= %(as_of)s GROUP BY 1, 2)
SELECT coalesce(sub.sku, acc.sku), coalesce(sub.warehouse, acc.warehouse),
       coalesce(sub.amount, 0), coalesce(acc.amount, 0)
  FROM acc FULL JOIN sub ON acc.sku = sub.sku AND acc.warehouse = sub.warehouse"""


def invariant_differences(ledger: psycopg.Connection, accounts: ReportAccounts, *,
                          as_of: dt.date) -> tuple[list[Difference], dict[str, int]]:
    """The ledger's own invariants on ``as_of`` (module doc) and how many items were checked:
    ``{"entries", "open_items", "advance_customers", "stock_positions"}``."""
    p = {"as_of": as_of, "rec": list(accounts.receivable),
         "adv": list(accounts.customer_advances), "inv": list(accounts.inventory)}
    entries = ledger.execute(
        "SELECT count(*) FROM journal_entries WHERE accounting_date <= %(as_of)s", p).fetchone()[0]
    diffs = [Difference("balanced", day, None, None, number, debit, credit)
             for _, number, day, debit, credit in ledger.execute(_UNBALANCED_SQL, p).fetchall()]
    items = ledger.execute(_OPEN_ITEMS_SQL, p).fetchall()
    diffs += [Difference("receivable_account", day, None, customer, doc, sub, acc)
              for doc, customer, day, sub, acc in items if sub != acc]
    advances = ledger.execute(_ADVANCES_SQL, p).fetchall()
    diffs += [Difference("advances_account", None, None, customer, "", sub, acc)
              for customer, sub, acc in advances if sub != acc]
    stock = ledger.execute(_STOCK_SQL, p).fetchall()
    diffs += [Difference("inventory_account", None, None, None, f"{sku}@{warehouse}", sub, acc)
              for sku, warehouse, sub, acc in stock if sub != acc]
    checked = {"entries": entries, "open_items": len(items), "advance_customers": len(advances),
               "stock_positions": len(stock)}
    return diffs, checked


# --------------------------------------------------------------------------- comparison (pure)


def compare_documents(source: dict[Key, DocFigures], ledger: dict[Key, DocFigures],
                      held: dict[Key, str] | None = None) -> list[Difference]:
    """Every check of every document that differs between the two sides (a document missing
    on one side counts as zeros there; a ledger-only document whose figures are all zero — a
    cancelled document fully reversed — differs in nothing). ``held``: reasons of documents
    in the held queue, carried on their differences."""
    diffs = []
    for key in sorted(set(source) | set(ledger)):
        src, led = source.get(key), ledger.get(key)
        where = src or led
        assert where is not None
        checks = CHECKS[key[0]]
        if src is not None and src.no_rate:
            diffs.append(Difference("exchange_rate", where.day, where.branch, where.customer,
                                    key[1], None, None, held.get(key) if held else None))
            checks = tuple(c for c in checks if c in QUANTITY_CHECKS)
        for check in checks:
            s = src.figures.get(check, ZERO) if src else ZERO
            l = led.figures.get(check, ZERO) if led else ZERO
            if s != l:
                diffs.append(Difference(check, where.day, where.branch, where.customer, key[1],
                                        s if src else None, l if led else None,
                                        held.get(key) if held else None))
    return diffs


def group_totals(source: dict[Key, DocFigures], ledger: dict[Key, DocFigures]
                 ) -> list[dict[str, Any]]:
    """Both sides summed per (day, branch, customer) of the document (the source's, else the
    ledger's): ``[{"day", "branch", "customer", "source": {metric: str}, "ledger": {...}}]``."""
    sums: dict[tuple, dict[str, dict[str, Decimal]]] = defaultdict(
        lambda: {"source": defaultdict(lambda: ZERO), "ledger": defaultdict(lambda: ZERO)})
    for key in set(source) | set(ledger):
        where = source.get(key) or ledger[key]
        group = sums[(where.day, where.branch or "", where.customer or "")]
        for side, docs in (("source", source), ("ledger", ledger)):
            if key in docs:
                for metric, value in docs[key].figures.items():
                    group[side][metric] += value
    out = []
    for (day, branch, customer), sides in sorted(sums.items(), key=lambda kv: (
            kv[0][0] or dt.date.min, kv[0][1], kv[0][2])):
        out.append({"day": day.isoformat() if day else None, "branch": branch or None,
                    "customer": customer or None,
                    **{side: {m: (qty_text if m in QUANTITY_CHECKS else amount_text)(
                        values.get(m, ZERO)) for m in METRICS}
                       for side, values in sides.items()}})
    return out


def reconcile(sales: psycopg.Connection, ledger: psycopg.Connection, accounts: ReportAccounts,
              *, date_from: dt.date | None, date_to: dt.date, functional_currency: str = "AZN",
              customer: str | None = None, branch: str | None = None) -> dict[str, Any]:
    """``{"from", "to", "golive", "checked": {counts}, "differences": [{"check", "day",
    "branch", "customer", "document", "source", "ledger"}], "groups": [...]}``; empty
    differences when the ledger matches the sales database and its own invariants hold.
    ``golive``: the ledger's go-live day or None; source documents dated on or before it are
    not compared (``checked["before_golive"]``, module doc)."""
    branches = warehouse_branches(sales)
    source = source_documents(sales, date_from=date_from, date_to=date_to,
                              functional_currency=functional_currency, customer=customer,
                              branch=branch)
    golive = golive_date(ledger)
    before_golive = 0
    if golive is not None:
        kept = {k: d for k, d in source.items() if d.day is None or d.day > golive}
        before_golive, source = len(source) - len(kept), kept
    ledger_docs = ledger_documents(ledger, accounts, numbers=[k[1] for k in source],
                                   date_from=date_from, date_to=date_to, branches=branches)
    ledger_docs = {k: d for k, d in ledger_docs.items() if k in source or (
        (customer is None or d.customer == customer) and (branch is None or d.branch == branch))}
    diffs = compare_documents(source, ledger_docs, held_documents(ledger))
    invariants, counts = invariant_differences(ledger, accounts, as_of=date_to)
    per_type = defaultdict(int)
    for doc_type, _ in set(source) | set(ledger_docs):
        per_type[doc_type] += 1
    groups = group_totals(source, ledger_docs)
    checked = {"invoices": per_type["invoice"], "returns": per_type["return"],
               "payments": per_type["payment"], "groups": len(groups), **counts}
    if golive is not None:
        checked["before_golive"] = before_golive
    return {"from": date_from.isoformat() if date_from else None, "to": date_to.isoformat(),
            "golive": golive.isoformat() if golive else None, "checked": checked,
            "differences": [d.as_json() for d in diffs + invariants], "groups": groups}
