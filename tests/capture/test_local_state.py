"""The disk-backed mapping of :mod:`salesledger.streams.local_state` (RocksDB on a temporary
directory): write-back on eviction and flush, in-place mutation, delete, iteration, the wipe
at open and the memory options actually given to RocksDB."""

from __future__ import annotations

import re

import pytest

from salesledger.streams.local_state import (
    BLOCK_CACHE_BYTES,
    WRITE_BUFFER_BYTES,
    WRITE_BUFFERS_MAX,
    LocalState,
)


@pytest.fixture
def state(tmp_path):
    opened = LocalState.open(tmp_path / "state")
    yield opened
    opened.close(remove=True)


def test_evicted_values_are_written_back_and_read_again(state):
    docs = state.mapping("docs", cache_entries_max=2)
    for n in range(10):
        docs[("invoice", n)] = {"n": n, "lines": [n] * 3}
    assert docs.cached_entries == 2
    assert [docs[("invoice", n)]["n"] for n in range(10)] == list(range(10))
    assert docs.cached_entries == 2 and len(docs) == 10


def test_mutation_in_place_survives_eviction(state):
    docs = state.mapping("docs", cache_entries_max=2)
    docs[("invoice", 1)] = {"children": {}}
    docs[("invoice", 1)]["children"]["line-1"] = "A"  # mutated in the cache
    held = docs[("invoice", 1)]
    for n in range(2, 6):  # evicts invoice 1
        docs[("invoice", n)] = {"children": {}}
    again = docs[("invoice", 1)]
    assert again == {"children": {"line-1": "A"}}
    assert again is not held  # a fresh copy from disk: callers must not keep values


def test_flush_writes_cached_values_without_evicting_them(state):
    docs = state.mapping("docs", cache_entries_max=10)
    docs["a"] = [1]
    docs["a"].append(2)
    docs.flush()
    docs._cache.clear()  # forget the cache without writing: only what flush wrote is left
    assert docs["a"] == [1, 2]
    docs["a"].append(3)
    docs._cache.clear()  # an unflushed mutation of a cached value is not on disk yet
    assert docs["a"] == [1, 2]


def test_delete_pop_and_contains_in_cache_and_on_disk(state):
    docs = state.mapping("docs", cache_entries_max=1)
    docs["on-disk"] = 1
    docs["cached"] = 2  # evicts "on-disk"
    assert "on-disk" in docs and "cached" in docs and "never" not in docs
    del docs["on-disk"]
    assert docs.pop("cached") == 2
    assert "on-disk" not in docs and "cached" not in docs and len(docs) == 0
    with pytest.raises(KeyError):
        del docs["on-disk"]
    with pytest.raises(KeyError):
        docs.pop("never")
    assert docs.pop("never", None) is None and docs.get("never", 7) == 7
    docs["cached"] = 3  # written again after a delete
    docs["other"] = 4
    assert docs["cached"] == 3


def test_iteration_lists_cached_and_evicted_keys_of_this_mapping_only(state):
    a = state.mapping("a", cache_entries_max=3)
    ab = state.mapping("ab", cache_entries_max=3)  # a name that starts like the other one
    for n in range(8):
        a[("sales.invoice_lines", n)] = n
    ab["x"] = "y"
    assert sorted(a) == [("sales.invoice_lines", n) for n in range(8)]
    assert dict(a.items()) == {("sales.invoice_lines", n): n for n in range(8)}
    assert list(ab) == ["x"] and len(ab) == 1
    a.clear()
    assert len(a) == 0 and list(ab) == ["x"]


def test_open_wipes_the_directory_and_close_can_remove_it(tmp_path):
    path = tmp_path / "state"
    first = LocalState.open(path)
    first.mapping("docs")["k"] = "v"
    first.flush()
    first.close()
    second = LocalState.open(path)  # a restart: the state is rebuilt, never read back
    assert "k" not in second.mapping("docs") and len(second.mapping("docs")) == 0
    second.close(remove=True)
    assert not path.exists()
    with pytest.raises(AssertionError):
        second.mapping("docs")["k"] = "v"


def test_rocksdb_is_given_the_small_memory_figures(state):
    options_files = sorted(state.path.glob("OPTIONS-*"))
    assert options_files, "RocksDB writes the options it runs with"
    text = options_files[-1].read_text()
    assert re.search(rf"^\s*write_buffer_size={WRITE_BUFFER_BYTES}$", text, re.M)
    assert re.search(rf"^\s*max_write_buffer_number={WRITE_BUFFERS_MAX}$", text, re.M)
    assert state._db.property_int_value("rocksdb.block-cache-capacity") == BLOCK_CACHE_BYTES
