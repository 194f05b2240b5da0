"""Off-heap state for a stream worker: mappings kept on local disk (RocksDB, via ``rocksdict``)
behind a small in-memory write-back LRU cache (field case CDC-20: a worker's resident memory
stays flat at steady load).

One :class:`LocalState` is one RocksDB directory owned by one worker process; it hands out
named :class:`DiskMapping` s (``state.mapping("docs", cache_entries_max=1000)``) that share
that database, each under its own key prefix, so the process pays for one write buffer and
one block cache whatever the number of mappings.

The state is a cache of what the worker rebuilds by itself, not a store: RocksDB's write-ahead
log is off and :meth:`LocalState.open` wipes the directory, so nothing survives a restart or
a crash — by design (the assembly agent rebuilds its state by replaying the CDC topics on every
start, see :mod:`salesledger.streams.assembly_agent`).

Values and keys are pickled (protocol 5); ``reducers`` (type -> ``copyreg``-style reduce
function, e.g. :data:`salesledger.streams.assembly.STATE_REDUCERS`) teach it types that do
not pickle by themselves, without touching the global ``copyreg`` table. Keys must pickle
deterministically: tuples of
``str`` / ``int`` / ``None`` do. Keys that are equal in Python but pickle differently
(``1``, ``1.0``, ``True``; a ``Decimal('1')`` and a ``Decimal('1.0')``) are DIFFERENT keys
here; the callers use primary-key values of one column type, so this does not arise.

Values taken from a :class:`DiskMapping` may be mutated in place (the assembler does): the
cache writes every entry it holds back to disk when it evicts it and on :meth:`DiskMapping.
flush`, so a mutation is never lost; an object evicted while the caller still holds it is no
longer the mapping's (a later read returns a fresh copy) — callers must not keep values across
calls that may evict (any access to the same mapping).

Memory (set explicitly in :func:`rocksdb_options`): write buffer (memtable) 4 MiB, at most 2
of them; block cache 8 MiB (LRU, shared by all mappings of the state, index and filter blocks
charged to it); so RocksDB itself holds about 16 MiB at most, plus per-open-file table
readers (``max_open_files`` 64). The Python side holds at most ``cache_entries_max`` values
per mapping.

Not thread-safe (one agent coroutine uses it).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, MutableMapping, TypeVar

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteOptions

K = TypeVar("K")
V = TypeVar("V")

_PICKLE_PROTOCOL = 5
WRITE_BUFFER_BYTES = 4 * 1024 * 1024
WRITE_BUFFERS_MAX = 2
BLOCK_CACHE_BYTES = 8 * 1024 * 1024
OPEN_FILES_MAX = 64
#: Default bound of a mapping's in-memory cache (entries).
CACHE_ENTRIES_MAX = 1000
_MISSING = object()
Reducers = Mapping[type, Callable[[Any], tuple]]


class _Codec:
    """Pickles values with extra reducers (a per-pickler dispatch table)."""

    def __init__(self, reducers: Reducers) -> None:
        self._table = {**copyreg.dispatch_table, **reducers} if reducers else None

    def dumps(self, value: Any) -> bytes:
        if self._table is None:
            return pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=_PICKLE_PROTOCOL)
        pickler.dispatch_table = self._table
        pickler.dump(value)
        return buffer.getvalue()

    loads = staticmethod(pickle.loads)


def rocksdb_options() -> Options:
    """RocksDB options with small, explicit memory figures (module docstring): raw byte keys
    and values, write buffer :data:`WRITE_BUFFER_BYTES` x :data:`WRITE_BUFFERS_MAX`, LRU block
    cache :data:`BLOCK_CACHE_BYTES`, :data:`OPEN_FILES_MAX` open files, a 10-bit bloom filter
    per key (a lookup of an absent key, the common case for a new document, reads no block)."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(WRITE_BUFFERS_MAX)
    options.set_max_open_files(OPEN_FILES_MAX)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    table.set_cache_index_and_filter_blocks(True)
    table.set_bloom_filter(10, False)  # a miss (a new key: most lookups) skips the files
    options.set_block_based_table_factory(table)
    return options


class LocalState:
    """One worker's RocksDB directory and the :class:`DiskMapping` s in it.

    Use :meth:`open` (wipes ``path``); :meth:`close` flushes nothing to keep (the state is a
    cache) and, with ``remove=True``, deletes the directory.
    """

    def __init__(self, path: Path, db: Rdict, codec: _Codec) -> None:
        self.path = path
        self._db = db
        self._codec = codec
        self._mappings: dict[str, DiskMapping] = {}
        self._closed = False

    @classmethod
    def open(cls, path: str | Path, *, reducers: Reducers | None = None) -> "LocalState":
        """A fresh, empty state in directory ``path`` (removed first if it exists; parents
        are created); values pickle with ``reducers`` (type -> reduce function) added.

        Raises:
            OSError: the directory cannot be removed or created; rocksdict's exception when
                RocksDB cannot open it (e.g. another process holds its lock).
        """
        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        db = Rdict(str(path), rocksdb_options())
        writes = WriteOptions()
        writes.disable_wal = True  # a cache: nothing to recover after a crash
        db.set_write_options(writes)
        return cls(path, db, _Codec(reducers or {}))

    def mapping(self, name: str, *, cache_entries_max: int = CACHE_ENTRIES_MAX) -> "DiskMapping":
        """The mapping called ``name`` (created empty on first use; names must not contain
        NUL). ``cache_entries_max`` (>= 1): values kept in memory."""
        assert not self._closed, "state is closed"
        assert name and "\x00" not in name, f"bad mapping name {name!r}"
        if name not in self._mappings:
            self._mappings[name] = DiskMapping(self._db, name.encode() + b"\x00",
                                               cache_entries_max=cache_entries_max,
                                               codec=self._codec)
        return self._mappings[name]

    def flush(self) -> None:
        """Write every mapping's cached values to RocksDB."""
        for mapping in self._mappings.values():
            mapping.flush()

    def close(self, *, remove: bool = False) -> None:
        """Close the database (idempotent); with ``remove`` delete its directory too."""
        if not self._closed:
            self._closed = True
            for mapping in self._mappings.values():
                mapping._closed = True
            self._db.close()
        if remove and self.path.exists():
            shutil.rmtree(self.path)


