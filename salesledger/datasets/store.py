"""Writes a :class:`~salesledger.datasets.plan.Plan`'s master data and opening balances into the
sales database, idempotently, and keeps salesledger's own bookkeeping next to it.

Sales tables (schema ``sales``, reference schema of ``deploy/sql/sales``): branches, warehouses,
units, customers, suppliers, products are upserted by their code with
``INSERT … ON CONFLICT (code) DO UPDATE … WHERE (columns) IS DISTINCT FROM (new values)``, so a
re-run writes no row at all (no CDC event either) and a changed value is updated once.
No currency rates: every document is in GBP, the demo's functional currency.

salesledger's bookkeeping lives in its own schema :data:`SCHEMA` (``salesledger_data``), which is
**not** in the capture publication (it is not the sales program's data):

The unit ``pcs`` is inserted only if missing (another loader may own its name).

- ``loads`` — one row per (dataset, slice, seed, shift): what ``salesledger load`` wrote;
  ``simulate`` reads its slice and seed from the latest row by default.
- ``opening_stock`` — opening stock per (dataset, as_of, sku, warehouse) at cost (GBP): the
  sales schema has no opening-balance document, so go-live / the demo reads it here and posts it
  as an ``opening_balance`` entry (:func:`opening_balance_document`).
- ``dead_letters`` — source lines that became no document, with their reason, written by
  ``simulate`` when the replay reaches them, keyed by (dataset, source document, position of the
  line in it); ``SELECT reason, count(*) … GROUP BY reason`` counts them.

Every statement is parameterised; identifiers come from constants via
:class:`psycopg.sql.Identifier`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Sequence

import psycopg
from psycopg import sql

from salesledger.datasets import model
from salesledger.datasets import online_retail as orr
from salesledger.datasets.plan import Plan

SCHEMA = "salesledger_data"

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.loads (
        dataset     text    NOT NULL,
        first_day   date    NOT NULL,
        last_day    date    NOT NULL,
        seed        bigint  NOT NULL,
        shift_days  integer NOT NULL,
        as_of       date    NOT NULL,
        loaded_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (dataset, first_day, last_day, seed, shift_days))""",
    """CREATE TABLE IF NOT EXISTS {schema}.opening_stock (
        dataset        text          NOT NULL,
        as_of          date          NOT NULL,
        sku            text          NOT NULL,
        warehouse_code text          NOT NULL,
        qty            numeric(15,3) NOT NULL CHECK (qty > 0),
        unit_cost      numeric(15,4) NOT NULL CHECK (unit_cost > 0),
        currency       char(3)       NOT NULL,
        PRIMARY KEY (dataset, as_of, sku, warehouse_code))""",
    # a pre-release layout keyed by file row is replaced (its rows are re-written by a replay)
    """DO $$ BEGIN
        IF to_regclass('salesledger_data.dead_letters') IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM information_schema.columns WHERE table_schema = 'salesledger_data'
            AND table_name = 'dead_letters' AND column_name = 'position') THEN
            DROP TABLE salesledger_data.dead_letters;
        END IF; END $$""",
    """CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
        dataset         text        NOT NULL,
        source_document text        NOT NULL,
        position        integer     NOT NULL,
        source_row      integer     NOT NULL,
        sku             text        NOT NULL,
        customer_code   text        NOT NULL,
        qty             numeric(15,3) NOT NULL,
        reason          text        NOT NULL,
        detail          text        NOT NULL,
        occurred_at     timestamp   NOT NULL,
        recorded_at     timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (dataset, source_document, position))""",
    "GRANT USAGE ON SCHEMA {schema} TO {reporting}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reporting}",
)


@dataclass(frozen=True)
class LoadRecord:
    """A row of ``salesledger_data.loads``."""

    dataset: str
    first_day: dt.date
    last_day: dt.date
    seed: int
    shift_days: int
    as_of: dt.date


def ensure_schema(conn: psycopg.Connection, reporting_role: str) -> None:
    """Create :data:`SCHEMA` and its tables if missing (idempotent; one transaction)."""
    with conn.transaction():
        for statement in _DDL:
            conn.execute(sql.SQL(statement).format(schema=sql.Identifier(SCHEMA),
                                                   reporting=sql.Identifier(reporting_role)))


