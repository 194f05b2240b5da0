"""The posting step: one record of the documents topic -> engine -> the records to produce.

:class:`PostingProcessor` is the whole logic of the posting agent without Faust: the agent
hands it each record's offset (``seq``), key and value and sends what it returns. Per record:

0. a ``seq`` beyond :attr:`PostingProcessor.next_seq` is refused (``AssertionError``): a
   skipped record would be lost; the agent seeks back instead of calling;
1. a ``seq`` at or below the last finished step is a re-delivery (Faust restarted from an older
   committed offset): the outputs that step produced are returned again, exactly (CDC-09,
   CDC-16) — the engine is not asked twice;
2. decode (:func:`~salesledger.streams.documents.decode_documents_record`); an undecodable
   record becomes a dead letter with topic / partition / offset and reason (CDC-14);
3. a document version goes to :func:`salesledger.ledger.engine.try_post` (the engine itself
   ignores an older version and returns the same entries, status ``duplicate``, for the same
   version at a new offset); a period action to ``lock_period`` / ``release`` / unlock; an
   exchange rate to ``set_rate`` (the documents held for ``no_exchange_rate`` that now post
   come out with it);
   a :class:`~salesledger.ledger.errors.LedgerError` becomes a dead letter naming the document
   and the rule; the state does not change; an error the engine returns beside a new state
   (``before_golive`` of an edit that withdraws a posted document: its reversal stands) is a
   dead letter too, with the step's other outputs;
4. the outputs are built (journal entries keyed by document key, stock movements keyed
   ``<sku>@<warehouse>``, receivable updates keyed by customer, held-queue changes, the applied
   period action on the control topic, dead letters) and the step is saved with them
   (:class:`~salesledger.streams.state_store.LedgerStore`): state first, outputs second;
   a crash in between re-delivers the record and step 1 re-emits. A step whose state or outputs
   would not fit in a Kafka message (:class:`~salesledger.streams.state_store.StateTooLarge`)
   is a ``state_too_large`` dead letter instead, the state unchanged.

Determinism: the engine's state is cross-document, so records must come in one total order —
the documents topic has ONE partition (deploy/topics.yaml) and one posting worker is active.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from salesledger.ledger import engine
from salesledger.ledger.charts import Chart
from salesledger.ledger.errors import LedgerError
from salesledger.ledger.model import HeldItem, PeriodLock, PostingResult, Release
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import LedgerState
from salesledger.streams.deadletter import DeadLetter, RejectedRecord, build_dead_letter
from salesledger.streams.documents import (
    ACTION_SUBJECT,
    DocumentVersionEvent,
    ExchangeRateEvent,
    PeriodActionEvent,
    decode_documents_record,
)
from salesledger.streams.metrics_window import MinuteAggregator
from salesledger.streams.serde import AvroSerde
from salesledger.streams.state_store import LedgerStore, StateTooLarge, unlocked

log = logging.getLogger(__name__)

#: Topic suffixes (after the profile prefix) the posting stage produces to.
JOURNAL_TOPIC = "ledger.journal-entries"
MOVEMENTS_TOPIC = "ledger.stock-movements"
RECEIVABLES_TOPIC = "ledger.receivable-updates"
HELD_TOPIC = "held"
CONTROL_TOPIC = "control"
DLQ_TOPIC = "dlq"


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce: topic suffix, key and value bytes, headers."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class StepStats:
    """Counters of the processor (exported by the worker's metrics)."""

    steps: int = 0
    redelivered: int = 0
    dead_letters: int = 0
    entries: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


_FIELDS: dict[type, tuple[str, ...]] = {}
_LEAVES = frozenset({str, int, bool, Decimal, dt.date, dt.datetime, type(None), bytes, float})


def _datum(value: Any) -> Any:
    """A model dataclass as the plain dict/list tree Avro encodes (``dataclasses.asdict``
    without its deep copies: the values are immutable)."""
    cls = type(value)
    if cls in _LEAVES:
        return value
    names = _FIELDS.get(cls)
    if names is None and dataclasses.is_dataclass(value):
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    if names is not None:
        return {name: _datum(getattr(value, name)) for name in names}
    if isinstance(value, (tuple, list)):
        return [_datum(item) for item in value]
    return value


def _flatten(result: PostingResult) -> list[PostingResult]:
    out = [result]
    for sub in result.also:
        out.extend(_flatten(sub))
    return out


class PostingProcessor:
    """Applies documents-topic records to the ledger state (module docstring).

    ``source_topic``: full name of the documents topic (for dead-letter coordinates);
    ``store``: where the state lives; ``aggregator``: per-minute metrics (optional).
    Call :meth:`start` after the store's table is recovered, then :meth:`process` per record.
    """

    def __init__(self, store: LedgerStore, ledger: LedgerSettings, chart: Chart, *,
                 source_topic: str, serde: AvroSerde | None = None,
                 aggregator: MinuteAggregator | None = None) -> None:
        engine.check_settings(ledger, chart)
        self.store = store
        self.ledger = ledger
        self.chart = chart
        self.source_topic = source_topic
        self.serde = serde or AvroSerde()
        self.aggregator = aggregator
        self.state: LedgerState | None = None
        self.stats = StepStats()

    def start(self) -> LedgerState:
        """(Re)build the state from the store (after changelog recovery)."""
        self.state = self.store.load()
        return self.state

    @property
    def next_seq(self) -> int:
        """The offset the next new step must have: the documents topic's offsets have no holes
        (no transactions, no compaction: deploy/topics.yaml), so a record beyond it means
        records were skipped on the way; the caller seeks back to it (posting_agent)."""
        return self.store.applied + 1

    def process(self, seq: int, key: bytes | None, value: bytes | None) -> list[Output]:
        """The outputs of the record at offset ``seq`` (see the module docstring)."""
        assert self.state is not None, "start() first"
        assert seq <= self.next_seq, f"offset {seq} skips {self.next_seq}: the caller seeks back"
        if seq <= self.store.applied:
            self.stats.redelivered += 1
            return self.store.outputs_of(seq) or []
        old = self.state
        try:
            item = decode_documents_record(self.serde, value)
        except RejectedRecord as error:
            outputs = [self._dead(build_dead_letter(error, topic=self.source_topic, partition=0,
                                                    offset=seq, key=key, value=value))]
            return self._finish(seq, old, old, (), outputs, "undecodable")
        if item is None:  # tombstone (CDC-07): nothing to post
            return self._finish(seq, old, old, (), [], "tombstone")
        if isinstance(item, PeriodActionEvent):
            try:
                new, result, outputs = self._action(old, item)
            except Exception as error:  # an engine bug on a release must not stop the ledger
                log.exception("engine failed on period action %s", item.action)
                letter = build_dead_letter("engine_bug", message=f"{type(error).__name__}: {error}",
                                           topic=self.source_topic, partition=0, offset=seq,
                                           key=key, value=value, document_id=item.document_key)
                return self._finish(seq, old, old, (), [self._dead(letter)], "error")
        elif isinstance(item, ExchangeRateEvent):
            new, result, outputs = self._rate(old, item, seq, key, value)
        else:
            new, result, outputs = self._document(old, item, seq, key, value)
        touched = [t for r in _flatten(result) for t in r.touched]
        touched += [name for name, changed in (("held", old.held is not new.held),
                                               ("locks", old.locked_through != new.locked_through),
                                               ("rates", old.rates is not new.rates)) if changed]
        outputs += self._held_changes(old, new, item)
        return self._finish(seq, old, new, touched, outputs, result.status)

    # ---- steps -------------------------------------------------------------------------------

    def _document(self, state: LedgerState, event: DocumentVersionEvent, seq: int,
                  key: bytes | None, value: bytes | None):
        try:
            new, result = engine.try_post(state, event.document, self.ledger, self.chart)
        except Exception as error:  # a bug in a rule must not stop the ledger: dead-letter it
            log.exception("engine failed on %s", event.key)
            letter = build_dead_letter("engine_bug", message=f"{type(error).__name__}: {error}",
                                       topic=self.source_topic, partition=0, offset=seq,
                                       key=key, value=value, document_id=event.key)
            return state, PostingResult(status="error"), [self._dead(letter)]
        if result.status == "error":
            error = result.errors[0]
            assert isinstance(error, LedgerError)
            letter = build_dead_letter(error.reason, message=str(error), topic=self.source_topic,
                                       partition=0, offset=seq, key=key, value=value,
                                       document_id=error.document or event.key)
            return state, result, [self._dead(letter)]
        outputs = self._facts(result)
        for error in result.errors:  # refused, but the state moved (before_golive reverses the posted version)
            outputs.append(self._dead(build_dead_letter(error.reason, message=str(error), topic=self.source_topic,
                                                        partition=0, offset=seq, key=key, value=value,
                                                        document_id=error.document or event.key)))
        return new, result, outputs

    def _rate(self, state: LedgerState, event: ExchangeRateEvent, seq: int, key: bytes | None,
              value: bytes | None):
        """``engine.set_rate``; a refused rate (not positive) or an engine failure is a dead
        letter naming the rate's key, and the state does not change."""
        try:
            new, result = engine.set_rate(state, event.rate, self.ledger, self.chart)
        except Exception as error:  # noqa: BLE001 - dead-lettered, never raised to Faust
            if not isinstance(error, LedgerError):
                log.exception("engine failed on %s", event.key)
            reason = error.reason if isinstance(error, LedgerError) else "engine_bug"
            letter = build_dead_letter(reason, message=f"{type(error).__name__}: {error}",
                                       topic=self.source_topic, partition=0, offset=seq,
                                       key=key, value=value, document_id=event.key)
            return state, PostingResult(status="error"), [self._dead(letter)]
        return new, result, self._facts(result)

    def _action(self, state: LedgerState, action: PeriodActionEvent):
        if action.action == "lock":
            assert action.through is not None, "a lock needs a date"
            new, result = engine.lock_period(state, PeriodLock(through=action.through, at=action.at,
                                                               by=action.actor))
        elif action.action == "unlock":
            new, result = unlocked(state), PostingResult(status="unlocked", touched=("locks",))
        else:
            assert action.document_key, "a release names a document"
            new, result = engine.release(state, Release(document_key=action.document_key,
                                                        at=action.at, by=action.actor),
                                         self.ledger, self.chart)
        audit = Output(CONTROL_TOPIC, action.action.encode() if action.action != "release"
                       else action.document_key.encode(),
                       self.serde.encode(ACTION_SUBJECT, action.datum()))
        return new, result, self._facts(result) + [audit]

    def _facts(self, result: PostingResult) -> list[Output]:
        outputs: list[Output] = []
        fresh = result.status not in ("duplicate", "ignored")
        for res in _flatten(result):
            for entry in res.entries:
                ref = entry.document
                outputs.append(Output(JOURNAL_TOPIC, f"{ref.type}:{ref.number}".encode(),
                                      self.serde.encode("journal_entry", _datum(entry))))
            for movement in res.movements:
                outputs.append(Output(MOVEMENTS_TOPIC,
                                      f"{movement.sku}@{movement.warehouse}".encode(),
                                      self.serde.encode("stock_movement",
                                                        _datum(movement))))
            for update in res.receivable_updates:
                outputs.append(Output(RECEIVABLES_TOPIC, update.customer.encode(),
                                      self.serde.encode("receivable_update",
                                                        _datum(update))))
            if fresh and self.aggregator is not None:
                self.aggregator.add(res.entries)
            self.stats.entries += len(res.entries)
        return outputs

    def _held_changes(self, old: LedgerState, new: LedgerState, item: Any) -> list[Output]:
        if old.held is new.held:
            return []
        releasing = isinstance(item, PeriodActionEvent) and item.action == "release"
        now = dt.datetime.now(dt.UTC)
        outputs = []
        for key, held in new.held.items():
            if old.held.get(key) is not held:
                outputs.append(self._held(held, "held", None, now))
        for key, held in old.held.items():
            if key not in new.held:
                by = item.actor if releasing and item.document_key == key else None
                outputs.append(self._held(held, "released" if by else "posted", by, now))
        return outputs

    def _held(self, held: HeldItem, status: str, by: str | None, now: dt.datetime) -> Output:
        datum = {"document_key": held.document_key, "status": status, "reason": held.reason,
                 "detail": held.detail, "version": held.document.version, "since": held.since,
                 "changed_by": by, "changed_at": now}
        return Output(HELD_TOPIC, held.document_key.encode(),
                      self.serde.encode("held_document", datum))

    def _dead(self, letter: DeadLetter) -> Output:
        self.stats.dead_letters += 1
        return Output(DLQ_TOPIC, letter.record_key, self.serde.encode("dead_letter", letter.to_avro()),
                      tuple(letter.headers()))

    def _finish(self, seq: int, old: LedgerState, new: LedgerState, touched, outputs: list[Output],
                status: str) -> list[Output]:
        try:
            self.store.save(seq, old, new, touched, outputs)
        except StateTooLarge as error:  # the broker would refuse it: dead-letter, state unchanged
            log.error("%s", error)
            letter = build_dead_letter("state_too_large", message=str(error),
                                       topic=self.source_topic, partition=0, offset=seq,
                                       key=None, value=None)  # the record itself may be the bulk
            new, touched, outputs, status = old, (), [self._dead(letter)], "error"
            self.store.save(seq, old, new, touched, outputs)
        self.state = self.store.settle(new)
        self.stats.steps += 1
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        return outputs


__all__ = ["CONTROL_TOPIC", "DLQ_TOPIC", "HELD_TOPIC", "JOURNAL_TOPIC", "MOVEMENTS_TOPIC",
           "RECEIVABLES_TOPIC", "Output", "PostingProcessor", "StepStats"]
