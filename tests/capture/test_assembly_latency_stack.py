"""Figures for the issue's report, measured on the real stack (printed; no timed assertion):

- CDC-to-document latency: from the source commit (``source.ts_ms``) to the moment the
  assembler emits the document, with invoices committed at a steady rate through Debezium and
  read back from Kafka by one consumer (p50 / p99 / max, ms);
- documents/s through assembly: the same decoded records fed again to a fresh assembler as
  fast as it takes them (pure assembly, decoding excluded).

The test asserts what must hold: every invoice comes out exactly once, in commit order.
"""

from __future__ import annotations

import statistics
import threading
import time

import psycopg
import pytest

from salesledger.streams.assembly import DocumentAssembler, DocumentEvent
from salesledger.streams.cdc import ChangeEvent, ChangeEventDecoder, TransactionEvent

from .conftest import unique

pytestmark = [pytest.mark.stack, pytest.mark.slow]

RATE_PER_S = 20
DURATION_S = 15
_DECODER = ChangeEventDecoder()


def _write_steadily(dsn: str, numbers: list[str], stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic()
        for i, number in enumerate(numbers):
            delay = start + i / RATE_PER_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if stop.is_set():
                return
            with conn.transaction():
                invoice_id = conn.execute(
                    "INSERT INTO sales.invoices (number, date, customer_code, warehouse_code,"
                    " status) VALUES (%s, '2026-03-02', 'C1', 'W1', 'posted') RETURNING invoice_id",
                    (number,)).fetchone()[0]
                conn.execute(
                    "INSERT INTO sales.invoice_lines (invoice_id, line_no, sku, qty, unit_price,"
                    " vat_rate) SELECT %s, g, 'SKU-' || g, g, 1.10, 18 FROM generate_series(1, 3) g",
                    (invoice_id,))


def test_cdc_to_document_latency_and_assembly_throughput(capture, sales_dsn):
    reader = capture.reader("invoices", "invoice_lines")
    numbers = [unique("LAT") for _ in range(RATE_PER_S * DURATION_S)]
    wanted = set(numbers)
    stop = threading.Event()
    writer = threading.Thread(target=_write_steadily, args=(sales_dsn, numbers, stop))
    assembler = DocumentAssembler()
    latencies_ms: list[float] = []
    seen: list[DocumentEvent] = []
    decoded: list = []
    consumed = 0
    writer.start()
    try:
        deadline = time.monotonic() + DURATION_S + 180
        while len(seen) < len(numbers):
            assert time.monotonic() < deadline, f"{len(seen)} of {len(numbers)} documents"
            reader.until(lambda rs: len(rs) > consumed, deadline_s=180)
            for record in reader.records[consumed:]:
                event = _DECODER.decode(record.key_bytes, record.value_bytes)
                decoded.append(event)
                if isinstance(event, TransactionEvent):
                    out = assembler.on_transaction(event)
                elif isinstance(event, ChangeEvent):
                    out = assembler.on_change(event)
                else:
                    out = []
                now_ms = time.time() * 1000
                for document in out:
                    if document.document.number in wanted:
                        seen.append(document)
                        commit_ms = document.source.commit_time.timestamp() * 1000
                        latencies_ms.append(now_ms - commit_ms)
            consumed = len(reader.records)
    finally:
        stop.set()
        writer.join()
        reader.close()
    assert sorted(d.document.number for d in seen) == sorted(numbers)
    assert [d.version for d in seen] == sorted(d.version for d in seen)
    assert all(len(d.document.lines) == 3 for d in seen)

    quantiles = statistics.quantiles(latencies_ms, n=100)
    replay = [e for e in decoded if isinstance(e, (ChangeEvent, TransactionEvent))]
    fresh = DocumentAssembler()
    started = time.perf_counter()
    emitted = 0
    for event in replay:
        out = fresh.on_transaction(event) if isinstance(event, TransactionEvent) else fresh.on_change(event)
        emitted += len(out)
    elapsed_s = time.perf_counter() - started
    print(f"\nCDC-to-document latency at {RATE_PER_S} invoices/s (1 header + 3 lines each), "
          f"{len(latencies_ms)} documents: p50 {quantiles[49]:.0f} ms, p99 {quantiles[98]:.0f} ms, "
          f"max {max(latencies_ms):.0f} ms")
    print(f"assembly alone: {emitted} documents from {len(replay)} decoded records in "
          f"{elapsed_s * 1000:.0f} ms = {emitted / elapsed_s:.0f} documents/s")
    assert emitted >= len(numbers)