def _upsert(conn: psycopg.Connection, table: str, key: str, rows: Iterable[dict[str, Any]],
            update: bool = True) -> tuple[int, int]:
    """Upsert ``rows`` into ``sales.<table>`` by ``key``; returns (inserted, updated). With
    ``update=False`` an existing row is left as it is (shared codes such as the unit ``pcs``)."""
    inserted = updated = 0
    for row in rows:
        cols = list(row)
        others = [c for c in cols if c != key]
        if not update:
            cur = conn.execute(sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}) ON CONFLICT DO NOTHING").format(
                t=sql.Identifier("sales", table), c=sql.SQL(", ").join(map(sql.Identifier, cols)),
                v=sql.SQL(", ").join(sql.Placeholder() * len(cols))), [row[c] for c in cols])
            inserted += cur.rowcount
            continue
        statement = sql.SQL(
            "INSERT INTO {table} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) DO UPDATE SET {sets}"
            " WHERE ({old}) IS DISTINCT FROM ({new}) RETURNING (xmax = 0)"
        ).format(
            table=sql.Identifier("sales", table),
            cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            key=sql.Identifier(key),
            sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others),
            old=sql.SQL(", ").join(sql.Identifier(table, c) for c in others),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in others),
        )
        result = conn.execute(statement, [row[c] for c in cols]).fetchone()
        if result is not None:
            inserted += bool(result[0])
            updated += not result[0]
    return inserted, updated


def master_data_rows(plan: Plan) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """The master data of ``plan`` as rows per sales table: ``{table: (key column, rows)}``,
    in the order they must be written (warehouses need their branch, products their unit)."""
    return {
        "branches": ("code", list({b[0]: {"code": b[0], "name": b[1]}
                                   for b in (plan.branch, *plan.extra_branches)}.values())),
        "warehouses": ("code", list({w[0]: {"code": w[0], "name": w[1], "branch_code": w[2]}
                                     for w in ((*plan.warehouse, plan.branch[0]),
                                               *plan.extra_warehouses)}.values())),
        "units": ("code", [{"code": orr.UNIT, "name": "piece"}]),
        "customers": ("code", [{"code": c.code, "name": c.name, "tax_id": None,
                                "payment_terms_days": c.payment_terms_days, "vat_payer": False,
                                "country": c.country} for c in plan.customers]),
        "suppliers": ("code", [{"code": code, "name": name, "tax_id": None, "vat_payer": True}
                               for code, name in plan.suppliers]),
        "products": ("sku", [{"sku": p.sku, "name": p.name, "unit": orr.UNIT,
                              "vat_rate": p.vat_rate, "kind": p.kind, "active": True}
                             for p in plan.products]),
    }


def load_plan(conn: psycopg.Connection, plan: Plan, shift_days: int, reporting_role: str) -> dict[str, Any]:
    """Write the master data and the opening stock of ``plan`` (dates shifted by ``shift_days``)
    in one transaction; returns ``{table: {"inserted": n, "updated": n, "rows": n}}``; the
    ``opening_stock`` entry adds ``as_of``, ``value`` (Σ round(qty × unit cost, 0.01) per SKU,
    ROUND_HALF_UP, a decimal string) and ``currency``.

    Raises:
        psycopg.errors.UndefinedTable: the sales schema is missing (run ``salesdb migrate``).
    """
    ensure_schema(conn, reporting_role)
    report: dict[str, Any] = {}
    as_of = plan.opening_as_of + dt.timedelta(days=shift_days)
    with conn.transaction():
        for table, (key, rows) in master_data_rows(plan).items():
            inserted, updated = _upsert(conn, table, key, rows, update=table != "units")
            report[table] = {"rows": len(rows), "inserted": inserted, "updated": updated}
        inserted = updated = 0
        for stock in plan.opening_stock:
            row = conn.execute(
                sql.SQL("INSERT INTO {t} AS o (dataset, as_of, sku, warehouse_code, qty, unit_cost, currency)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (dataset, as_of, sku, warehouse_code)"
                        " DO UPDATE SET qty = EXCLUDED.qty, unit_cost = EXCLUDED.unit_cost,"
                        " currency = EXCLUDED.currency WHERE (o.qty, o.unit_cost, o.currency)"
                        " IS DISTINCT FROM (EXCLUDED.qty, EXCLUDED.unit_cost, EXCLUDED.currency)"
                        " RETURNING (xmax = 0)").format(t=sql.Identifier(SCHEMA, "opening_stock")),
                (plan.dataset, as_of, stock.sku, stock.warehouse, stock.qty, stock.unit_cost,
                 plan.currency)).fetchone()
            if row is not None:
                inserted += bool(row[0])
                updated += not row[0]
        value = sum((model.line_gross(s.qty, s.unit_cost) for s in plan.opening_stock), Decimal(0))
        report["opening_stock"] = {"rows": len(plan.opening_stock), "inserted": inserted, "updated": updated,
                                   "as_of": as_of.isoformat(), "value": str(value),
                                   "currency": plan.currency}
        conn.execute(
            sql.SQL("INSERT INTO {} (dataset, first_day, last_day, seed, shift_days, as_of)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(
                sql.Identifier(SCHEMA, "loads")),
            (plan.dataset, plan.days[0], plan.days[-1], plan.seed, shift_days, as_of))
    return report


