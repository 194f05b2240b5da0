"""Apply ``deploy/sql/sales/NNN_name.sql`` in order, once each, recorded in a table.

Each file runs in its own transaction together with the row that records it in
``sales.schema_migrations`` (version, name, SHA-256 of the file text, applied_at), so a migration is
either applied and recorded or not at all. Running :func:`migrate` again applies nothing.
A file whose text changed after it was applied is refused (:class:`MigrationError`): applied
migrations are history, a change is a new numbered file.

SQL files may name identifiers as ``{placeholder}`` (``cdc_role``, ``reporting_role``,
``publication``); they are filled with :class:`psycopg.sql.Identifier`, never by string
formatting, so a literal brace in a file is written ``{{``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Mapping

import psycopg
from psycopg import sql

from salesledger.resources import resource_path

SCHEMA = "sales"
MIGRATIONS_TABLE = "schema_migrations"
PLACEHOLDERS = ("cdc_role", "reporting_role", "publication")
_FILE_RE = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")
# Any constant serves; it only has to be the same for every runner of this schema.
_ADVISORY_LOCK_KEY = 0x5A1E5DB


class MigrationError(RuntimeError):
    """The migration files or the recorded history are inconsistent (see the message)."""


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` ("001"), ``name`` ("master_data"), its text and SHA-256."""

    version: str
    name: str
    path: Path
    text: str
    checksum: str


@dataclass(frozen=True)
class MigrationState:
    """A migration file and, when applied, when; ``changed`` if its text differs from the record."""

    migration: Migration
    applied_at: datetime | None
    changed: bool


def default_directory() -> Path:
    """The shipped migrations folder, ``deploy/sql/sales``."""
    return resource_path("deploy/sql/sales")


def discover(directory: Path | None = None) -> list[Migration]:
    """Return the migration files of ``directory`` sorted by version.

    Raises:
        MigrationError: a ``.sql`` file is not named ``NNN_name.sql`` or two share a version.
    """
    directory = directory or default_directory()
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        version = match["version"]
        if version in found:
            raise MigrationError(f"{path.name}: version {version} also in {found[version].path.name}")
        text = path.read_text(encoding="utf-8")
        found[version] = Migration(
            version=version,
            name=match["name"],
            path=path,
            text=text,
            checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def render(migration: Migration, identifiers: Mapping[str, str]) -> sql.Composed:
    """The migration's SQL with its ``{placeholder}`` identifiers filled in.

    Raises:
        MigrationError: an identifier the file uses is missing from ``identifiers``.
    """
    params = {key: sql.Identifier(value) for key, value in identifiers.items()}
    try:
        return sql.SQL(migration.text).format(**params)
    except KeyError as missing:
        raise MigrationError(f"{migration.path.name}: no value for placeholder {missing}") from None


def _ensure_history_table(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(SCHEMA, MIGRATIONS_TABLE))
    )


def _recorded(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute(
        sql.SQL("SELECT version, checksum, applied_at FROM {}").format(
            sql.Identifier(SCHEMA, MIGRATIONS_TABLE)
        )
    ).fetchall()
    return {version: (checksum, applied_at) for version, checksum, applied_at in rows}


def _check_history(migrations: list[Migration], recorded: Mapping[str, tuple[str, datetime]]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, (checksum, _) in recorded.items():
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(f"migration {version} is recorded as applied but its file is gone")
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.path.name} changed after it was applied (recorded sha256 {checksum[:12]},"
                f" file {migration.checksum[:12]}); write a new migration instead"
            )


def migrate(
    conninfo: str,
    identifiers: Mapping[str, str],
    directory: Path | None = None,
) -> list[Migration]:
    """Apply every migration not yet recorded, in version order; return those applied now.

    ``conninfo`` connects as the schema owner; ``identifiers`` maps the placeholders
    (``cdc_role``, ``reporting_role``, ``publication``) to real names. Concurrent runners are
    serialised by a session advisory lock.

    Raises:
        MigrationError: files and recorded history disagree, or a placeholder has no value.
        psycopg.Error: a migration failed; it and everything after it stay unapplied.
    """
    migrations = discover(directory)
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        try:
            with conn.transaction():
                _ensure_history_table(conn)
            recorded = _recorded(conn)
            _check_history(migrations, recorded)
            for migration in migrations:
                if migration.version in recorded:
                    continue
                statement = render(migration, identifiers)
                with conn.transaction():
                    conn.execute(statement)
                    conn.execute(
                        sql.SQL("INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)").format(
                            sql.Identifier(SCHEMA, MIGRATIONS_TABLE)
                        ),
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
    return applied_now


def status(conninfo: str, directory: Path | None = None) -> list[MigrationState]:
    """Each migration file with its applied time (None if pending) and whether it changed since.

    Raises:
        MigrationError: a migration is recorded whose file no longer exists.
    """
    migrations = discover(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{MIGRATIONS_TABLE}",)
        ).fetchone()[0]
        recorded = _recorded(conn) if exists else {}
    known = {m.version for m in migrations}
    orphans = sorted(set(recorded) - known)
    if orphans:
        raise MigrationError(f"recorded migrations without a file: {', '.join(orphans)}")
    return [
        MigrationState(
            migration=m,
            applied_at=recorded[m.version][1] if m.version in recorded else None,
            changed=m.version in recorded and recorded[m.version][0] != m.checksum,
        )
        for m in migrations
    ]
