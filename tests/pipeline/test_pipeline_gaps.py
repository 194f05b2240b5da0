"""The posting worker never skips a documents-topic offset, and never goes on past a state write
the broker refused (real Faust worker, real broker).

Faust's committed offset of the posting group is moved past documents the state has not
applied (what Faust did after a rebalance of two workers: issue 6 evidence) while the worker is
stopped; restarted, it must seek back and post them — once when records beyond the gap arrive,
once when nothing arrives at all (committed = end of the topic). Two workers joining and
leaving mid-backlog (the situation of the evidence) did not reproduce the loss on the old code
in 3 runs of 600 documents: the crash test's two-worker run remains the timing-dependent check.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import NewTopic

from salesledger.ledger.model import ReceiptLine
from tests.pipeline.helpers import produce
from tests.pipeline.test_posting_step import encoded, receipt


def _receipts(first: int, last: int) -> list[bytes]:
    return [encoded(receipt(f"GR-G{n:03d}", "1", "2.00"), 1_000 + n) for n in range(first, last)]


def _posted(pipeline) -> set[str]:
    return {row[0] for row in pipeline.query(
        "SELECT DISTINCT document_number FROM journal_entries WHERE document_number LIKE 'GR-G%'")}


def _commit_posting_offset(pipeline, kafka_admin, offset: int) -> None:
    """Set the posting group's committed documents offset (the group is empty: workers stopped;
    a member that left may take a moment to be gone)."""
    group = f"{pipeline.prefix}-posting"
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(pipeline.topic("documents"), 0,
                                                                  offset)])
    deadline = time.monotonic() + 60
    while True:
        try:
            kafka_admin.alter_consumer_group_offsets([request])[group].result(timeout=30)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.mark.stack
def test_a_committed_offset_past_unapplied_documents_is_sought_back_and_they_post(
        pipeline, kafka_admin):
    bootstrap, documents = pipeline.settings.kafka_bootstrap, pipeline.topic("documents")
    produce(bootstrap, documents, _receipts(0, 5))
    pipeline.start(workers=1)
    pipeline.wait_for("5 receipts posted", lambda: len(_posted(pipeline)) == 5)
    pipeline.stop()

    produce(bootstrap, documents, _receipts(5, 20))  # offsets 5-19
    _commit_posting_offset(pipeline, kafka_admin, 12)  # 5-11 were never applied
    pipeline.start(workers=1)
    pipeline.wait_for("offsets 5-11 sought back and posted", lambda: len(_posted(pipeline)) == 20,
                      deadline_s=180)
    pipeline.stop()

    produce(bootstrap, documents, _receipts(20, 25))  # offsets 20-24
    _commit_posting_offset(pipeline, kafka_admin, 25)  # nothing left to read
    pipeline.start(workers=1)
    pipeline.wait_for("offsets 20-24 sought back and posted", lambda: len(_posted(pipeline)) == 25,
                      deadline_s=180)
    log = pipeline.log_tail(200_000)
    assert "documents offset 5 needed, offset 12 came: seeking back to it" in log
    assert "documents offset 20 needed, nothing came" in log


@pytest.mark.stack
def test_a_changelog_write_the_broker_refuses_ends_the_posting_worker(pipeline, kafka_admin):
    """The ledger table's changelog takes at most 20,000 bytes per batch here (the broker's
    1 MiB in production); a receipt of 1,000 lines writes a bigger document record."""
    changelog = f"{pipeline.prefix}-posting-ledger-changelog"  # Faust keeps an existing topic
    created = kafka_admin.create_topics([NewTopic(changelog, 1, 1, config={
        "cleanup.policy": "compact", "max.message.bytes": "20000"})])
    created[changelog].result(timeout=30)
    bootstrap, documents = pipeline.settings.kafka_bootstrap, pipeline.topic("documents")
    big = dataclasses.replace(receipt("GR-GBIG", "1", "1.00"), lines=tuple(
        ReceiptLine(sku=f"GSKU{n}", qty=Decimal(1), unit_cost=Decimal(1)) for n in range(1_000)))
    produce(bootstrap, documents, _receipts(0, 1) + [encoded(big, 2_000)])
    pipeline.start(workers=1)
    pipeline.wait_for("the posting worker exits with 6", lambda: "posting-0 exited with 6" in
                      pipeline.log_tail(200_000), deadline_s=180)
    log = pipeline.log_tail(200_000)
    assert "produce request failed, exiting for a restart" in log
    assert "TooLarge" in log  # aiokafka's MessageSizeTooLargeError, named in the exit line
