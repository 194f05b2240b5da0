"""CDC-10: heartbeats move the replication slot while only an uncaptured table is busy.

Without them the slot's confirmed position would stay where the last captured change was and
PostgreSQL would keep every WAL segment the busy table writes. Measured figure printed:
seconds from the end of the busy work until ``confirmed_flush_lsn`` passes it.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from salesledger.salesdb.capture import lsn_to_int, slot_info

from .conftest import start_capture, stop_capture

pytestmark = pytest.mark.stack

HEARTBEAT_INTERVAL_MS = 2_000
UPDATES = 20_000
ROWS = 200
SLOT_ADVANCE_DEADLINE_S = 240.0  # generous: heartbeat 2 s + Connect's 5 s offset flush


@pytest.fixture(scope="module")
def busy_table(sales_dsn):
    with psycopg.connect(sales_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.cdc10_busy")
        conn.execute("CREATE TABLE public.cdc10_busy (id integer PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO public.cdc10_busy SELECT g, 0 FROM generate_series(1, %s) g",
                     (ROWS,))
    yield "public.cdc10_busy"
    with psycopg.connect(sales_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.cdc10_busy")


def test_CDC_10_heartbeats_advance_the_slot_while_an_uncaptured_table_is_busy(
        settings, sales_dsn, busy_table):
    with psycopg.connect(sales_dsn) as conn:
        published = conn.execute(
            "SELECT count(*) FROM pg_publication_tables WHERE tablename = 'cdc10_busy'").fetchone()
    assert published == (0,)  # not captured
    capture = start_capture(settings, sales_dsn, "cdc10",
                            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS)
    try:
        with psycopg.connect(sales_dsn, autocommit=True) as conn:
            for _ in range(UPDATES // ROWS):
                conn.execute("UPDATE public.cdc10_busy SET n = n + 1")
            target = lsn_to_int(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
        busy_done = time.monotonic()
        lag_after_work = None
        while True:
            info = slot_info(sales_dsn, capture.slot)
            assert info is not None
            if lag_after_work is None:
                lag_after_work = info.lag_bytes
            if info.confirmed_flush_lsn is not None and info.confirmed_flush_lsn >= target:
                break
            assert time.monotonic() - busy_done < SLOT_ADVANCE_DEADLINE_S, (
                f"slot {capture.slot} stuck at {info.confirmed_flush_lsn}, target {target}")
            time.sleep(0.5)
        elapsed_s = time.monotonic() - busy_done
        print(f"CDC-10: slot passed the busy work's WAL end after {elapsed_s:.1f} s "
              f"(lag right after the work: {lag_after_work} bytes)")
        assert lag_after_work is not None and lag_after_work > 0
    finally:
        stop_capture(capture, sales_dsn)