class DiskMapping(MutableMapping[K, V]):
    """A ``MutableMapping`` whose values live pickled in RocksDB, with an LRU write-back cache
    of at most ``cache_entries_max`` values (see the module docstring for the rules).

    Costs: a cache hit is a dict operation; a miss reads and unpickles one value; an eviction
    pickles and writes one (every evicted entry is written: in-place mutation is not tracked).
    ``len`` and iteration flush the cache and scan the mapping's keys on disk (O(n)): meant for
    tests and diagnostics, not the per-record path. Iteration order is the pickled keys' byte
    order, not insertion order.

    Raises ``KeyError`` as a dict does; ``AssertionError`` after :meth:`LocalState.close`.
    """

    def __init__(self, db: Rdict, prefix: bytes, *, cache_entries_max: int,
                 codec: _Codec | None = None) -> None:
        assert cache_entries_max >= 1, "the cache holds at least one entry"
        self._db = db
        self._codec = codec or _Codec({})
        self._prefix = prefix
        self.cache_entries_max = cache_entries_max
        self._cache: OrderedDict[bytes, tuple[Any, Any]] = OrderedDict()  # disk key -> (k, v)
        self._closed = False

    def _disk_key(self, key: Any) -> bytes:
        return self._prefix + pickle.dumps(key, protocol=_PICKLE_PROTOCOL)

    def _remember(self, disk_key: bytes, key: Any, value: Any) -> None:
        self._cache[disk_key] = (key, value)
        self._cache.move_to_end(disk_key)
        while len(self._cache) > self.cache_entries_max:
            old_key, (_, old_value) = self._cache.popitem(last=False)
            self._db.put(old_key, self._codec.dumps(old_value))

    def __getitem__(self, key: K) -> V:
        assert not self._closed, "state is closed"
        disk_key = self._disk_key(key)
        cached = self._cache.get(disk_key)
        if cached is not None:
            self._cache.move_to_end(disk_key)
            return cached[1]
        raw = self._db.get(disk_key)
        if raw is None:
            raise KeyError(key)
        value = self._codec.loads(raw)
        self._remember(disk_key, key, value)
        return value

    def get(self, key: K, default: Any = None) -> Any:
        """The value of ``key`` (cached from now on), or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: K, value: V) -> None:
        assert not self._closed, "state is closed"
        self._remember(self._disk_key(key), key, value)

    def __delitem__(self, key: K) -> None:
        if self.pop(key, _MISSING) is _MISSING:
            raise KeyError(key)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value; ``default`` when absent (``KeyError`` when no
        default is given)."""
        assert not self._closed, "state is closed"
        disk_key = self._disk_key(key)
        cached = self._cache.pop(disk_key, None)
        raw = self._db.get(disk_key)
        if raw is not None:
            self._db.delete(disk_key)
        if cached is not None:
            return cached[1]
        if raw is not None:
            return self._codec.loads(raw)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __contains__(self, key: object) -> bool:
        assert not self._closed, "state is closed"
        disk_key = self._disk_key(key)
        return disk_key in self._cache or self._db.get(disk_key) is not None

    def flush(self) -> None:
        """Write every cached value to RocksDB (they stay cached)."""
        assert not self._closed, "state is closed"
        for disk_key, (_, value) in self._cache.items():
            self._db.put(disk_key, self._codec.dumps(value))

    def _disk_keys(self) -> Iterator[bytes]:
        for disk_key in self._db.keys(from_key=self._prefix):
            if not disk_key.startswith(self._prefix):
                return
            yield disk_key

    def __iter__(self) -> Iterator[K]:
        self.flush()
        for disk_key in list(self._disk_keys()):
            yield pickle.loads(disk_key[len(self._prefix):])

    def __len__(self) -> int:
        self.flush()
        return sum(1 for _ in self._disk_keys())

    def clear(self) -> None:
        """Remove every entry of this mapping."""
        self._cache.clear()
        for disk_key in list(self._disk_keys()):
            self._db.delete(disk_key)

    @property
    def cached_entries(self) -> int:
        """Values held in memory now (at most ``cache_entries_max``)."""
        return len(self._cache)


__all__ = ["BLOCK_CACHE_BYTES", "CACHE_ENTRIES_MAX", "DiskMapping", "LocalState",
           "WRITE_BUFFER_BYTES", "WRITE_BUFFERS_MAX", "rocksdb_options"]
