"""The bench's seeded sales traffic, written with SQL into the bench's sales database.

Shape (like UCI Online Retail: GBP, prices including 20 % VAT, about 20 lines per invoice):
:data:`SKUS_N` goods products, :data:`CUSTOMERS_N` customers, one branch and warehouse, one
opening goods receipt large enough that no invoice ever waits for stock, then invoices of
1..:data:`LINES_PER_DOC_MAX` lines (sizes drawn from ``random.Random(seed)``). Every invoice is
one transaction (header ``posted`` + its lines), as the sales program commits them.
Money: unit prices are GBP with 2 decimals, computed in SQL as exact ``numeric``.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass
from decimal import Decimal

import psycopg

SKUS_N = 50
CUSTOMERS_N = 20
LINES_PER_DOC_MAX = 40
#: Opening stock per SKU (units): the bench never runs an invoice into negative stock.
OPENING_QTY = 1_000_000_000
#: Documents sent in one pipeline round trip while pacing.
PACE_BATCH_MAX = 200

MASTER_DATA_SQL = """
INSERT INTO sales.branches (code, name) VALUES ('BB1', 'Bench branch') ON CONFLICT DO NOTHING;
INSERT INTO sales.warehouses (code, name, branch_code) VALUES ('BW1', 'Bench warehouse', 'BB1')
  ON CONFLICT DO NOTHING;
INSERT INTO sales.units (code, name) VALUES ('pcs', 'pieces') ON CONFLICT DO NOTHING;
INSERT INTO sales.suppliers (code, name) VALUES ('BS1', 'Bench supplier') ON CONFLICT DO NOTHING;
INSERT INTO sales.customers (code, name, payment_terms_days)
  SELECT 'BC' || lpad(g::text, 2, '0'), 'Bench customer ' || g, 30
  FROM generate_series(1, %(customers)s) g ON CONFLICT DO NOTHING;
INSERT INTO sales.products (sku, name, unit, vat_rate)
  SELECT 'BSKU' || lpad(g::text, 2, '0'), 'Bench product ' || g, 'pcs', 20
  FROM generate_series(1, %(skus)s) g ON CONFLICT DO NOTHING;
"""

# One statement = one transaction (autocommit): the posted header and its lines.
INVOICE_SQL = """
WITH h AS (
  INSERT INTO sales.invoices (number, date, customer_code, warehouse_code, branch_code, currency,
                              prices_include_vat, payment_terms_days, status)
  VALUES (%(number)s, %(date)s, %(customer)s, 'BW1', 'BB1', 'GBP', true, 30, 'posted')
  RETURNING invoice_id)
INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price, vat_rate)
SELECT h.invoice_id, g, 'BSKU' || lpad(((g * 7 + %(k)s) %% 50 + 1)::text, 2, '0'),
       1 + (g + %(k)s) %% 5, 1.25 + ((g * 13 + %(k)s) %% 400) / 100.0, 20
