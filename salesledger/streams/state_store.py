"""The posting stage's state in one key-value table, written so a crash never leaves it torn.

The engine's :class:`~salesledger.ledger.state.LedgerState` is cross-document (FIFO layers per
SKU, open items per customer), and one document changes several of its entries at once. The
posting worker keeps it in ONE Faust table (``ledger``, memory store, a one-partition changelog
topic): Kafka keeps one partition's records in order and the idempotent producer leaves no gaps,
so after ``kill -9`` the changelog holds a *prefix* of the writes. The only damage a prefix can
do is to cut the writes of the last step (one document or period action) in half. Each step is
therefore written as:

1. every changed entry as ``(seq, new value, old value)`` (each value pickled) — ``seq`` is the step's offset on the
   documents topic, ``old value`` the entry before the step (undo image);
2. the step's outputs (journal entries, movements, ... as encoded Kafka records) under
   ``out:<seq>`` (and ``out:<seq>+1``, ``+2``, ... when they exceed
   :data:`OUTPUT_CHUNK_BYTES_MAX`: a release that posts a thousand held documents), so a
   re-delivered step re-emits exactly what it produced (CDC-09, CDC-16);
3. the commit marker ``meta:applied = seq``, last.

:meth:`LedgerStore.load` (after changelog recovery) reads the table once, streaming: an entry
whose ``seq`` is above the marker belongs to a step that did not finish and is rolled back to its
undo image (written back to the table). Only the last step can be unfinished (steps run one at a
time, each ends with its marker), and the undo image of such an entry is the value after an
earlier, finished step.

**Memory does not grow with history (field case CDC-20).** The state :meth:`LedgerStore.load`
returns keeps only the small, bounded parts in memory (held queue, lock, rates); its
``documents``, ``stock`` and ``customers`` are :class:`TableMap` views that read a key from the
table when the engine asks for it (unpickled once per step, cached for that step only), with the
step's changes in a copy-on-write overlay. After a step is saved, :meth:`LedgerStore.settle`
drops the overlay and the cache: the table is the state. With the Faust table on RocksDB
(posting_agent) the state is on local disk; memory holds one step's working set. (Before, the
whole state and a pickled copy of every value lived in memory: ~73 KiB per posted document, the
posting worker's RSS grew 47.7 MiB/min in a one-hour soak at 10 documents/s.)

Keys: ``document:<type>:<number>``, ``stock:<sku>@<warehouse>``, ``customer:<id>`` (the engine's
``PostingResult.touched`` names; a customer's account without its open items, with the numbers of
its open items and of those still owing: :class:`CustomerHead`), one key per open item
``item:<customer>\x1f<number>`` (a customer may have thousands: settled items stay; they are read
one by one when the engine names them, :class:`OpenItems`), one key per held document
``held:<document key>`` (the engine's ``held`` name; the queue may hold thousands: as ONE value it
grew past the broker's message size, and a changelog write the broker refuses is a state that is
no longer durable), and whole small mappings ``locks``, ``rates``. Tables written by earlier versions
(one ``held`` value; customer headers without their item numbers) are converted by
:meth:`LedgerStore.load`.
Values are pickled (trusted: only this process writes the changelog). Pure: the table is any
``MutableMapping[str, bytes]``.
"""

from __future__ import annotations

import copyreg
import dataclasses
import operator
import pickle
from collections import deque
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Mapping, MutableMapping

from immutables import Map

from salesledger.ledger.state import LedgerState

APPLIED_KEY = "meta:applied"
OUTPUT_PREFIX = "out:"
ITEM_PREFIX = "item:"
HELD_PREFIX = "held:"
_SEP = "\x1f"
_NO_ITEMS = Map()
#: Outputs kept for re-emission, at most (older ones are dropped once Faust committed past
#: them; this bound only guards memory if commits stall).
OUTPUTS_KEPT_MAX = 50_000
#: Bytes of encoded outputs per ``out:`` value, about (one output is never split): every value
#: stays well below the broker's message size (1 MiB by default).
OUTPUT_CHUNK_BYTES_MAX = 256 * 1024
#: Bytes of one table value, at most: below the broker's message size (``message.max.bytes``,
#: 1 MiB by default). A bigger one would be refused by the broker after the step went on;
#: :meth:`LedgerStore.save` refuses it first (:class:`StateTooLarge`), writing nothing.
VALUE_BYTES_MAX = 900 * 1024
_ABSENT = "__absent__"
_WHOLE = ("locks", "rates")
_LEGACY_HELD = "held"  # the whole held queue as one value (tables written before HELD_PREFIX)


