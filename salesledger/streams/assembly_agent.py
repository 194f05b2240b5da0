"""The assembly agent: Debezium topics -> whole document versions on ``{prefix}.documents``.

Input: the CDC topics of the document tables (``{prefix}.cdc.sales.<table>``, one partition
each), the transaction topic, and the master-data topics validation reads
(:data:`~salesledger.streams.validation.MASTER_TABLES`; an END marker counts rows per table, and
the assembler only waits for document tables; master rows are applied as they arrive).
Validation before emission: the assembler's validator is seeded from the sales database's
master data at start (:func:`salesledger.salesdb.master_data.validator_from_database`); an
invalid version becomes a dead letter whose key and value are the document record as it would
have gone to the documents topic (``dlq retry`` publishes exactly those bytes), with source
topic ``<CDC topic>#<document key>`` (one record may complete several documents; the store
keys dead letters by source position). Per record (thin):
decode (:func:`salesledger.streams.cdc.decode_record`) -> :class:`DocumentAssembler` -> produce
each completed :class:`DocumentEvent` (Avro ``SalesDocumentEvent``, key ``<type>:<number>``)
and each exchange rate (:class:`RateEvent`, Avro ``ExchangeRateEvent``, key
``rate:<currency>:<date>``, in commit order with the documents: assembly rule 8);
a record that cannot be decoded, and a document that cannot be built, become dead letters with
topic / partition / offset headers and the reason (CDC-14). Tombstones and heartbeats are
skipped (CDC-07). Nothing raises to Faust.

**Restart without losing buffered transactions.** Faust commits the offset of every event it
has handed to the agent, including row events of a transaction whose END has not come yet
(held in the assembler's memory). The assembler is therefore rebuilt on start, before Faust
consumes (:func:`rebuild`): the CDC topics are re-read from their beginning up to the group's
committed offsets and fed to a fresh assembler, which then holds exactly the row state and
incomplete transactions the last run had at those offsets. Output of this replay is suppressed
except for documents whose version is above the last document version on the documents topic
(normally none: Faust flushes the producer before it commits offsets; a re-emitted equal
version would be harmless anyway — posting ignores older versions and re-emits equal ones
identically). We chose replay over persisting the assembler in a table because its state (all
rows of every open document, buffered transactions) changes on every event and a consistent
snapshot would have to be committed atomically with the offsets; replay needs no extra state
and is deterministic. Cost: start-up time grows with the CDC topics' history (the document
tables' topics are kept forever, deploy/topics.yaml): measured on the 2-core machine under a
load average of 15-19, 5.7 s after 500 documents (2,150 CDC records), 10.2 s after 2,000
(6,895), 17.2 s after 5,000 (15,949) — about 4 s fixed plus 0.8 ms per CDC record, i.e.
minutes after a few hundred thousand documents. A bounded start-up needs the assembler's state
(row state per document, incomplete transactions, frontier) persisted per document key in a
compacted changelog and replay from the changelog's offsets: a follow-up. With a shorter
retention, a document whose rows are older is rebuilt from what is left (note for operators:
keep retention above the longest-lived editable document).

**Memory (CDC-20).** The state that grows with every document seen — the assembler's row
state per document and child row -> document map, and the validator's view of invoices and
accepted returns — is kept off the heap, in RocksDB under the worker's Faust data directory
(``<datadir>/assembly-state``, :mod:`salesledger.streams.local_state`), with bounded
in-memory caches (:data:`DOCUMENT_CACHE_ENTRIES_MAX`, :data:`SMALL_CACHE_ENTRIES_MAX`). It is
only an off-heap cache of what the replay above rebuilds: the directory is WIPED at start
(:func:`open_state`) and removed at a clean exit; nothing is read back from it after a
restart, so it needs no write-ahead log and no commit with the offsets. What stays on the heap
is bounded: incomplete transactions (``*_max``), the last ``applied_xids_max`` transaction ids,
the master data (grows with the master tables, not with documents).

One assembly worker runs (``salesledger run`` starts one, whatever ``--workers``): all
document topics must be read by the same assembler.
"""

from __future__ import annotations

import atexit
import logging
import time
from pathlib import Path
from typing import Iterable

import faust
from confluent_kafka import Consumer, TopicPartition

