"""The sales-schema migrations against the real PostgreSQL of the stack (profile test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from salesledger.cli.salesdb import identifiers
from salesledger.connect import PUBLICATION
from salesledger.salesdb.migrations import MigrationError, discover, migrate, status

pytestmark = pytest.mark.stack

CAPTURED = {
    "branches", "warehouses", "units", "customers", "suppliers", "products", "currency_rates",
    "invoices", "invoice_lines", "payments", "payment_allocations", "returns", "return_lines",
    "goods_receipts", "goods_receipt_lines", "stock_write_offs", "stock_write_off_lines",
    "cdc_heartbeat",
}


def test_migrations_apply_once_and_again_change_nothing(settings, sales_dsn):
    # sales_dsn has migrated already; a second and third run apply nothing.
    assert migrate(sales_dsn, identifiers(settings)) == []
    assert migrate(sales_dsn, identifiers(settings)) == []
    states = status(sales_dsn)
    assert [s.migration.version for s in states] == [m.version for m in discover()]
    assert all(s.applied_at is not None and not s.changed for s in states)


def test_a_changed_applied_migration_is_refused(settings, sales_dsn, tmp_path: Path):
    changed = tmp_path / "sql"
    shutil.copytree(discover()[0].path.parent, changed)
    first = sorted(changed.glob("001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    assert any(s.changed for s in status(sales_dsn, changed))
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(sales_dsn, identifiers(settings), changed)


def test_publication_holds_exactly_the_captured_tables(sales_dsn):
    with psycopg.connect(sales_dsn) as conn:
        rows = conn.execute("SELECT schemaname, tablename FROM pg_publication_tables"
                            " WHERE pubname = %s", (PUBLICATION,)).fetchall()
        identity = dict(conn.execute(
            "SELECT c.relname, c.relreplident FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'sales' AND c.relkind = 'r'").fetchall())
    assert {s for s, _ in rows} == {"sales"}
    assert {t for _, t in rows} >= CAPTURED
    for table in CAPTURED - {"cdc_heartbeat"}:
        assert identity[table] == "f", f"{table} is not REPLICA IDENTITY FULL"


def test_cdc_role_reads_captured_tables_and_writes_only_the_heartbeat(settings, sales_dsn):
    with psycopg.connect(settings.dsn("sales", "cdc"), autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM sales.invoices").fetchone()
        conn.execute("SELECT count(*) FROM sales.customers").fetchone()
        conn.execute("INSERT INTO sales.cdc_heartbeat (id, beat_at) VALUES (1, now())"
                     " ON CONFLICT (id) DO UPDATE SET beat_at = EXCLUDED.beat_at")
        for statement in (
            "INSERT INTO sales.units (code, name) VALUES ('zz', 'no')",
            "UPDATE sales.invoices SET status = status",
            "DELETE FROM sales.payments",
            "SELECT count(*) FROM sales.schema_migrations",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_reporting_role_reads_everything_and_writes_nothing(settings, sales_dsn):
    with psycopg.connect(settings.dsn("sales", "reporting"), autocommit=True) as conn:
        for table in sorted(CAPTURED) + ["schema_migrations"]:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier("sales", table))).fetchone()
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
            conn.execute("INSERT INTO sales.units (code, name) VALUES ('zz', 'no')")


def test_money_columns_are_numeric_with_scale(sales_dsn):
    with psycopg.connect(sales_dsn) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale"
            " FROM information_schema.columns WHERE table_schema = 'sales'"
            " AND column_name IN ('amount', 'unit_price', 'unit_cost', 'qty', 'rate', 'vat_rate',"
            " 'discount_percent')").fetchall()
    assert len(rows) >= 12
    for table, column, data_type, precision, scale in rows:
        assert data_type == "numeric" and precision and scale is not None, (table, column)