def latest_load(conn: psycopg.Connection, dataset: str) -> LoadRecord | None:
    """The most recent ``loads`` row of ``dataset`` (None if never loaded or no schema)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.loads",)).fetchone()[0]
    if not exists:
        return None
    row = conn.execute(
        sql.SQL("SELECT dataset, first_day, last_day, seed, shift_days, as_of FROM {}"
                " WHERE dataset = %s ORDER BY loaded_at DESC LIMIT 1").format(sql.Identifier(SCHEMA, "loads")),
        (dataset,)).fetchone()
    return LoadRecord(*row) if row else None


def missing_master_data(conn: psycopg.Connection, plan: Plan) -> dict[str, list[str]]:
    """Customer codes and SKUs of ``plan`` absent from the sales database (empty when loaded)."""
    out: dict[str, list[str]] = {}
    for table, column, wanted in (("customers", "code", [c.code for c in plan.customers]),
                                  ("products", "sku", [p.sku for p in plan.products]),
                                  ("suppliers", "code", [c for c, _ in plan.suppliers])):
        present = {r[0] for r in conn.execute(
            sql.SQL("SELECT {c} FROM {t} WHERE {c} = ANY(%s)").format(
                c=sql.Identifier(column), t=sql.Identifier("sales", table)), (wanted,))}
        missing = [w for w in wanted if w not in present]
        if missing:
            out[table] = missing
    return out


def opening_stock_rows(conn: psycopg.Connection, dataset: str,
                       as_of: dt.date) -> list[tuple[str, str, Decimal, Decimal]]:
    """(sku, warehouse, qty, unit_cost) of the opening stock of ``dataset`` as of ``as_of``."""
    return [tuple(r) for r in conn.execute(
        sql.SQL("SELECT sku, warehouse_code, qty, unit_cost FROM {} WHERE dataset = %s AND as_of = %s"
                " ORDER BY sku, warehouse_code").format(sql.Identifier(SCHEMA, "opening_stock")),
        (dataset, as_of))]


def opening_balance_document(conn: psycopg.Connection, dataset: str = orr.DATASET,
                             as_of: dt.date | None = None):
    """The opening stock as the posting engine's :class:`~salesledger.ledger.model.OpeningBalance`
    (number ``OB-<dataset>-<as_of>``, dated ``as_of``, in the dataset's currency), for go-live / the demo to post
    before the replay. ``as_of`` defaults to the latest load's.

    Raises:
        LookupError: nothing was loaded for ``dataset``.
    """
    from salesledger.ledger.model import OpeningBalance, OpeningStockLine

    if as_of is None:
        load = latest_load(conn, dataset)
        if load is None:
            raise LookupError(f"no load of {dataset} recorded; run `salesledger load {dataset}`")
        as_of = load.as_of
    rows = opening_stock_rows(conn, dataset, as_of)
    currency = conn.execute(
        sql.SQL("SELECT min(currency) FROM {} WHERE dataset = %s AND as_of = %s").format(
            sql.Identifier(SCHEMA, "opening_stock")), (dataset, as_of)).fetchone()[0] or orr.CURRENCY
    number = f"OB-{dataset}-{as_of.isoformat()}"
    return OpeningBalance(id=number, number=number, date=as_of, currency=currency.strip(),
                          stock=tuple(OpeningStockLine(sku=s, warehouse=w, qty=q, unit_cost=c)
                                      for s, w, q, c in rows))


def record_dead_letter(conn: psycopg.Connection, dataset: str, dead: orr.DeadLetter,
                       occurred_at: dt.datetime) -> bool:
    """Insert one dead letter, idempotent by (dataset, source document, position in it) — the
    same line read from the full file or from a subset has one key; True if it was new."""
    line = dead.line
    cur = conn.execute(
        sql.SQL("INSERT INTO {} (dataset, source_document, position, source_row, sku, customer_code,"
                " qty, reason, detail, occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING").format(sql.Identifier(SCHEMA, "dead_letters")),
        (dataset, line.invoice_no, dead.position, line.row, line.sku, orr.customer_code(line), line.qty,
         dead.reason, dead.detail, occurred_at))
    return cur.rowcount == 1


def dead_letter_counts(conn: psycopg.Connection, dataset: str) -> dict[str, int]:
    """Dead letters recorded for ``dataset`` by reason."""
    rows: Sequence = conn.execute(
        sql.SQL("SELECT reason, count(*) FROM {} WHERE dataset = %s GROUP BY reason ORDER BY reason")
        .format(sql.Identifier(SCHEMA, "dead_letters")), (dataset,)).fetchall()
    return {reason: int(n) for reason, n in rows}
