"""What the sales database shows about capture: the publication's tables and replication slots.

A replication slot retains WAL until its consumer confirms it (``confirmed_flush_lsn``); a slot
nobody reads fills the disk, so deleting a connector is followed by :func:`drop_slot`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

_DROP_POLL_S = 0.5


@dataclass(frozen=True)
class SlotInfo:
    """A replication slot: ``active`` (a walsender reads it), ``confirmed_flush_lsn`` (int, the
    position its consumer confirmed), ``lag_bytes`` (WAL written since that position)."""

    name: str
    plugin: str | None
    active: bool
    confirmed_flush_lsn: int | None
    lag_bytes: int | None


def lsn_to_int(lsn: str) -> int:
    """PostgreSQL's ``'16/B374D848'`` text form of an LSN as an integer."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def publication_tables(conninfo: str, publication: str) -> list[tuple[str, str]]:
    """The (schema, table) pairs of ``publication``, from ``pg_publication_tables``."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s"
            " ORDER BY schemaname, tablename",
            (publication,),
        ).fetchall()
    return [(schema, table) for schema, table in rows]


def slot_info(conninfo: str, slot: str) -> SlotInfo | None:
    """The replication slot ``slot`` of the database ``conninfo`` points at, or None."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT slot_name, plugin, active, confirmed_flush_lsn::text,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    if row is None:
        return None
    name, plugin, active, confirmed, lag = row
    return SlotInfo(
        name=name,
        plugin=plugin,
        active=active,
        confirmed_flush_lsn=lsn_to_int(confirmed) if confirmed else None,
        lag_bytes=lag,
    )


def drop_slot(conninfo: str, slot: str, timeout_s: float = 60.0) -> bool:
    """Drop the replication slot once no walsender holds it; False if it did not exist.

    ``conninfo`` must log in as a role with REPLICATION (the CDC role) or a superuser.

    Raises:
        TimeoutError: the slot is still active after ``timeout_s`` seconds (its connector runs).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        info = slot_info(conninfo, slot)
        if info is None:
            return False
        if not info.active:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    return True
                except psycopg.errors.ObjectInUse:
                    pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"replication slot {slot} still active after {timeout_s:.0f} s")
        time.sleep(_DROP_POLL_S)