from salesledger.config import Settings
from salesledger.connect import cdc_topic_prefix
from salesledger.salesdb.master_data import validator_from_database
from salesledger.streams import telemetry
from salesledger.streams.app import PipelineSettings, declared, raw_topic
from salesledger.streams.assembly import (
    DOCUMENT_TABLES,
    STATE_REDUCERS,
    DocumentAssembler,
    DocumentEvent,
    DocumentRejected,
    RateEvent,
)
from salesledger.streams.cdc import (
    ChangeEvent,
    ChangeEventDecoder,
    TransactionEvent,
    decode_record,
)
from salesledger.streams.deadletter import DeadLetter, RejectedRecord, build_dead_letter
from salesledger.streams.documents import (
    DOCUMENT_SUBJECT,
    RATE_SUBJECT,
    document_datum,
    rate_datum,
)
from salesledger.streams.local_state import LocalState
from salesledger.streams.posting import DLQ_TOPIC, Output
from salesledger.streams.serde import AvroSerde
from salesledger.streams.validation import MASTER_TABLES, DocumentsView, DocumentValidator

log = logging.getLogger(__name__)
DOCUMENTS_TOPIC = "documents"
#: Records read per poll while rebuilding; records scanned per step back on the documents topic.
_REBUILD_BATCH_MAX = 1000
_TAIL_STEP = 500
_KAFKA_TIMEOUT_S = 30.0
#: Document row states kept in memory (one is a few KiB: header, lines, last emitted version).
DOCUMENT_CACHE_ENTRIES_MAX = 500
#: Entries kept in memory of each small mapping (child -> document, the validator's view).
SMALL_CACHE_ENTRIES_MAX = 2000
STATE_DIRECTORY = "assembly-state"


def cdc_topics(settings: Settings) -> list[str]:
    """The topics assembly reads: document and master-data tables' CDC topics, then the
    transaction topic."""
    prefix = cdc_topic_prefix(settings.topic_prefix)
    return ([f"{prefix}.{table}" for table in sorted(DOCUMENT_TABLES | MASTER_TABLES)]
            + [f"{prefix}.transaction"])


class AssemblyProcessor:
    """Decode -> assembler -> outputs for one CDC record (pure but for the assembler's memory).

    ``min_version``: documents at or below it are not produced (used during the rebuild)."""

    def __init__(self, assembler: DocumentAssembler | None = None, *,
                 serde: AvroSerde | None = None, decoder: ChangeEventDecoder | None = None) -> None:
        self.assembler = assembler or DocumentAssembler()
        self.serde = serde or AvroSerde()
        self.decoder = decoder or ChangeEventDecoder()
        self.documents = 0
        self.dead_letters = 0

    def process(self, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None) -> list[Output]:
        """Outputs (documents and dead letters) that this record completes."""
        decoded = decode_record(self.decoder, topic=topic, partition=partition, offset=offset,
                                key=key, value=value)
        if isinstance(decoded, DeadLetter):
            return [self._dead(decoded)]
        try:
            if isinstance(decoded, TransactionEvent):
                emitted = self.assembler.on_transaction(decoded)
            elif isinstance(decoded, ChangeEvent):
                emitted = self.assembler.on_change(decoded)
            else:
                return []  # tombstone (CDC-07), heartbeat
        except RejectedRecord as error:
            return [self._dead(build_dead_letter(error, topic=topic, partition=partition,
                                                 offset=offset, key=key, value=value))]
        except ValueError as error:  # a transaction id not of Debezium's form
            return [self._dead(build_dead_letter(
                "malformed_envelope", message=str(error), topic=topic, partition=partition,
                offset=offset, key=key, value=value))]
        outputs = []
        for item in emitted:
            if isinstance(item, DocumentEvent):
                outputs.append(self._document(item))
            elif isinstance(item, RateEvent):  # assembly rule 8: a rate, in commit order
                outputs.append(self._rate(item, topic, partition, offset, key, value))
            else:
                assert isinstance(item, DocumentRejected)
                if item.document is not None:  # a version that failed validation
                    outputs.append(self._dead(self._invalid_version(item, topic, partition,
                                                                    offset)))
                    continue
                outputs.append(self._dead(build_dead_letter(
                    item.error, topic=topic, partition=partition, offset=offset, key=key,
                    value=value, document_id=item.key)))
        return outputs

    def _document(self, event: DocumentEvent) -> Output:
        self.documents += 1
        value = self.serde.encode(DOCUMENT_SUBJECT, document_datum(event))
        return Output(DOCUMENTS_TOPIC, event.key.encode(), value,
                      (("sl.version", f"{event.version[0]}.{event.version[1]}".encode()),))

    def _rate(self, event: RateEvent, topic: str, partition: int, offset: int,
              key: bytes | None, value: bytes | None) -> Output:
        """The rate's record on the documents topic (key ``rate:<currency>:<date>``), or a
        dead letter when the rate does not fit its schema (``decimal_out_of_range``)."""
        try:
            encoded = self.serde.encode(RATE_SUBJECT, rate_datum(event))
        except RejectedRecord as error:
            return self._dead(build_dead_letter(error, topic=topic, partition=partition,
                                                offset=offset, key=key, value=value,
                                                document_id=event.key))
        return Output(DOCUMENTS_TOPIC, event.key.encode(), encoded,
                      (("sl.version", f"{event.version[0]}.{event.version[1]}".encode()),))

    def _invalid_version(self, item: DocumentRejected, topic: str, partition: int,
                         offset: int) -> DeadLetter:
        """The dead letter of a version that failed validation: key and value are its document
        record (see the module docstring), the source the record that completed it."""
        value = self.serde.encode(DOCUMENT_SUBJECT, document_datum(item.document))
        return build_dead_letter(item.error, topic=f"{topic}#{item.key}", partition=partition,
                                 offset=offset, key=item.key.encode(), value=value,
                                 document_id=item.key)

    def _dead(self, letter: DeadLetter) -> Output:
        self.dead_letters += 1
        return Output(DLQ_TOPIC, letter.record_key,
                      self.serde.encode("dead_letter", letter.to_avro()), tuple(letter.headers()))


