"""Apply the accounting store's numbered migrations (``deploy/sql/accounting/NNN_name.sql``).

Each file runs once, in number order, in its own transaction, with ``search_path`` set to the target
schema, and is recorded in ``<schema>.schema_migrations`` with the sha256 of its text. Running the
runner again applies only what is new; an applied file whose text changed is refused (migrations
are reviewed history, never edited).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from salesledger.resources import resource_path

MIGRATIONS_DIR = "deploy/sql/accounting"
DEFAULT_SCHEMA = "ledger"
#: psql-style variables a migration may use; the runner substitutes quoted identifiers.
_VARIABLES = ("schema", "writer_role", "reporting_role")
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# A fixed key for pg_advisory_xact_lock so two runners never interleave.
_LOCK_KEY = 0x5A1E5_1ED6E


class MigrationError(RuntimeError):
    """An applied migration was edited, or the files are misnumbered."""


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` (the NNN prefix), ``name``, its SQL text and sha256."""

    version: int
    name: str
    text: str

    @property
    def sha256(self) -> str:
        """sha256 (hex) of the file's text, as recorded in ``schema_migrations``."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    """Return the migrations of ``directory`` (default: the shipped ones) sorted by version.

    Raises:
        MigrationError: two files share a number, or the numbers have a gap.
    """
    directory = directory or resource_path(MIGRATIONS_DIR)
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        match = _FILE_NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path.read_text("utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations must be numbered 001.. without gaps: {versions}")
    return found


def apply_migrations(
    conn: psycopg.Connection,
    schema: str = DEFAULT_SCHEMA,
    *,
    writer_role: str,
    reporting_role: str,
    directory: Path | None = None,
) -> list[int]:
    """Bring ``schema`` up to date; return the versions applied now (empty when up to date).

    ``conn`` connects as the schema owner (it owns every table, so no writer can alter them);
    autocommit is required (each migration is its own transaction). ``writer_role`` (the sink)
    and ``reporting_role`` (read-only) are the login roles the grants name.

    Raises:
        MigrationError: an applied migration's text changed.
    """
    assert conn.autocommit, "apply_migrations needs an autocommit connection"
    variables = {"schema": schema, "writer_role": writer_role, "reporting_role": reporting_role}
    applied_now: list[int] = []
    for migration in discover(directory):
        with conn.transaction():
            _enter(conn, schema, writer_role, reporting_role)
            done = conn.execute(
                "SELECT sha256 FROM schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if done is not None:
                if done[0] != migration.sha256:
                    raise MigrationError(
                        f"migration {migration.version:03d}_{migration.name} was edited after "
                        f"being applied to schema {schema!r}; add a new migration instead"
                    )
                continue
            conn.execute(substitute(conn, migration.text, variables))
            conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.sha256),
            )
            applied_now.append(migration.version)
    return applied_now


def substitute(conn: psycopg.Connection, text: str, variables: dict[str, str]) -> str:
    """Replace each psql-style ``:"name"`` in ``text`` by the quoted identifier of its value.

    Raises:
        MigrationError: the text names a variable that is not given.
    """
    def quoted(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise MigrationError(f"unknown migration variable :{name!r}")
        return sql.Identifier(variables[name]).as_string(conn)

    return re.sub(r':"([a-z_]+)"', quoted, text)


def _enter(conn: psycopg.Connection, schema: str, writer_role: str, reporting_role: str) -> None:
    """Inside a transaction: lock, create the schema and the record table, point search_path."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version     integer PRIMARY KEY,
               name        text NOT NULL,
               sha256      text NOT NULL,
               applied_at  timestamptz NOT NULL DEFAULT now())"""
    )
    conn.execute(sql.SQL("REVOKE ALL ON schema_migrations FROM PUBLIC, {w}, {r}; "
                         "GRANT SELECT ON schema_migrations TO {w}, {r}").format(
        w=sql.Identifier(writer_role), r=sql.Identifier(reporting_role)))


def applied_versions(conn: psycopg.Connection, schema: str = DEFAULT_SCHEMA) -> list[int]:
    """The migration versions recorded in ``schema`` (empty if the schema has none)."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        (sql.Identifier(schema, "schema_migrations").as_string(conn),),
    ).fetchone()[0]
    if not exists:
        return []
    rows = conn.execute(
        sql.SQL("SELECT version FROM {} ORDER BY version").format(
            sql.Identifier(schema, "schema_migrations")
        )
    ).fetchall()
    return [r[0] for r in rows]


def migrate_store(settings, schema: str = DEFAULT_SCHEMA) -> list[int]:
    """Apply the migrations to ``schema`` of the profile's accounting database as the owner
    role, granting the settings' sink and reporting roles; return the versions applied now.

    For ``salesledger ledger migrate`` and for whoever starts sink workers (``salesledger run``,
    the demo): a sink worker refuses to start on a schema that is not migrated.
    """
    with psycopg.connect(**settings.conninfo("accounting", "owner"), autocommit=True,
                         connect_timeout=10) as conn:
        return apply_migrations(conn, schema, writer_role=settings.sink_role,
                                reporting_role=settings.reporting_role)
