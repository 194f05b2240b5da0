"""Document assembly on the initial snapshot the running Debezium takes (rows without a
transaction block), CDC-11's "snapshot rows do not wait".

The connector has topics of its own (see conftest.start_capture), so everything on them comes
from this snapshot.
"""

from __future__ import annotations

import os
from decimal import Decimal

import psycopg
import pytest

from salesledger.connect import ConnectClient
from salesledger.streams.assembly import DocumentAssembler
from salesledger.streams.cdc import ChangeEventDecoder

from .conftest import save_fixture, start_capture, stop_capture, unique

pytestmark = pytest.mark.stack

_DECODER = ChangeEventDecoder()
_SAVE = os.environ.get("SALESLEDGER_CAPTURE_FIXTURES") == "1"


def test_initial_snapshot_rows_become_documents_without_waiting(settings, sales_dsn):
    number = unique("WO")
    with psycopg.connect(sales_dsn) as conn:
        conn.execute("WITH w AS (INSERT INTO sales.stock_write_offs (number, date, warehouse_code,"
                     " status) VALUES (%s, '2026-03-07', 'W1', 'posted') RETURNING"
                     " stock_write_off_id) INSERT INTO sales.stock_write_off_lines"
                     " (stock_write_off_id, line_no, sku, qty) SELECT stock_write_off_id, n, 'A', n"
                     " FROM w, generate_series(1, 2) AS n", (number,))
    tables = [("sales", "stock_write_offs"), ("sales", "stock_write_off_lines")]
    capture = start_capture(settings, sales_dsn, "snapshot", snapshot_mode="initial", tables=tables)
    reader = capture.reader("stock_write_offs", "stock_write_off_lines", transactions=False,
                            from_start=True)
    try:
        reader.until(lambda rs: any(
            r.value and r.value["payload"]["source"].get("snapshot") == "last" for r in rs))
        records = reader.catch_up()  # the other table's topic may still be behind
    finally:
        reader.close()
        stop_capture(capture, sales_dsn)
    snapshot = [r for r in records if r.value and r.value["payload"]["op"] == "r"]
    assert all(r.value["payload"].get("transaction") is None for r in snapshot)
    header_id = next(r.value["payload"]["after"]["stock_write_off_id"] for r in snapshot
                     if (r.value["payload"]["after"].get("number")) == number)
    if _SAVE:
        save_fixture("snapshot_write_off", [
            r for r in snapshot if r.value["payload"]["after"]["stock_write_off_id"] == header_id])
    # one topic after the other (a legal interleaving); then the agent's periodic flush
    ordered = sorted(snapshot, key=lambda r: r.topic.endswith("lines"))
    assembler = DocumentAssembler()
    out = [d for r in ordered
           for d in assembler.on_change(_DECODER.decode(r.key_bytes, r.value_bytes))]
    out += assembler.flush_snapshot()
    ours = [e for e in out if e.key == f"write_off:{number}"]
    assert [(e.operation, e.snapshot, e.transaction_id) for e in ours] == [("created", True, None)]
    assert [l.qty for l in ours[0].document.lines] == [Decimal("1.000"), Decimal("2.000")]
    assert ConnectClient(settings.connect_url).status(capture.name) is None