FROM h, generate_series(1, %(lines)s) g
"""


@dataclass(frozen=True)
class Document:
    """One invoice to write: ``number``, customer code, line count and a small key ``k`` that
    varies SKUs, quantities and prices."""

    number: str
    customer: str
    lines: int
    k: int


def documents(tag: str, lines_total: int, seed: int) -> list[Document]:
    """Invoices holding exactly ``lines_total`` lines, numbered ``B<tag>-0000001``…, sizes
    1..:data:`LINES_PER_DOC_MAX` from ``random.Random((seed, tag))``.

    Raises:
        ValueError: ``lines_total`` < 1.
    """
    if lines_total < 1:
        raise ValueError("a backlog holds at least one line")
    rng = random.Random(f"{seed}:{tag}")
    out: list[Document] = []
    left = lines_total
    while left:
        size = min(left, rng.randint(1, LINES_PER_DOC_MAX))
        out.append(Document(f"B{tag}-{len(out) + 1:07d}", f"BC{rng.randint(1, CUSTOMERS_N):02d}",
                            size, rng.randint(0, 999)))
        left -= size
    return out


def paced_documents(tag: str, count: int, seed: int) -> list[Document]:
    """``count`` invoices of the same size distribution (for an offered rate)."""
    rng = random.Random(f"{seed}:{tag}")
    return [Document(f"B{tag}-{i + 1:07d}", f"BC{rng.randint(1, CUSTOMERS_N):02d}",
                     rng.randint(1, LINES_PER_DOC_MAX), rng.randint(0, 999)) for i in range(count)]


def load_master_data(dsn: str) -> None:
    """Branch, warehouse, unit, supplier, customers, products and the opening goods receipt
    (``BGR-OPEN``: :data:`OPENING_QTY` of every SKU at 0.50 GBP, posted). Idempotent."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in MASTER_DATA_SQL.split(";"):
            if statement.strip():
                conn.execute(statement, {"customers": CUSTOMERS_N, "skus": SKUS_N}
                             if "%(" in statement else None)
        opening_receipt(conn, "BGR-OPEN", [f"BSKU{n:02d}" for n in range(1, SKUS_N + 1)],
                        OPENING_QTY, Decimal("0.50"))


def opening_receipt(conn: psycopg.Connection, number: str, skus: list[str], qty: int,
                    unit_cost: Decimal) -> None:
    """Insert the posted goods receipt ``number`` (supplier BS1, warehouse BW1, GBP, today):
    ``qty`` of every SKU in ``skus`` at ``unit_cost`` GBP net, VAT 20 %, line numbers in list
    order; nothing when the receipt exists (idempotent). One transaction on ``conn``."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO sales.goods_receipts (number, date, supplier_code, warehouse_code, "
            "currency, status) VALUES (%s, %s, 'BS1', 'BW1', 'GBP', 'posted') "
            "ON CONFLICT (number) DO NOTHING RETURNING goods_receipt_id",
            (number, dt.date.today())).fetchone()
        if row is not None:
            conn.execute(
                "INSERT INTO sales.goods_receipt_lines (goods_receipt_id, line_no, sku, qty, "
                "unit_cost, vat_rate) SELECT %s, g.no, g.sku, %s, %s, 20 "
                "FROM unnest(%s::text[]) WITH ORDINALITY AS g(sku, no)",
                (row[0], qty, unit_cost, skus))


def _params(doc: Document, day: dt.date) -> dict:
    return {"number": doc.number, "date": day, "customer": doc.customer, "k": doc.k,
            "lines": doc.lines}


def write_documents(dsn: str, docs: list[Document]) -> float:
    """Commit ``docs`` as fast as one connection can (pipeline mode, one transaction each);
    returns the wall seconds it took."""
    day = dt.date.today()
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for first in range(0, len(docs), PACE_BATCH_MAX):
            with conn.pipeline():
                for doc in docs[first:first + PACE_BATCH_MAX]:
                    conn.execute(INVOICE_SQL, _params(doc, day))
    return time.monotonic() - started


def write_paced(dsn: str, docs: list[Document], docs_per_s: float) -> float:
    """Commit ``docs`` at ``docs_per_s`` (document i due at ``i / docs_per_s`` s; the due ones
    are sent together when the writer is late). Returns the achieved documents per second."""
    day = dt.date.today()
    started = time.monotonic()
    sent = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while sent < len(docs):
            due = min(len(docs), int((time.monotonic() - started) * docs_per_s) + 1)
            due = min(due, sent + PACE_BATCH_MAX)
            if due > sent:
                with conn.pipeline():
                    for doc in docs[sent:due]:
                        conn.execute(INVOICE_SQL, _params(doc, day))
                sent = due
            else:
                time.sleep(max(0.0, sent / docs_per_s - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    return len(docs) / elapsed if elapsed > 0 else float(len(docs))