def _fields_of(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _rebuild(cls: type, values: tuple) -> Any:
    obj = object.__new__(cls)
    for name, value in zip(_fields_of_cached[cls], values):
        object.__setattr__(obj, name, value)
    return obj


_fields_of_cached: dict[type, tuple[str, ...]] = {}


def _register_fast_pickling() -> None:
    """Pickle the engine's frozen slotted dataclasses as (class, field values): the default
    path (``dataclasses._dataclass_getstate``) recomputes the field list per object and was
    the posting stage's largest cost. Same bytes in, same objects out."""
    from salesledger.ledger import model, state

    for module in (model, state):
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) \
                    and value.__module__ == module.__name__ and hasattr(value, "__slots__"):
                names = _fields_of(value)
                _fields_of_cached[value] = names
                copyreg.pickle(value, _reducer(names))


def _reducer(names: tuple[str, ...]):  # noqa: ANN202
    """``obj -> (_rebuild, (class, field values))``; the values are read by one C-level
    ``attrgetter`` call (a generator of ``getattr`` per field cost a third of the pickling)."""
    if len(names) == 1:
        get_one = operator.attrgetter(names[0])
        return lambda obj: (_rebuild, (type(obj), (get_one(obj),)))
    get = operator.attrgetter(*names) if names else (lambda obj: ())
    return lambda obj: (_rebuild, (type(obj), get(obj)))


_register_fast_pickling()


def _output_key(seq: int, chunk: int) -> str:
    return f"{OUTPUT_PREFIX}{seq}" if chunk == 0 else f"{OUTPUT_PREFIX}{seq}+{chunk}"


def _chunks(outputs: list[Any]) -> list[list[Any]]:
    """``outputs`` in consecutive pieces of about :data:`OUTPUT_CHUNK_BYTES_MAX` (at least one,
    maybe empty)."""
    chunks: list[list[Any]] = [[]]
    size = 0
    for out in outputs:
        out_bytes = len(out.key or b"") + len(out.value or b"") + 64 + \
            sum(len(name) + len(value or b"") for name, value in out.headers)
        if chunks[-1] and size + out_bytes > OUTPUT_CHUNK_BYTES_MAX:
            chunks.append([])
            size = 0
        chunks[-1].append(out)
        size += out_bytes
    return chunks


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class TornState(AssertionError):
    """The stored state contradicts itself beyond what one unfinished step explains (a bug)."""


class StateTooLarge(ValueError):
    """A step would write a value above :data:`VALUE_BYTES_MAX` (one document of thousands of
    lines); nothing was written."""


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerHead:
    """The table value of ``customer:<id>``: the account without its open items (``account``,
    its ``open_items`` empty), the numbers of its open items (``items``, each stored under
    ``item:<id>\x1f<number>``), so a customer is read without scanning the table, and the
    numbers of those still owing (``owing``: ``open`` > 0), so a payment allocated oldest first
    reads those only. Heads written before ``owing`` existed have none: computed on first read."""

    account: Any
    items: tuple[str, ...]
    owing: frozenset[str] | None = None


class _ItemsBase:
    """What every version of one customer's :class:`OpenItems` shares within a step: the
    stored numbers (in order), the loader and the cache of items read."""

    __slots__ = ("numbers", "load", "cache")

    def __init__(self, numbers: tuple[str, ...], load: Callable[[str], Any]) -> None:
        self.numbers = dict.fromkeys(numbers)
        self.load = load
        self.cache: dict[str, Any] = {}

    def get(self, number: str) -> Any:
        try:
            return self.cache[number]
        except KeyError:
            item = self.cache[number] = self.load(number)
            return item


