"""The assembler with its per-document state on local disk (CDC-20): the same events out as
with plain dicts, every assembly rule still holding when each value is pickled between two
uses, and heap growth per document bounded."""

from __future__ import annotations

import gc
import inspect
import itertools
import re
import tracemalloc

import pytest

import tests.capture.test_assembly_rules as rules
import tests.capture.test_validation_assembly as with_validator
from salesledger.streams.assembly import STATE_REDUCERS, DocumentAssembler
from salesledger.streams.assembly_agent import disk_backed
from salesledger.streams.cdc import UNAVAILABLE, Row
from salesledger.streams.local_state import LocalState
from salesledger.streams.validation import DocumentValidator, MasterData
from tests.capture.assembly_load import comparable, feed_all, transactions

#: Heap growth allowed per document after warm-up, with the state on disk (bytes). Measured
#: 2026-12-08: ~250 B/doc on disk (the last ``applied_xids_max`` transaction ids, bounded at
#: 100,000), ~3,500 B/doc with plain dicts (these fixtures' small rows; the field measured
#: ~30 KiB/doc with real ones).
HEAP_BYTES_PER_DOC_MAX = 1024


@pytest.fixture
def state(tmp_path):
    opened = LocalState.open(tmp_path / "state", reducers=STATE_REDUCERS)
    yield opened
    opened.close(remove=True)


def _on_disk(state: LocalState, cache_entries_max: int):
    validator = DocumentValidator(MasterData())
    a = disk_backed(state, validator, document_cache_entries_max=cache_entries_max,
                    small_cache_entries_max=cache_entries_max)
    a.clock_ms = lambda: rules._TS + 1000
    return a


@pytest.mark.parametrize("cache_entries_max", [1, 4])
def test_same_events_as_with_dicts_while_the_cache_evicts(state, cache_entries_max):
    batches = list(transactions(400))
    expected = feed_all(with_validator.assembler(), batches)
    on_disk = _on_disk(state, cache_entries_max)
    got = feed_all(on_disk, batches)
    kinds = {(type(e).__name__, getattr(e, "operation", None)) for e in expected}
    assert {("DocumentEvent", op) for op in ("created", "changed", "deleted")} <= kinds
    assert ("DocumentRejected", None) in kinds  # returns of invoices that are not there
    assert comparable(got) == comparable(expected)
    assert on_disk._docs.cached_entries <= cache_entries_max
    assert len(on_disk._docs) > 300 and len(on_disk.validator.view.invoices) > 200


def test_row_with_unavailable_value_comes_back_with_the_sentinel_itself(state):
    rows = state.mapping("rows", cache_entries_max=1)
    rows["a"] = Row({"id": 1, "comment": UNAVAILABLE, "qty": None})
    rows["b"] = Row({"id": 2})  # evicts "a": pickled
    back = rows["a"]
    assert back["comment"] is UNAVAILABLE and back.unavailable_fields == {"comment"}
    assert list(back) == ["id", "comment", "qty"] and back["qty"] is None
    assert back == Row({"id": 1, "comment": UNAVAILABLE, "qty": None})


_RULE_TESTS = [f for name, f in sorted(vars(rules).items()) + sorted(vars(with_validator).items())
               if name.startswith("test_") and not inspect.signature(f).parameters
               and re.search(r"(DocumentAssembler|assembler)\(", inspect.getsource(f))]


@pytest.mark.parametrize("rule_test", _RULE_TESTS, ids=lambda f: f"{f.__module__[-20:]}.{f.__name__}")
def test_every_assembly_rule_holds_with_a_one_entry_disk_cache(rule_test, tmp_path, monkeypatch):
    """Each hand-built rule test again, its assemblers' state on disk with a cache of one
    entry: every value is pickled and read back between two uses."""
    states: list[LocalState] = []
    counter = itertools.count()

    class OnDisk(DocumentAssembler):
        def __init__(self, **options):
            opened = LocalState.open(tmp_path / f"s{next(counter)}", reducers=STATE_REDUCERS)
            states.append(opened)
            super().__init__(documents=opened.mapping("documents", cache_entries_max=1),
                             child_parents=opened.mapping("child_parents", cache_entries_max=1),
                             **options)

    monkeypatch.setattr(rules, "DocumentAssembler", OnDisk)
    monkeypatch.setattr(with_validator, "DocumentAssembler", OnDisk)
    try:
        rule_test()
    finally:
        for opened in states:
            opened.close(remove=True)
    assert states, "the rule test built an assembler"


def _heap_bytes_per_doc(assembler: DocumentAssembler, *, warm: int, documents: int) -> float:
    """Traced heap growth per document over ``documents`` fed after ``warm`` (everything
    traced from the start, so values freed from the cache count as freed)."""
    tracemalloc.start()
    try:
        feed_all(assembler, transactions(warm))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        feed_all(assembler, transactions(documents, first=warm + 1))
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / documents
    finally:
        tracemalloc.stop()


def test_CDC_20_heap_growth_per_document_is_bounded_with_the_state_on_disk(state):
    on_disk = _heap_bytes_per_doc(_on_disk(state, 100), warm=1000, documents=3000)
    in_dicts = _heap_bytes_per_doc(with_validator.assembler(), warm=1000, documents=3000)
    assert on_disk < HEAP_BYTES_PER_DOC_MAX, f"{on_disk:.0f} B/doc"
    assert in_dicts > 2 * HEAP_BYTES_PER_DOC_MAX, f"{in_dicts:.0f} B/doc: the bound tells apart"