# --------------------------------------------------------------------------- rebuild


def last_document_version(settings: Settings, serde: AvroSerde) -> tuple[int, int]:
    """The highest document (or exchange-rate) version on the documents topic (scanning back
    from its end past period actions); ``(-1, -1)`` when it holds none."""
    topic = declared(settings, DOCUMENTS_TOPIC)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": "salesledger-tail-reader", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0),
                                                   timeout=_KAFKA_TIMEOUT_S)
        end = high
        while end > low:
            start = max(low, end - _TAIL_STEP)
            best = (-1, -1)
            for message in _read_range(consumer, {(topic, 0): (start, end)}):
                version = _version_of(serde, message.value())
                if version is not None:
                    best = max(best, version)
            if best != (-1, -1):
                return best
            end = start
        return (-1, -1)
    finally:
        consumer.close()


def _version_of(serde: AvroSerde, value: bytes | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        writer, _ = serde.writer_of(value)
        if writer.subject not in (DOCUMENT_SUBJECT, RATE_SUBJECT):
            return None
        datum = serde.decode(value)
    except RejectedRecord:
        return None
    return (datum["version"]["commit_lsn"], datum["version"]["event_index"])


def _read_range(consumer: Consumer, ranges: dict[tuple[str, int], tuple[int, int]]
                ) -> Iterable:
    """Every message of each (topic, partition) in [start, end), partitions interleaved as
    the client fetches them."""
    todo = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    if not todo:
        return
    consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in todo.items()])
    deadline = time.monotonic() + 600
    while todo:
        assert time.monotonic() < deadline, f"rebuild stalled reading {sorted(todo)}"
        for message in consumer.consume(_REBUILD_BATCH_MAX, timeout=1.0):
            if message.error():
                log.warning("rebuild read error: %s", message.error())
                continue
            tp = (message.topic(), message.partition())
            if tp not in todo or message.offset() >= todo[tp][1]:
                continue
            yield message
            if message.offset() + 1 >= todo[tp][1]:
                del todo[tp]
                consumer.pause([TopicPartition(*tp)])
    consumer.unassign()