class OpenItems(Mapping):
    """A customer's open items (``CustomerAccount.open_items``) read through from the table:
    an item is read (and unpickled) when the engine names it, so a step costs the same whether
    the customer has ten items or ten thousand (before: every item of the customer was read on
    each step, ~12 µs per item — 36.8 ms per invoice for a customer with 3,000). Changes go
    to a copy-on-write overlay (``set``, the ``immutables.Map`` call the engine uses); the
    numbers still owing are kept (:meth:`owing_values`, ``CustomerAccount.owing_items``).
    ``values()``/``items()`` read every item (reports, tests). Pickles as an ``immutables.Map``
    of all items."""

    __slots__ = ("_base", "_overlay", "_owing")

    def __init__(self, base: _ItemsBase, owing: frozenset[str],
                 overlay: Map = _NO_ITEMS) -> None:
        self._base = base
        self._overlay = overlay
        self._owing = owing

    def get(self, number: Any, default: Any = None) -> Any:
        item = self._overlay.get(number, _MISSING)
        if item is not _MISSING:
            return item
        if number in self._base.numbers:
            return self._base.get(number)
        return default

    def __getitem__(self, number: Any) -> Any:
        item = self.get(number, _MISSING)
        if item is _MISSING:
            raise KeyError(number)
        return item

    def __contains__(self, number: object) -> bool:
        return number in self._overlay or number in self._base.numbers

    def __iter__(self) -> Iterator[str]:
        yield from self._base.numbers
        for number in self._overlay:
            if number not in self._base.numbers:
                yield number

    def __len__(self) -> int:
        return len(self._base.numbers) + sum(1 for n in self._overlay if n not in self._base.numbers)

    def __repr__(self) -> str:
        return f"OpenItems({len(self)} items, {len(self._owing)} owing, {len(self._overlay)} changed)"

    def __reduce__(self) -> tuple:
        return (Map, (dict(self.items()),))

    def set(self, number: str, item: Any) -> "OpenItems":
        owes, listed = item.open > 0, number in self._owing
        owing = self._owing if owes == listed else \
            self._owing | {number} if owes else self._owing - {number}
        return OpenItems(self._base, owing, self._overlay.set(number, item))

    @property
    def owing(self) -> frozenset[str]:
        """Numbers of the items with ``open`` > 0."""
        return self._owing

    def owing_values(self) -> list[Any]:
        """The items with ``open`` > 0 (read from the table if not read yet)."""
        return [self[number] for number in self._owing]

    def changes_since(self, before: Mapping) -> list[tuple[str, Any, Any]] | None:
        """``(number, item before or _ABSENT, item now)`` of each item changed since ``before``
        (an earlier version of the same customer in this step), or None when ``before`` is not
        one (compare all items then)."""
        if not isinstance(before, OpenItems) or before._base is not self._base:
            return None
        return [(number, before.get(number, _ABSENT), item)
                for number, item in self._overlay.items()
                if before._overlay.get(number, _MISSING) is not item]


# ---- the state read through from the table ------------------------------------------------------


class _Reader:
    """Reads one kind of state value from ``table`` (``prefix`` + encoded key), unpickled once
    and cached until :meth:`clear` (one step: the engine reads a position several times, and
    the old and new state of a step must return the *same* object for an unchanged key)."""

    __slots__ = ("table", "prefix", "encode", "decode_key", "build", "cache")

    def __init__(self, table: MutableMapping[str, bytes], prefix: str,
                 encode: Callable[[Any], str], decode_key: Callable[[str], Any],
                 build: Callable[[Any, Any], Any] | None = None) -> None:
        self.table = table
        self.prefix = prefix
        self.encode = encode
        self.decode_key = decode_key
        self.build = build  # (key, stored value) -> state value (customers: with their items)
        self.cache: dict[Any, Any] = {}

    def load(self, key: Any) -> Any:
        """The value of ``key`` (``_ABSENT`` when the table has none)."""
        try:
            return self.cache[key]
        except KeyError:
            pass
        value = _value_of(self.table.get(self.prefix + self.encode(key)))
        if value != _ABSENT and self.build is not None:
            value = self.build(key, value)
        self.cache[key] = value
        return value

    def keys(self) -> Iterator[Any]:
        """Every key of this kind in the table (a full scan: reports and tests, not the engine)."""
        for table_key in list(_keys_of(self.table)):
            if table_key.startswith(self.prefix):
                yield self.decode_key(table_key[len(self.prefix):])

    def clear(self) -> None:
        self.cache.clear()


def _value_of(raw: bytes | None) -> Any:
    """The value a finished step left in a ``(seq, after, before)`` table entry."""
    if raw is None:
        return _ABSENT
    return pickle.loads(pickle.loads(raw)[1])


