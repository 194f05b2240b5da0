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

:meth:`LedgerStore.load` (after changelog recovery) rebuilds the state; an entry whose ``seq`` is
above the marker belongs to a step that did not finish and is rolled back to its undo image.
Only the last step can be unfinished (steps run one at a time, each ends with its marker), and
the undo image of such an entry is the value after an earlier, finished step.

Keys: ``document:<type>:<number>``, ``stock:<sku>@<warehouse>``, ``customer:<id>`` (the engine's
``PostingResult.touched`` names; a customer's account without its open items), one key per open
item ``item:<customer>\x1f<number>`` (a customer may have thousands), one key per held document
``held:<document key>`` (the engine's ``held`` name; the queue may hold thousands: as ONE value it
grew past the broker's message size, and a changelog write the broker refuses is a state that is
no longer durable), and whole small mappings ``locks``, ``rates``. A table written before held
documents had their own keys (one ``held`` value) is converted by :meth:`LedgerStore.load`.
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
from typing import Any, Iterable, MutableMapping

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


def _get(state: LedgerState, key: str) -> Any:
    kind, _, rest = key.partition(":")
    if kind == "document":
        return state.documents.get(rest, _ABSENT)
    if kind == "stock":
        sku, _, warehouse = rest.rpartition("@")
        return state.stock.get((sku, warehouse), _ABSENT)
    if kind == "customer":
        return state.customers.get(rest, _ABSENT)
    if key == "locks":
        return state.locked_through
    if key == "rates":
        return dict(state.rates)
    raise KeyError(f"unknown state key {key!r}")


def _pieces(old: LedgerState, new: LedgerState, keys: list[str]) -> list[tuple[str, Any, Any]]:
    """(table key, before, after) of each changed piece. A customer is stored as its header
    (the account without open items) plus one entry per open item (``item:<id>\x1f<number>``),
    so a step writes the items it changed, not all of a customer's open items."""
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
        same_head = (before is not None and after is not None and before.advances is after.advances
                     and before.customer == after.customer)
        if not same_head:
            out.append((key, _head(before), _head(after)))
        items_before = before.open_items if before is not None else _NO_ITEMS
        items_after = after.open_items if after is not None else _NO_ITEMS
        if items_before is items_after:
            continue
        prefix = f"{ITEM_PREFIX}{customer}{_SEP}"
        for number, item in items_after.items():
            previous = items_before.get(number, _ABSENT)
            if previous is not item:
                out.append((prefix + number, previous, item))
        for number, item in items_before.items():
            if number not in items_after:
                out.append((prefix + number, item, _ABSENT))
    return out


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
    return _ABSENT if account is None else replace(account, open_items=_NO_ITEMS)


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
    the last finished step (-1 before the first)."""

    def __init__(self, table: MutableMapping[str, bytes]) -> None:
        self.table = table
        self.applied = -1
        self._outputs: deque[tuple[int, int]] = deque()  # (seq, number of out: values)
        self._current: dict[str, bytes] = {}  # key -> pickled value now (the next undo image)

    # ---- write -------------------------------------------------------------------------------

    def save(self, seq: int, old: LedgerState, new: LedgerState, touched: Iterable[str],
             outputs: list[Any]) -> None:
        """Record step ``seq`` (> :attr:`applied`): changed entries with undo images, the
        outputs, then the marker (in that order: see the module docstring).

        Raises:
            StateTooLarge: a value would exceed :data:`VALUE_BYTES_MAX`; nothing was written.
        """
        assert seq > self.applied, f"step {seq} after {self.applied}: steps only move forward"
        writes: list[tuple[str, bytes]] = []
        current: dict[str, bytes] = {}
        for key, before, after in _pieces(old, new, changed_keys(touched)):
            if before is after:
                continue
            before_bytes = self._current.get(key)
            if before_bytes is None:
                before_bytes = _dumps(before)
            current[key] = after_bytes = _dumps(after)
            writes.append((key, _dumps((seq, after_bytes, before_bytes))))
        chunks = _chunks(outputs)
        writes += [(_output_key(seq, n), _dumps(chunk)) for n, chunk in enumerate(chunks)]
        too_large = [f"{key} ({len(value):,} bytes)" for key, value in writes
                     if len(value) > VALUE_BYTES_MAX]
        if too_large:
            raise StateTooLarge(f"step {seq} would write values above {VALUE_BYTES_MAX:,} bytes: "
                                + ", ".join(too_large[:5]))
        for key, value in writes:
            self.table[key] = value
        self._current.update(current)
        self._outputs.append((seq, len(chunks)))
        self.table[APPLIED_KEY] = pickle.dumps(seq)
        self.applied = seq

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

    def load(self) -> LedgerState:
        """Rebuild the state from the table, rolling back an unfinished last step."""
        raw_marker = self.table.get(APPLIED_KEY)
        self.applied = pickle.loads(raw_marker) if raw_marker is not None else -1
        documents: dict = {}
        stock: dict = {}
        customers: dict = {}
        whole: dict[str, Any] = {"held": {}, "locks": None, "rates": {}}
        legacy_held: dict | None = None
        outputs: dict[int, int] = {}  # seq -> number of out: values
        unfinished: set[int] = set()
        self._current = {}
        for key, raw in list(self.table.items()):
            if key == APPLIED_KEY:
                continue
            if key.startswith(OUTPUT_PREFIX):
                seq_text, _, chunk_text = key[len(OUTPUT_PREFIX):].partition("+")
                seq = int(seq_text)
                if seq > self.applied:
                    unfinished.add(seq)
                    self.table.pop(key, None)
                else:
                    outputs[seq] = max(outputs.get(seq, 0), int(chunk_text or 0) + 1)
                continue
            seq, after, before = pickle.loads(raw)
            value_bytes = after
            if seq > self.applied:  # written by the step that did not finish: undo
                unfinished.add(seq)
                value_bytes = before
            self._current[key] = value_bytes
            if key == _LEGACY_HELD:
                legacy_held = pickle.loads(value_bytes)
                continue
            self._put(key, pickle.loads(value_bytes), documents, stock, customers, whole)
        if len(unfinished) > 1:
            raise TornState(f"steps {sorted(unfinished)} unfinished after {self.applied}")
        if legacy_held is not None:
            self._convert_held(legacy_held, whole["held"])
        items = whole.pop("items", {})
        for customer, open_items in items.items():
            if customer not in customers:
                raise TornState(f"open items of customer {customer!r} without its account")
            customers[customer] = replace(customers[customer], open_items=Map(open_items))
        self._outputs = deque(sorted(outputs.items()))
        return LedgerState(documents=Map(documents), stock=Map(stock), customers=Map(customers),
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
            self._current[HELD_PREFIX + key] = after
            held[key] = item
        self._current.pop(_LEGACY_HELD, None)
        self.table.pop(_LEGACY_HELD, None)

    @staticmethod
    def _put(key: str, value: Any, documents: dict, stock: dict, customers: dict,
             whole: dict) -> None:
        kind, _, rest = key.partition(":")
        if key in _WHOLE:
            whole[key] = value
        elif value == _ABSENT:
            return
        elif kind == "held":
            whole["held"][rest] = value
        elif kind == "item":
            customer, _, number = rest.partition(_SEP)
            whole.setdefault("items", {}).setdefault(customer, {})[number] = value
        elif kind == "document":
            documents[rest] = value
        elif kind == "stock":
            sku, _, warehouse = rest.rpartition("@")
            stock[(sku, warehouse)] = value
        elif kind == "customer":
            customers[rest] = value
        else:
            raise TornState(f"unknown key {key!r} in the state table")


def unlocked(state: LedgerState) -> LedgerState:
    """``state`` with the period lock lifted (``period unlock``; the engine's ``lock_period``
    never moves a lock back, an authorised unlock does)."""
    return replace(state, locked_through=None)


__all__ = ["APPLIED_KEY", "HELD_PREFIX", "OUTPUT_CHUNK_BYTES_MAX", "OUTPUTS_KEPT_MAX",
           "VALUE_BYTES_MAX", "StateTooLarge", "LedgerStore", "TornState", "changed_keys",
           "unlocked"]
