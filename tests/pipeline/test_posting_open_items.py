"""A customer's open items are read when the engine names them, not all on every step.

Settled items stay in the state (a later return against a paid invoice, ageing as of a past
day), so a long-standing customer has thousands. The posting worker read every one of them on
each step that touched the customer (~12 µs each: 36.8 ms per invoice at 3,000 items against
1.9 ms for a new customer). Now an invoice reads none of them, a payment allocated oldest first
reads the ones still owing, and the ledger is the same as when every item is read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
from decimal import Decimal

from immutables import Map

from salesledger.ledger.model import Allocation, ReturnLine, SalesReturn
from salesledger.streams import state_store
from salesledger.streams.state_store import ITEM_PREFIX, CustomerHead, LedgerStore, OpenItems
from tests.pipeline.test_posting_step import encoded, invoice, journal, payment, processor, receipt

INVOICES = 300


class CountingTable(dict):
    """A dict table that counts reads of open-item keys (``item:...``)."""

    item_reads = 0

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        if key.startswith(ITEM_PREFIX):
            self.item_reads += 1
        return super().get(key, default)


def history() -> list[bytes]:
    """One customer invoiced INVOICES times, paid oldest first (no allocation), paid with
    explicit allocations, a return against a paid invoice and one against an open one."""
    out = [encoded(receipt("GR-1", "100000", "5.00"), 10)]
    lsn = 100
    for n in range(INVOICES):
        out.append(encoded(invoice(f"INV-{n}", "1", "10.00"), lsn))  # 11.80 gross, C1
        lsn += 10
        if n % 10 == 9:  # pays about the oldest two and a half
            out.append(encoded(payment(f"PAY-{n}", "30.00"), lsn))
            lsn += 10
        if n % 25 == 24:  # pays the newest invoice explicitly
            paid = dataclasses.replace(payment(f"PAYX-{n}", "11.80"),
                                       allocations=(Allocation(document=f"INV-{n}",
                                                               amount=Decimal("11.80")),))
            out.append(encoded(paid, lsn))
            lsn += 10
    for number, against in (("RET-1", "INV-0"), ("RET-2", f"INV-{INVOICES - 2}")):
        out.append(encoded(SalesReturn(id=number, number=number, date=dt.date(2026, 3, 5),
                                       currency="AZN", customer="C1", warehouse="W1",
                                       against=against,
                                       lines=(ReturnLine(sku="SKU1", qty=Decimal("1")),)), lsn))
        lsn += 10
    return out


def every_item_read(self: LedgerStore, customer: str, head) -> object:  # noqa: ANN001
    """The store's customer read before open items were read through: all of them, as a Map."""
    prefix = f"{ITEM_PREFIX}{customer}\x1f"
    items = {number: state_store._value_of(self.table.get(prefix + number))  # noqa: SLF001
             for number in head.items}
    return dataclasses.replace(head.account, open_items=Map(items))


def run(records: list[bytes], table: dict) -> tuple[dict, object]:
    p = processor(table)
    outputs = [o for seq, value in enumerate(records) for o in p.process(seq, b"k", value)]
    return journal(outputs), p


def test_the_ledger_is_the_same_as_when_every_item_is_read(monkeypatch):
    records = history()
    lazy_journal, lazy = run(records, {})
    with monkeypatch.context() as patch:
        patch.setattr(LedgerStore, "_customer", every_item_read)
        eager_journal, eager = run(records, {})
    assert lazy_journal == eager_journal and len(lazy_journal) > INVOICES
    items = lazy.state.customers["C1"].open_items
    assert isinstance(items, OpenItems)
    assert dict(items.items()) == dict(eager.state.customers["C1"].open_items.items())
    owing = {number for number, item in items.items() if item.open > 0}
    assert items.owing == owing and 0 < len(owing) < INVOICES  # some paid, some not


def test_a_step_reads_only_the_items_it_needs():
    table = CountingTable()
    _, p = run(history(), table)
    head = pickle.loads(pickle.loads(table["customer:C1"])[1])
    assert len(head.items) == INVOICES and 0 < len(head.owing) < INVOICES
    seq = len(history())

    def reads(record: bytes) -> int:
        nonlocal seq
        before = table.item_reads
        assert journal(p.process(seq, b"k", record))
        seq += 1
        return table.item_reads - before

    assert reads(encoded(invoice("INV-NEW", "1", "10.00"), 900_000)) == 0
    owing = len(pickle.loads(pickle.loads(table["customer:C1"])[1]).owing)
    assert reads(encoded(payment("PAY-NEW", "5.00"), 900_010)) == owing  # oldest first: the owing
    # INV-NEW was settled at once by C1's advance (RET-1 against a paid invoice): allocate to
    # an invoice still owing, within its open amount: that item at most is read (none here:
    # choosing it read it into this step's cache)
    target = max(p.state.customers["C1"].open_items.owing_values(), key=lambda item: item.open)
    allocated = dataclasses.replace(payment("PAY-ONE", "1.00"), allocations=(
        Allocation(document=target.document, amount=Decimal("1.00")),))
    assert target.open >= Decimal("1.00")
    assert reads(encoded(allocated, 900_020)) <= 1


def test_a_head_written_before_owing_existed_is_read_and_rewritten():
    records = history()
    table: dict = {}
    run(records[:-3], table)
    seq, after, before = pickle.loads(table["customer:C1"])
    head = pickle.loads(after)
    old = CustomerHead(head.account, head.items)  # no owing: as earlier versions wrote it
    table["customer:C1"] = pickle.dumps((seq, pickle.dumps(old), before))
    resumed = processor(table)
    out = [o for n, value in enumerate(records[-3:], start=len(records) - 3)
           for o in resumed.process(n, b"k", value)]
    full_journal, full = run(records, {})
    assert set(journal(out)) <= set(full_journal)
    assert resumed.state.customers["C1"].open_items == full.state.customers["C1"].open_items
    rewritten = pickle.loads(pickle.loads(table["customer:C1"])[1])
    assert rewritten.owing == full.state.customers["C1"].open_items.owing
