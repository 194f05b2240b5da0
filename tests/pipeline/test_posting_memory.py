"""Field case CDC-20 (memory over time), the posting step's share, without Kafka: with the state
table on disk (RocksDB, as the posting worker keeps it) the Python heap does not grow with the
number of documents posted; with the same table in memory it does (so the measurement can fail).
The one-hour soak of the whole pipeline is ``salesledger bench --soak`` (README, Benchmark)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tracemalloc
from collections.abc import MutableMapping
from decimal import Decimal
from pathlib import Path

from rocksdict import Rdict

from salesledger.ledger.model import GoodsReceipt, ReceiptLine
from salesledger.ledger.settings import LedgerSettings
from salesledger.streams.posting import JOURNAL_TOPIC, PostingProcessor
from salesledger.streams.state_store import LedgerStore
from tests.pipeline.test_posting_step import CHART, SERDE, encoded, invoice, payment

ROOT = Path(__file__).resolve().parents[2]
SKUS = 40
CUSTOMERS = 25
WARM_UP = 400
MEASURED = 1_600
#: Heap growth per posted document allowed with the table on disk (bytes). Measured: under 10 B
#: (noise); with the same table in memory ~1.9 KiB for these one-line documents (their pickled
#: values; the worker's earlier in-memory state was ~73 KiB per 20-line document).
DISK_BYTES_PER_DOC_MAX = 256


class DiskTable(MutableMapping):
    """A RocksDB database (rocksdict) as ``MutableMapping[str, bytes]``: the posting table."""

    def __init__(self, path) -> None:  # noqa: ANN001
        self.db = Rdict(str(path))

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        return self.db.get(key, default)

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        value = self.db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value) -> None:  # noqa: ANN001
        self.db[key] = value

    def __delitem__(self, key) -> None:  # noqa: ANN001
        del self.db[key]

    def __iter__(self):  # noqa: ANN204
        return iter(self.db.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.db.keys())

    def keys(self):  # noqa: ANN201
        return self.db.keys()

    def items(self):  # noqa: ANN201
        return self.db.items()


def receipt(number: str, sku: str) -> GoodsReceipt:
    return GoodsReceipt(id=number, number=number, date=dt.date(2026, 3, 2), currency="AZN",
                        supplier="S1", warehouse="W1",
                        lines=(ReceiptLine(sku=sku, qty=Decimal("100000"), unit_cost=Decimal("5.00"),
                                           vat_rate=Decimal("18")),))


def records(count: int, start: int) -> list[bytes]:
    """Invoices over SKUS SKUs and CUSTOMERS customers, a payment every 7th document."""
    out = []
    for n in range(start, start + count):
        lsn = 10_000 + n * 10
        if n % 7 == 6:
            out.append(encoded(payment(f"PAY-{n}", "11.80"), lsn))
        else:
            doc = invoice(f"INV-{n}", "1", "10.00", f"C{n % CUSTOMERS}")
            line = dataclasses.replace(doc.lines[0], sku=f"SKU{n % SKUS}")
            out.append(encoded(dataclasses.replace(doc, lines=(line,)), lsn))
    return out


def heap_growth_per_document(table: MutableMapping) -> tuple[float, PostingProcessor, str, str]:
    """Bytes of Python heap per document after WARM_UP documents: the smaller growth of two
    windows of MEASURED // 2 documents each (a one-time allocation — a lazily filled cache of
    some library, another test's leftovers — lands in one window; a leak per document grows
    both); the processor; the sha256 of the journal entries it produced (in order); the top
    allocation sites of the growth (for the assertion message)."""
    p = PostingProcessor(LedgerStore(table), LedgerSettings(), CHART, source_topic="t.documents",
                         serde=SERDE)
    p.start()
    seq = 0
    journal = hashlib.sha256()
    for n in range(SKUS):
        p.process(seq, b"k", encoded(receipt(f"GR-{n}", f"SKU{n}"), 100 + n))
        seq += 1

    def run(batch: list[bytes]) -> None:
        nonlocal seq
        for value in batch:
            for out in p.process(seq, b"k", value):
                if out.topic == JOURNAL_TOPIC:
                    journal.update(out.value)
            seq += 1
            if seq % 100 == 0:  # the agent drops kept outputs Faust committed past
                p.store.forget_outputs_before(seq)

    half = MEASURED // 2
    tracemalloc.start()
    try:
        run(records(WARM_UP, 0))
        gc.collect()
        first, start = tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()
        run(records(half, WARM_UP))
        gc.collect()
        middle = tracemalloc.get_traced_memory()[0]
        run(records(half, WARM_UP + half))
        gc.collect()
        last, end = tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    sites = "; ".join(str(stat) for stat in end.compare_to(start, "lineno")[:5])
    return min(middle - first, last - middle) / half, p, journal.hexdigest(), sites


def state_digest(p: PostingProcessor) -> str:
    """sha256 of the processor's documents, stock and customers (a fresh process with the same
    ``PYTHONHASHSEED`` pickles them alike)."""
    digest = hashlib.sha256()
    for mapping in (p.state.documents, p.state.stock, p.state.customers):
        for key in sorted(mapping, key=repr):
            digest.update(pickle.dumps((key, mapping[key])))
    return digest.hexdigest()


def measure(kind: str, path: str) -> dict:
    """One measurement (``kind`` ``disk``: the table in RocksDB at ``path``; ``memory``: a dict)
    as JSON-able figures; run in a fresh process by the test."""
    table = DiskTable(path) if kind == "disk" else {}
    growth, p, journal, sites = heap_growth_per_document(table)
    return {"growth": growth, "journal": journal, "state": state_digest(p), "sites": sites,
            "open_items_c3": len(p.state.customers["C3"].open_items)}


def measured_in_fresh_process(kind: str, path) -> dict:  # noqa: ANN001
    """:func:`measure` in its own interpreter: what a worker's heap does, not what earlier
    tests left in this one (a full-suite run once showed a one-time 3.9 MB inside the window)."""
    code = ("import json; from tests.pipeline.test_posting_memory import measure; "
            f"print(json.dumps(measure({kind!r}, {str(path)!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_CDC_20_posting_heap_is_flat_with_the_table_on_disk_and_grows_in_memory(tmp_path):
    disk = measured_in_fresh_process("disk", tmp_path / "ledger.db")
    memory = measured_in_fresh_process("memory", tmp_path / "unused")
    on_disk, in_memory = disk["growth"], memory["growth"]
    print(f"heap per document: table on disk {on_disk:,.0f} B, in memory {in_memory:,.0f} B")
    assert disk["journal"] == memory["journal"], "the same entries whichever table holds the state"
    assert disk["state"] == memory["state"]
    assert disk["open_items_c3"] > 0  # read through from disk
    assert on_disk < DISK_BYTES_PER_DOC_MAX, f"{on_disk:,.0f} B per document; grew at {disk['sites']}"
    assert in_memory > 4 * DISK_BYTES_PER_DOC_MAX, in_memory  # the measurement can fail
