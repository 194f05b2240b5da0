"""Read-only SQL over the accounting store for the reports (``salesledger report ...``).

Every function takes a psycopg connection (the reporting role; :func:`connect` opens one, read
only, with ``search_path`` set to the store's schema) and returns plain rows for
:mod:`salesledger.reports.assemble`. ``as_of`` keeps only rows whose accounting date is on or
before it (golden README: "Reports as_of a date count only what has an accounting date on or
before it"). Filters are exact matches on the journal lines' dimensions (branch, customer, SKU,
account, warehouse); ``None`` means no filter. SQL is composed with parameters only.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from salesledger.reports.accounts import ReportAccounts
from salesledger.reports.assemble import ENTRY_COLUMNS, LINE_COLUMNS


def connect(conninfo: dict[str, Any], schema: str) -> psycopg.Connection:
    """A read-only autocommit connection with ``search_path`` = ``schema``.

    Raises ``psycopg.OperationalError`` when the store cannot be reached."""
    conn = psycopg.connect(**conninfo, autocommit=True, connect_timeout=10)
    conn.read_only = True
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn


def has_ledger(conn: psycopg.Connection) -> bool:
    """True when the schema on the search path holds the ledger tables."""
    return conn.execute("SELECT to_regclass('journal_lines') IS NOT NULL").fetchone()[0]


def ledger_currency(conn: psycopg.Connection, default: str = "AZN") -> str:
    """The ledger's functional currency: the currency of its journal lines (the posting engine
    writes every line in the functional currency); ``default`` for an empty ledger.

    Raises ``ValueError`` when the lines carry more than one currency (give ``--currency``)."""
    found = [r[0] for r in conn.execute(
        "SELECT DISTINCT currency FROM journal_lines ORDER BY 1 LIMIT 2").fetchall()]
    if len(found) > 1:
        raise ValueError(f"the ledger holds lines in several currencies ({', '.join(found)}, "
                         "...): choose one with --currency")
    return found[0] if found else default


def trial_balance_rows(conn: psycopg.Connection, *, as_of: dt.date, currency: str,
                       branch: str | None = None, customer: str | None = None,
                       sku: str | None = None, account: str | None = None
                       ) -> list[tuple[str, str | None, Decimal, Decimal]]:
    """``(account, stored name, Σ debit, Σ credit)`` of lines in ``currency`` dated <= as_of."""
    return conn.execute(
        """SELECT l.account, max(a.name), sum(l.debit), sum(l.credit)
             FROM journal_lines l
             JOIN journal_entries e USING (entry_id)
             LEFT JOIN accounts a ON a.code = l.account
            WHERE e.accounting_date <= %(as_of)s AND l.currency = %(currency)s
              AND (%(branch)s::text IS NULL OR l.branch = %(branch)s)
              AND (%(customer)s::text IS NULL OR l.customer = %(customer)s)
              AND (%(sku)s::text IS NULL OR l.sku = %(sku)s)
              AND (%(account)s::text IS NULL OR l.account = %(account)s)
            GROUP BY l.account ORDER BY l.account""",
        {"as_of": as_of, "currency": currency, "branch": branch, "customer": customer,
         "sku": sku, "account": account}).fetchall()


def open_item_rows(conn: psycopg.Connection, *, as_of: dt.date, customer: str | None = None,
                   branch: str | None = None
                   ) -> list[tuple[str, str, dt.date | None, dt.date, Decimal]]:
    """``(customer, document, due date, first accounting date, Σ amount)`` per open item from
    the receivable items dated <= as_of (amount > 0 raises, < 0 settles). ``branch``: only
    open items whose journal lines carry that branch (the invoice's branch)."""
    return conn.execute(
        """SELECT customer, document_number, max(due_date), min(accounting_date), sum(amount)
             FROM receivable_items
            WHERE accounting_date <= %(as_of)s
              AND (%(customer)s::text IS NULL OR customer = %(customer)s)
              AND (%(branch)s::text IS NULL OR document_number IN (
                       SELECT open_item FROM journal_lines WHERE branch = %(branch)s))
            GROUP BY customer, document_number
            ORDER BY customer, document_number""",
        {"as_of": as_of, "customer": customer, "branch": branch}).fetchall()


def advance_rows(conn: psycopg.Connection, *, as_of: dt.date, customer: str | None = None
                 ) -> list[tuple[str, Decimal]]:
    """``(customer, Σ unused advance)`` from the advances rows dated <= as_of."""
    return conn.execute(
        """SELECT customer, sum(amount) FROM advances
            WHERE accounting_date <= %(as_of)s
              AND (%(customer)s::text IS NULL OR customer = %(customer)s)
            GROUP BY customer ORDER BY customer""",
        {"as_of": as_of, "customer": customer}).fetchall()


def stock_rows(conn: psycopg.Connection, *, as_of: dt.date, sku: str | None = None,
               warehouse: str | None = None) -> list[tuple[str, str, Decimal, Decimal]]:
    """``(sku, warehouse, Σ quantity, Σ value)`` of the stock movements dated <= as_of."""
    return conn.execute(
        """SELECT sku, warehouse, sum(quantity), sum(value) FROM stock_ledger
            WHERE accounting_date <= %(as_of)s
              AND (%(sku)s::text IS NULL OR sku = %(sku)s)
              AND (%(warehouse)s::text IS NULL OR warehouse = %(warehouse)s)
            GROUP BY sku, warehouse ORDER BY sku, warehouse""",
        {"as_of": as_of, "sku": sku, "warehouse": warehouse}).fetchall()


def pnl_rows(conn: psycopg.Connection, accounts: ReportAccounts, *, date_from: dt.date,
             date_to: dt.date, branch: str | None = None, customer: str | None = None,
             sku: str | None = None) -> list[tuple]:
    """``(day, branch, sku, revenue, returns, discounts, cogs)`` per accounting date, branch
    and SKU of the lines dated within [date_from, date_to].

    revenue = credit − debit on revenue and vat_on_sales accounts except in ``return``
    entries; returns = debit − credit on sales_returns, plus the revenue-side lines of
    ``return`` entries (ru-1c returns are a red storno of revenue); discounts = debit − credit
    on discounts_granted; cogs = debit − credit on cost_of_sales.
    """
    revenue = list(accounts.revenue + accounts.vat_on_sales)
    return conn.execute(
        """SELECT e.accounting_date, l.branch, l.sku,
                  coalesce(sum(l.credit - l.debit) FILTER (
                      WHERE l.account = ANY(%(revenue)s) AND e.kind <> 'return'), 0),
                  coalesce(sum(l.debit - l.credit) FILTER (
                      WHERE l.account = ANY(%(returns)s)
                         OR (l.account = ANY(%(revenue)s) AND e.kind = 'return')), 0),
                  coalesce(sum(l.debit - l.credit) FILTER (WHERE l.account = ANY(%(disc)s)), 0),
                  coalesce(sum(l.debit - l.credit) FILTER (WHERE l.account = ANY(%(cogs)s)), 0)
             FROM journal_lines l JOIN journal_entries e USING (entry_id)
            WHERE e.accounting_date BETWEEN %(from)s AND %(to)s
              AND l.account = ANY(%(all)s)
              AND (%(branch)s::text IS NULL OR l.branch = %(branch)s)
              AND (%(customer)s::text IS NULL OR l.customer = %(customer)s)
              AND (%(sku)s::text IS NULL OR l.sku = %(sku)s)
            GROUP BY 1, 2, 3""",
        {"revenue": revenue, "returns": list(accounts.sales_returns),
         "disc": list(accounts.discounts_granted), "cogs": list(accounts.cost_of_sales),
         "all": revenue + list(accounts.sales_returns + accounts.discounts_granted
                               + accounts.cost_of_sales),
         "from": date_from, "to": date_to, "branch": branch, "customer": customer,
         "sku": sku}).fetchall()


def journal_rows(conn: psycopg.Connection, document: str, *, as_of: dt.date | None,
                 document_type: str | None = None) -> tuple[list[tuple], list[tuple]]:
    """The entries (:data:`ENTRY_COLUMNS`) of document ``document`` (number; optionally only of
    ``document_type``) dated <= as_of, and their lines (:data:`LINE_COLUMNS`)."""
    columns = sql.SQL(", ").join(sql.Identifier("e", c) for c in ENTRY_COLUMNS)
    entries = conn.execute(
        sql.SQL("""SELECT {} FROM journal_entries e
                    WHERE e.document_number = %(doc)s
                      AND (%(type)s::text IS NULL OR e.document_type = %(type)s)
                      AND (%(as_of)s::date IS NULL OR e.accounting_date <= %(as_of)s)""")
        .format(columns), {"doc": document, "type": document_type, "as_of": as_of}).fetchall()
    ids = [row[0] for row in entries]
    lines = conn.execute(
        sql.SQL("SELECT {} FROM journal_lines l WHERE l.entry_id = ANY(%s)").format(
            sql.SQL(", ").join(sql.Identifier("l", c) for c in LINE_COLUMNS)), (ids,)).fetchall()
    return entries, lines


def subledger_rows(conn: psycopg.Connection, document: str, *, as_of: dt.date | None,
                   document_type: str | None = None) -> dict[str, list[tuple]]:
    """The subledger rows the document caused (``by_number``): ``{"stock": (date, kind, sku,
    warehouse, quantity, value, version), "receivables": (date, kind, customer, open item,
    amount, version), "advances": (date, kind, customer, payment, amount, version)}``."""
    params = {"doc": document, "type": document_type, "as_of": as_of}
    where = """by_number = %(doc)s AND (%(type)s::text IS NULL OR by_type = %(type)s)
               AND (%(as_of)s::date IS NULL OR accounting_date <= %(as_of)s)"""
    queries = {
        "stock": "SELECT accounting_date, kind, sku, warehouse, quantity, value, by_version "
                 "FROM stock_ledger",
        "receivables": "SELECT accounting_date, kind, customer, document_number, amount, "
                       "by_version FROM receivable_items",
        "advances": "SELECT accounting_date, kind, customer, document_number, amount, "
                    "by_version FROM advances",
    }
    return {name: conn.execute(sql.SQL(query + " WHERE " + where + " ORDER BY 1, 2, 3, 4"),
                               params).fetchall()
            for name, query in queries.items()}