def _keys_of(table: MutableMapping[str, bytes]) -> Iterable[str]:
    keys = getattr(table, "keys", None)
    return keys() if keys is not None else (key for key, _ in table.items())


class TableMap(Mapping):
    """One mapping of :class:`LedgerState` (``documents``, ``stock`` or ``customers``) read
    through from the state table, with changes in a copy-on-write overlay: the subset of
    ``immutables.Map``'s interface the engine uses (``get``, ``[]``, ``in``, ``set``,
    ``delete``, ``mutate``), each change returning a new map that shares the table. Iterating
    or ``len`` scans the table (reports and tests; the engine only reads keys it names)."""

    __slots__ = ("_reader", "_overlay")

    def __init__(self, reader: _Reader, overlay: Map = _NO_ITEMS) -> None:
        self._reader = reader
        self._overlay = overlay

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._overlay.get(key, _MISSING)
        if value is _MISSING:
            value = self._reader.load(key)
        return default if value == _ABSENT else value

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[Any]:
        for key, value in self._overlay.items():
            if value != _ABSENT:
                yield key
        for key in self._reader.keys():
            if key not in self._overlay and self._reader.load(key) != _ABSENT:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"TableMap({self._reader.prefix!r}, {len(self._overlay)} changed)"

    def set(self, key: Any, value: Any) -> "TableMap":
        return TableMap(self._reader, self._overlay.set(key, value))

    def delete(self, key: Any) -> "TableMap":
        if key not in self:
            raise KeyError(key)
        return TableMap(self._reader, self._overlay.set(key, _ABSENT))

    def mutate(self) -> "_TableMapMutation":
        return _TableMapMutation(self)

    @property
    def changed(self) -> bool:
        """Whether this map differs from the table (changes not saved yet)."""
        return len(self._overlay) > 0


class _TableMapMutation:
    """``with table_map.mutate() as out: out[key] = value; new = out.finish()``."""

    def __init__(self, base: TableMap) -> None:
        self._base = base
        self._mutation = base._overlay.mutate()  # noqa: SLF001

    def __setitem__(self, key: Any, value: Any) -> None:
        self._mutation[key] = value

    def __enter__(self) -> "_TableMapMutation":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def finish(self) -> TableMap:
        return TableMap(self._base._reader, self._mutation.finish())  # noqa: SLF001


_MISSING = object()


def _stock_key(key: tuple[str, str]) -> str:
    return f"{key[0]}@{key[1]}"


def _stock_of(text: str) -> tuple[str, str]:
    sku, _, warehouse = text.rpartition("@")
    return (sku, warehouse)


def _same(value: Any) -> Any:
    return value


# ---- diff of two states -------------------------------------------------------------------------


def _get(state: LedgerState, key: str) -> Any:
    kind, _, rest = key.partition(":")
    if kind == "document":
        return state.documents.get(rest, _ABSENT)
    if kind == "stock":
        return state.stock.get(_stock_of(rest), _ABSENT)
    if kind == "customer":
        return state.customers.get(rest, _ABSENT)
    if key == "locks":
        return state.locked_through
    if key == "rates":
        return dict(state.rates)
    raise KeyError(f"unknown state key {key!r}")


def _pieces(old: LedgerState, new: LedgerState, keys: list[str]) -> list[tuple[str, Any, Any]]:
    """(table key, before, after) of each changed piece. A customer is stored as its head
    (:class:`CustomerHead`) plus one entry per open item (``item:<id>\x1f<number>``), so a step
    writes the items it changed, not all of a customer's open items."""
    out = []
    for key in keys:
        if key == "held":
            out.extend(_held_pieces(old.held, new.held))
            continue
        if not key.startswith("customer:"):
            out.append((key, _get(old, key), _get(new, key)))
            continue
        customer = key[len("customer:"):]
        before, after = old.customers.get(customer), new.customers.get(customer)
        if before is after:
            continue
        items_before = before.open_items if before is not None else _NO_ITEMS
        items_after = after.open_items if after is not None else _NO_ITEMS
        changes = _item_changes(items_before, items_after)
        same_head = (before is not None and after is not None and before.advances is after.advances
                     and before.customer == after.customer
                     and all(old is not _ABSENT and new is not _ABSENT for _, old, new in changes)
                     and _same_owing(items_before, items_after))
        if not same_head:
            out.append((key, _head(before), _head(after)))
        prefix = f"{ITEM_PREFIX}{customer}{_SEP}"
        out.extend((prefix + number, old, new) for number, old, new in changes)
    return out


