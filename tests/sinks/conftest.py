"""Fixtures of the sink tests: a fresh accounting-store schema per test in ``accounting_test``,
connections as the owner / sink / reporting roles (``settings`` comes from tests/conftest.py;
factories of ledger facts are in ``sink_factories.py``).

Integration tests need the local stack (`salesledger stack up --profile test`); when PostgreSQL
is not there they fail (never skip).
"""

from __future__ import annotations

import uuid
from typing import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from salesledger.config import Settings
from salesledger.sinks.migrate import apply_migrations


@pytest.fixture(scope="session")
def owner_conn(settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(**settings.conninfo("accounting", "owner"), autocommit=True,
                         connect_timeout=10) as conn:
        yield conn


@pytest.fixture
def store(settings: Settings, owner_conn: psycopg.Connection) -> Iterator[str]:
    """A fresh schema with every migration applied; dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    apply_migrations(owner_conn, schema, writer_role=settings.sink_role,
                     reporting_role=settings.reporting_role)
    yield schema
    owner_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def another_store(settings: Settings, owner_conn: psycopg.Connection) -> Iterator[str]:
    """A second fresh schema in the same test (to compare two ledgers)."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    apply_migrations(owner_conn, schema, writer_role=settings.sink_role,
                     reporting_role=settings.reporting_role)
    yield schema
    owner_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sink_connect(settings: Settings) -> Callable[[], psycopg.Connection]:
    """Opens a connection as the sink writer role."""
    return lambda: psycopg.connect(**settings.conninfo("accounting", "sink"), connect_timeout=10)


@pytest.fixture
def reporting_connect(settings: Settings) -> Callable[[], psycopg.Connection]:
    return lambda: psycopg.connect(**settings.conninfo("accounting", "reporting"),
                                   autocommit=True, connect_timeout=10)