def committed_offsets(settings: Settings, group: str, topics: list[str]) -> dict[str, int]:
    """The group's committed offset per topic (partition 0); topics without one are left out."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        parts = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=_KAFKA_TIMEOUT_S)
        return {p.topic: p.offset for p in parts if p.offset is not None and p.offset >= 0}
    finally:
        consumer.close()


def rebuild(settings: Settings, group: str, processor: AssemblyProcessor) -> list[Output]:
    """Replay the CDC topics up to ``group``'s committed offsets into ``processor``; return
    the outputs that must still be produced (documents above the documents topic's last
    version; see the module docstring)."""
    started = time.monotonic()
    topics = cdc_topics(settings)
    committed = committed_offsets(settings, group, topics)
    last = last_document_version(settings, processor.serde)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"{group}-rebuild", "enable.auto.commit": False})
    pending: list[Output] = []
    replayed = 0
    try:
        ranges = {}
        for topic, end in committed.items():
            low, _ = consumer.get_watermark_offsets(TopicPartition(topic, 0),
                                                    timeout=_KAFKA_TIMEOUT_S)
            ranges[(topic, 0)] = (low, end)
        for message in _read_range(consumer, ranges):
            replayed += 1
            for out in processor.process(message.topic(), message.partition(), message.offset(),
                                         message.key(), message.value()):
                if out.topic == DOCUMENTS_TOPIC and _version_of(processor.serde, out.value) > last:
                    pending.append(out)
    finally:
        consumer.close()
    seconds = time.monotonic() - started
    telemetry.REBUILD_SECONDS.labels("assembly").set(seconds)
    log.info("assembler rebuilt from %d CDC records in %.1f s (last document version %s); "
             "%d documents still to produce", replayed, seconds, last, len(pending))
    processor.documents = processor.dead_letters = 0
    return pending


# --------------------------------------------------------------------------- the agent


def open_state(datadir: str | Path) -> LocalState:
    """The assembler's off-heap state in ``<datadir>/assembly-state``, wiped (see the module
    docstring), closed and removed at interpreter exit."""
    state = LocalState.open(Path(datadir) / STATE_DIRECTORY, reducers=STATE_REDUCERS)
    atexit.register(state.close, remove=True)
    return state


def disk_backed(state: LocalState, validator: DocumentValidator, *,
                document_cache_entries_max: int = DOCUMENT_CACHE_ENTRIES_MAX,
                small_cache_entries_max: int = SMALL_CACHE_ENTRIES_MAX,
                **options) -> DocumentAssembler:  # noqa: ANN003
    """A :class:`DocumentAssembler` (``options``: its other keyword arguments) whose
    per-document state, and ``validator``'s view of documents, are mappings of ``state``
    caching at most ``document_cache_entries_max`` document states and
    ``small_cache_entries_max`` entries of each other mapping; the validator's view must
    still be empty (it is replaced)."""
    assert not validator.view.invoices and not validator.view.returns, "view must be empty"
    small = small_cache_entries_max
    validator.view = DocumentsView(
        invoices=state.mapping("view.invoices", cache_entries_max=small),
        returns=state.mapping("view.returns", cache_entries_max=small),
        returns_by_invoice=state.mapping("view.returns_by_invoice", cache_entries_max=small))
    return DocumentAssembler(
        validator=validator,
        documents=state.mapping("documents", cache_entries_max=document_cache_entries_max),
        child_parents=state.mapping("child_parents", cache_entries_max=small),
        **options)


def build(app: faust.App, settings: Settings, pipeline: PipelineSettings) -> AssemblyProcessor:
    """Rebuild the assembler (its growing state on local disk), then add the assembly agent
    to ``app``."""
    ledger = pipeline.ledger_settings()
    # Documents without a currency column (write-offs) are in the ledger's functional currency;
    # rates go to the posting stage in commit order (rule 8).
    assembler = disk_backed(open_state(app.conf.datadir), validator_from_database(settings, ledger),
                            functional_currency=ledger.functional_currency, exchange_rates=True)
    processor = AssemblyProcessor(assembler, serde=AvroSerde.for_settings(settings))
    pending = rebuild(settings, app.conf.id, processor)
    outputs = {DOCUMENTS_TOPIC: raw_topic(app, declared(settings, DOCUMENTS_TOPIC)),
               DLQ_TOPIC: raw_topic(app, declared(settings, DLQ_TOPIC))}
    for topic in cdc_topics(settings):
        declared(settings, topic.split(".", 1)[1])

    async def send(out: Output) -> None:
        await outputs[out.topic].send(key=out.key, value=out.value,
                                      headers=list(out.headers) or None)

    @app.agent(raw_topic(app, *cdc_topics(settings)), name="assembly")
    async def assembly(stream) -> None:  # noqa: ANN001
        """Assemble documents from row changes and transaction markers."""
        while pending:
            await send(pending.pop(0))
        async for event in stream.events():
            message = event.message
            with telemetry.STEP_SECONDS.labels("assembly").time():
                results = processor.process(message.topic, message.partition, message.offset,
                                            message.key, message.value)
            for out in results:
                await send(out)
            telemetry.RECORDS.labels("assembly").inc()
            telemetry.DOCUMENTS.labels("assembly").inc(sum(o.topic == DOCUMENTS_TOPIC
                                                           for o in results))
            telemetry.DEAD_LETTERS.labels("assembly").set(processor.dead_letters)

    return processor


__all__ = ["DOCUMENT_CACHE_ENTRIES_MAX", "SMALL_CACHE_ENTRIES_MAX", "AssemblyProcessor", "build",
           "cdc_topics", "committed_offsets", "disk_backed", "last_document_version",
           "open_state", "rebuild"]