def _item_changes(before: Mapping, after: Mapping) -> list[tuple[str, Any, Any]]:
    """``(number, before or _ABSENT, after or _ABSENT)`` of each open item that differs."""
    if before is after:
        return []
    if isinstance(after, OpenItems):
        changes = after.changes_since(before)
        if changes is not None:
            return changes
    out = [(number, before.get(number, _ABSENT), item) for number, item in after.items()
           if before.get(number, _ABSENT) is not item]
    out += [(number, item, _ABSENT) for number, item in before.items() if number not in after]
    return out


def _same_owing(before: Mapping, after: Mapping) -> bool:
    a, b = _owing(before), _owing(after)
    return a is b or a == b


def _owing(items: Mapping) -> frozenset[str]:
    """Numbers of the items with ``open`` > 0."""
    if isinstance(items, OpenItems):
        return items.owing
    return frozenset(number for number, item in items.items() if item.open > 0)


def _held_pieces(before: Map, after: Map) -> list[tuple[str, Any, Any]]:
    """(``held:<document key>``, before, after) of each held item a step put in, replaced or
    took out (taken out: after is absent)."""
    if before is after:
        return []
    out = [(HELD_PREFIX + key, before.get(key, _ABSENT), item) for key, item in after.items()
           if before.get(key) is not item]
    out += [(HELD_PREFIX + key, item, _ABSENT) for key, item in before.items() if key not in after]
    return out


def _head(account: Any) -> Any:
    if account is None:
        return _ABSENT
    return CustomerHead(replace(account, open_items=_NO_ITEMS), tuple(account.open_items.keys()),
                        _owing(account.open_items))


def changed_keys(touched: Iterable[str]) -> list[str]:
    """The table keys a step writes: the engine's ``touched`` names, deduplicated, in order."""
    seen: dict[str, None] = {}
    for key in touched:
        assert key.split(":", 1)[0] in ("document", "stock", "customer") or key in _WHOLE \
            or key == "held", key
        seen.setdefault(key, None)
    return list(seen)


