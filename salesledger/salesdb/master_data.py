"""Read the sales database's master data and posted invoices/returns for validation.

The assembly worker seeds its :class:`~salesledger.streams.validation.MasterData` from here at
start (CDC rows keep it current afterwards: a connector started with ``snapshot.mode=no_data``,
or master rows compacted away, would otherwise leave it empty), and ``salesledger dlq retry``
re-validates a dead-lettered document against the master data as it is now. Read as the
sales database's ``reporting`` role (SELECT on schema ``sales``). Amounts are ``Decimal``
(NUMERIC), never float.
"""

from __future__ import annotations

from typing import Any

import psycopg

from salesledger.streams.validation import (
    DocumentsView,
    DocumentValidator,
    MasterData,
    Product,
    SoldLine,
)

_CONNECT_TIMEOUT_S = 10


def connect_sales(settings: Any) -> psycopg.Connection:
    """A read-only autocommit connection to the sales database as the reporting role."""
    return psycopg.connect(**settings.conninfo("sales", "reporting"), autocommit=True,
                           connect_timeout=_CONNECT_TIMEOUT_S)


def load_master_data(conn: psycopg.Connection) -> MasterData:
    """Customers, products (unit, VAT rate, kind), units and currency rates as of now."""
    master = MasterData()
    for (code,) in conn.execute("SELECT code FROM sales.customers"):
        master.put_customer(code)
    for (code,) in conn.execute("SELECT code FROM sales.units"):
        master.put_unit(code)
    for sku, unit, vat_rate, kind in conn.execute(
            "SELECT sku, unit, vat_rate, kind FROM sales.products"):
        master.put_product(Product(sku=sku, unit=unit, vat_rate=vat_rate, kind=kind))
    for currency, day, rate in conn.execute(
            "SELECT currency, date, rate FROM sales.currency_rates"):
        master.put_rate(currency, day, rate)
    return master


def load_returns_view(conn: psycopg.Connection, invoice_number: str) -> DocumentsView:
    """The posted invoice ``invoice_number`` (its lines) and the posted returns against it,
    as the sales program has them now (empty when the invoice is not posted)."""
    view = DocumentsView()
    lines = conn.execute(
        "SELECT l.line_no, l.sku, l.qty FROM sales.invoices i"
        " JOIN sales.invoice_lines l USING (invoice_id)"
        " WHERE i.number = %s AND i.status = 'posted' ORDER BY l.line_no",
        (invoice_number,)).fetchall()
    if lines:
        view.put_invoice(invoice_number, (SoldLine(n, sku, qty) for n, sku, qty in lines))
    returns: dict[str, list] = {}
    for number, sku, qty, line_no in conn.execute(
            "SELECT r.number, l.sku, l.qty, l.invoice_line_no FROM sales.returns r"
            " JOIN sales.return_lines l USING (return_id)"
            " WHERE r.against_invoice_number = %s AND r.status = 'posted'"
            " ORDER BY r.date, r.number, l.line_no", (invoice_number,)):
        returns.setdefault(number, []).append((sku, qty, line_no))
    for number, taken in returns.items():
        view.put_return(number, invoice_number, taken)
    return view


def validator_from_database(settings: Any, ledger: Any) -> DocumentValidator:
    """A :class:`DocumentValidator` seeded with the sales database's master data now, in the
    ledger's functional currency and ``rate_max_age_days`` (``ledger``: LedgerSettings)."""
    with connect_sales(settings) as conn:
        master = load_master_data(conn)
    return DocumentValidator(master, functional_currency=ledger.functional_currency,
                             rate_max_age_days=ledger.rate_max_age_days)


__all__ = ["connect_sales", "load_master_data", "load_returns_view", "validator_from_database"]
