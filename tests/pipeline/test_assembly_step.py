"""The assembly step without Kafka, on records the real Debezium produced (tests/fixtures):
tombstones skipped (CDC-07), a poison pill dead-lettered with its coordinates (CDC-14), the
documents around it unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from salesledger.streams.assembly_agent import DOCUMENTS_TOPIC, AssemblyProcessor
from salesledger.streams.deadletter import HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_TOPIC
from salesledger.streams.documents import decode_documents_record

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "debezium" / "all_kinds.jsonl"


def records() -> list[tuple[str, bytes | None, bytes | None]]:
    out = []
    for line in FIXTURE.read_text().splitlines():
        row = json.loads(line)
        out.append((row["topic"], row["key"] and row["key"].encode(),
                    row["value"] and row["value"].encode()))
    return out


def run(items) -> list:
    processor = AssemblyProcessor()
    return [out for offset, (topic, key, value) in enumerate(items)
            for out in processor.process(topic, 0, offset, key, value)]


def test_CDC_07_CDC_14_tombstone_skipped_poison_pill_dead_lettered_documents_unchanged():
    clean = run(records())
    documents = [o for o in clean if o.topic == DOCUMENTS_TOPIC]
    assert len(documents) >= 5, "every document kind of the fixture is assembled"
    kinds = {decode_documents_record(processor_serde(), o.value).document.doc_type
             for o in documents}
    assert {"invoice", "payment", "return", "goods_receipt", "write_off"} <= kinds

    items = records()
    topic, key, _ = items[0]
    poisoned = [items[0], (topic, key, None), (topic, key, b'{"payload": {"amount": "abc"'),
                *items[1:]]
    out = run(poisoned)
    assert [o for o in out if o.topic == DOCUMENTS_TOPIC] == documents
    dead = [o for o in out if o.topic == "dlq"]
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers[HEADER_SOURCE_TOPIC] == topic.encode() and headers[HEADER_SOURCE_OFFSET] == b"2"
    assert headers[HEADER_REASON] in (b"undecodable", b"malformed_envelope", b"converter_mismatch")


def processor_serde():
    """The serde the processor uses by default."""
    from salesledger.streams.serde import AvroSerde

    return AvroSerde()