class LedgerStore:
    """The posting state in ``table`` (see the module docstring). ``applied`` is the ``seq`` of
    the last finished step (-1 before the first). ``counts``: keys per kind found by the last
    :meth:`load` (``documents``, ``stock``, ``customers``, ``items``, ``held``, ``outputs``)."""

    def __init__(self, table: MutableMapping[str, bytes]) -> None:
        self.table = table
        self.applied = -1
        self.counts: dict[str, int] = {}
        self._outputs: deque[tuple[int, int]] = deque()  # (seq, number of out: values)
        self._readers = (
            _Reader(table, "document:", _same, _same),
            _Reader(table, "stock:", _stock_key, _stock_of),
            _Reader(table, "customer:", _same, _same, self._customer),
        )

    # ---- write -------------------------------------------------------------------------------

    def save(self, seq: int, old: LedgerState, new: LedgerState, touched: Iterable[str],
             outputs: list[Any]) -> None:
        """Record step ``seq`` (> :attr:`applied`): changed entries with undo images, the
        outputs, then the marker (in that order: see the module docstring). ``old`` must be
        the state as the table holds it (read through), ``new`` the engine's result from it;
        afterwards call :meth:`settle` on ``new``.

        Raises:
            StateTooLarge: a value would exceed :data:`VALUE_BYTES_MAX`; nothing was written.
        """
        assert seq > self.applied, f"step {seq} after {self.applied}: steps only move forward"
        writes: list[tuple[str, bytes]] = []
        for key, before, after in _pieces(old, new, changed_keys(touched)):
            if before is after:
                continue
            writes.append((key, _dumps((seq, _dumps(after), _dumps(before)))))
        chunks = _chunks(outputs)
        writes += [(_output_key(seq, n), _dumps(chunk)) for n, chunk in enumerate(chunks)]
        too_large = [f"{key} ({len(value):,} bytes)" for key, value in writes
                     if len(value) > VALUE_BYTES_MAX]
        if too_large:
            raise StateTooLarge(f"step {seq} would write values above {VALUE_BYTES_MAX:,} bytes: "
                                + ", ".join(too_large[:5]))
        for key, value in writes:
            self.table[key] = value
        self._outputs.append((seq, len(chunks)))
        self.table[APPLIED_KEY] = pickle.dumps(seq)
        self.applied = seq

    def settle(self, state: LedgerState) -> LedgerState:
        """``state`` (saved) as a plain read-through view of the table again: the step's
        overlays and read caches are dropped, so memory holds no more than one step's working
        set. The held queue, lock and rates stay as they are (small, kept whole)."""
        for reader in self._readers:
            reader.clear()
        maps = (state.documents, state.stock, state.customers)
        if not any(isinstance(m, TableMap) and m.changed for m in maps) \
                and all(isinstance(m, TableMap) for m in maps):
            return state
        documents, stock, customers = (TableMap(reader) for reader in self._readers)
        return replace(state, documents=documents, stock=stock, customers=customers)

    def outputs_of(self, seq: int) -> list[Any] | None:
        """The outputs step ``seq`` produced, if still kept."""
        raw = self.table.get(_output_key(seq, 0))
        if raw is None:
            return None
        outputs = pickle.loads(raw)
        chunk_no = 1
        while (raw := self.table.get(_output_key(seq, chunk_no))) is not None:
            outputs += pickle.loads(raw)
            chunk_no += 1
        return outputs

    def forget_outputs_before(self, seq: int) -> int:
        """Drop kept outputs of steps below ``seq`` (Faust committed past them: they are never
        delivered again); also keeps at most :data:`OUTPUTS_KEPT_MAX`. Returns how many."""
        dropped = 0
        while self._outputs and (self._outputs[0][0] < seq or len(self._outputs) > OUTPUTS_KEPT_MAX):
            old, chunk_count = self._outputs.popleft()
            for chunk_no in range(chunk_count):
                self.table.pop(_output_key(old, chunk_no), None)
            dropped += 1
        return dropped

    # ---- read --------------------------------------------------------------------------------

    def stored_applied(self) -> int:
        """The commit marker as the table holds it now (-1: none), without :meth:`load`."""
        raw = self.table.get(APPLIED_KEY)
        return -1 if raw is None else pickle.loads(raw)

    def _customer(self, customer: str, head: Any) -> Any:
        """A customer's account from its head and its open items' entries."""
        if not isinstance(head, CustomerHead):
            raise TornState(f"customer {customer!r} stored without its item numbers (load() converts)")
        prefix = f"{ITEM_PREFIX}{customer}{_SEP}"

        def load(number: str) -> Any:
            item = _value_of(self.table.get(prefix + number))
            if item == _ABSENT:
                raise TornState(f"open item {number!r} of customer {customer!r} is missing")
            return item

        base = _ItemsBase(head.items, load)
        owing = getattr(head, "owing", None)  # None: a head written before ``owing`` existed
        if owing is None:
            owing = frozenset(number for number in head.items if base.get(number).open > 0)
        return replace(head.account, open_items=OpenItems(base, owing))

    def load(self) -> LedgerState:
        """The state as the table holds it, rolling back an unfinished last step: one streaming
        pass over the table, keeping in memory only the held queue, lock, rates and the index
        of kept outputs; documents, stock and customers are read through (:class:`TableMap`).

        Raises:
            TornState: more than one step looks unfinished, or an entry is unknown.
        """
        raw_marker = self.table.get(APPLIED_KEY)
        self.applied = pickle.loads(raw_marker) if raw_marker is not None else -1
        whole: dict[str, Any] = {"held": {}, "locks": None, "rates": {}}
        legacy_held: dict | None = None
        outputs: dict[int, int] = {}  # seq -> number of out: values
        unfinished: set[int] = set()
        rollback: list[tuple[str, bytes]] = []  # (key, value before the unfinished step)
        dropped_outputs: list[str] = []
        legacy_heads = False
        counts = dict.fromkeys(("documents", "stock", "customers", "items", "held", "outputs"), 0)
        for key, raw in self.table.items():
            if raw is None or key == APPLIED_KEY:
                continue
            if key.startswith(OUTPUT_PREFIX):
                seq_text, _, chunk_text = key[len(OUTPUT_PREFIX):].partition("+")
                seq = int(seq_text)
                if seq > self.applied:
                    unfinished.add(seq)
                    dropped_outputs.append(key)
                else:
                    outputs[seq] = max(outputs.get(seq, 0), int(chunk_text or 0) + 1)
                continue
            seq, after, before = pickle.loads(raw)
            value_bytes = after
            if seq > self.applied:  # written by the step that did not finish: undo
                unfinished.add(seq)
                value_bytes = before
                rollback.append((key, before))
            kind = key.partition(":")[0]
            if key == _LEGACY_HELD:
                legacy_held = pickle.loads(value_bytes)
            elif key in _WHOLE:
                whole[key] = pickle.loads(value_bytes)
            elif kind in ("held", "document", "stock", "customer", "item"):
                value = pickle.loads(value_bytes) if kind in ("held", "customer") else None
                if value == _ABSENT:
                    continue
                if kind == "held":
                    whole["held"][key[len(HELD_PREFIX):]] = value
                legacy_heads |= kind == "customer" and not isinstance(value, CustomerHead)
                counts["documents" if kind == "document" else "items" if kind == "item"
                       else "customers" if kind == "customer" else kind] += 1
            else:
                raise TornState(f"unknown key {key!r} in the state table")
        if len(unfinished) > 1:
            raise TornState(f"steps {sorted(unfinished)} unfinished after {self.applied}")
        for key, before in rollback:  # the table holds the finished steps only from here on
            if pickle.loads(before) == _ABSENT:
                self.table.pop(key, None)
            else:
                self.table[key] = _dumps((self.applied, before, before))
        for key in dropped_outputs:
            self.table.pop(key, None)
        if legacy_held is not None:
            self._convert_held(legacy_held, whole["held"])
        if legacy_heads:
            self._convert_heads()
        self._outputs = deque(sorted(outputs.items()))
        counts["held"], counts["outputs"] = len(whole["held"]), len(outputs)
        self.counts = counts
        for reader in self._readers:
            reader.clear()
        documents, stock, customers = (TableMap(reader) for reader in self._readers)
        return LedgerState(documents=documents, stock=stock, customers=customers,
                           held=Map(whole["held"]), locked_through=whole["locks"],
                           rates=Map(whole["rates"]))

    def _convert_held(self, legacy: dict, held: dict) -> None:
        """Move the held queue of a table written as one ``held`` value to one key per item
        (module docstring): the items first, as written by the last finished step (``seq`` =
        :attr:`applied`), then the old key goes. A crash in between leaves both, holding the
        same items; the next load finishes the move."""
        for key, item in legacy.items():
            if key in held:  # moved by an interrupted conversion
                continue
            after = _dumps(item)
            self.table[HELD_PREFIX + key] = _dumps((self.applied, after, _dumps(_ABSENT)))
            held[key] = item
        self.table.pop(_LEGACY_HELD, None)

    def _convert_heads(self) -> None:
        """Rewrite customer heads stored without their item numbers (tables written before
        :class:`CustomerHead`) as :class:`CustomerHead`: a second pass collecting the open
        items' numbers per customer, then one write per customer (idempotent: a crash in
        between leaves heads of either form, the next load converts the rest)."""
        numbers: dict[str, list[str]] = {}
        for key in list(_keys_of(self.table)):
            if key.startswith(ITEM_PREFIX) and _value_of(self.table.get(key)) != _ABSENT:
                customer, _, number = key[len(ITEM_PREFIX):].partition(_SEP)
                numbers.setdefault(customer, []).append(number)
        for key in list(_keys_of(self.table)):
            if not key.startswith("customer:"):
                continue
            account = _value_of(self.table.get(key))
            customer = key[len("customer:"):]
            items = tuple(numbers.pop(customer, ()))
            if account == _ABSENT or isinstance(account, CustomerHead):
                continue
            head = _dumps(CustomerHead(account, items))
            self.table[key] = _dumps((self.applied, head, head))
        if numbers:
            raise TornState(f"open items of customers without their account: {sorted(numbers)[:5]}")


def unlocked(state: LedgerState) -> LedgerState:
    """``state`` with the period lock lifted (``period unlock``; the engine's ``lock_period``
    never moves a lock back, an authorised unlock does)."""
    return replace(state, locked_through=None)


__all__ = ["APPLIED_KEY", "HELD_PREFIX", "OUTPUT_CHUNK_BYTES_MAX", "OUTPUTS_KEPT_MAX",
           "VALUE_BYTES_MAX", "CustomerHead", "OpenItems", "StateTooLarge", "LedgerStore", "TableMap",
           "TornState", "changed_keys", "unlocked"]
