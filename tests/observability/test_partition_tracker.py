"""The per-partition consumer position metrics (pure): lag, last-fetch age, revoked partitions,
and the librdkafka statistics callback that feeds them in the sink worker."""

from __future__ import annotations

import json

from salesledger import metrics
from salesledger.metrics import PartitionTracker


def _values(tracker: PartitionTracker) -> dict[tuple[str, str], dict[tuple, float]]:
    out: dict = {}
    for family in tracker.collect():
        for sample in family.samples:
            labels = (sample.labels["stage"], sample.labels["topic"], sample.labels["partition"])
            out.setdefault(family.name, {})[labels] = sample.value
    return out


def test_lag_is_high_watermark_minus_next_offset():
    tracker = PartitionTracker()
    tracker.observe("sink", "t", 0, next_offset=10, high_watermark=25)
    tracker.observe("sink", "t", 1, next_offset=7, high_watermark=7)
    lag = _values(tracker)["salesledger_consumer_lag_records"]
    assert lag == {("sink", "t", "0"): 15, ("sink", "t", "1"): 0}


def test_age_grows_only_while_records_wait_unread(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    tracker = PartitionTracker()
    tracker.observe("sink", "t", 0, 10, 20)        # 10 waiting
    tracker.observe("sink", "t", 1, 5, 5)          # caught up
    clock[0] += 90
    tracker.observe("sink", "t", 0, 10, 30)        # no progress, more waiting: stalled
    tracker.observe("sink", "t", 1, 5, 5)          # still caught up: not stalled
    age = _values(tracker)["salesledger_consumer_last_fetch_age_seconds"]
    assert age == {("sink", "t", "0"): 90, ("sink", "t", "1"): 0}
    clock[0] += 10
    tracker.observe("sink", "t", 0, 11, 30)        # fetched one: progress resets the age
    age = _values(tracker)["salesledger_consumer_last_fetch_age_seconds"]
    assert age[("sink", "t", "0")] == 0


def test_unknown_positions_are_ignored_and_revoked_partitions_dropped():
    tracker = PartitionTracker()
    tracker.observe("sink", "t", 0, -1001, 20)     # librdkafka: no position yet
    assert _values(tracker) == {}
    tracker.observe("sink", "t", 0, 1, 2)
    tracker.observe("sink", "t", 1, 1, 2)
    tracker.observe("posting", "d", 0, 1, 2)
    tracker.retain("sink", {("t", 1)})
    lag = _values(tracker)["salesledger_consumer_lag_records"]
    assert set(lag) == {("sink", "t", "1"), ("posting", "d", "0")}


def test_label_set_is_bounded():
    tracker = PartitionTracker()
    for partition in range(PartitionTracker.PARTITIONS_MAX + 10):
        tracker.observe("sink", "t", partition, 0, 1)
    assert len(_values(tracker)["salesledger_consumer_lag_records"]) == \
        PartitionTracker.PARTITIONS_MAX


def test_librdkafka_statistics_feed_the_tracker(monkeypatch):
    tracker = PartitionTracker()
    monkeypatch.setattr(metrics, "PARTITIONS", tracker)
    stats = {"topics": {"sl.ledger.journal-entries": {"partitions": {
        "0": {"fetch_state": "active", "app_offset": 40, "hi_offset": 50, "ls_offset": 45},
        "1": {"fetch_state": "none", "app_offset": -1001, "hi_offset": 9, "ls_offset": 9},
        "-1": {"fetch_state": "none", "app_offset": -1001, "hi_offset": -1001}}}}}
    metrics.librdkafka_stats("sink")(json.dumps(stats))
    lag = _values(tracker)["salesledger_consumer_lag_records"]
    # read_committed: the last stable offset bounds what the sink can read
    assert lag == {("sink", "sl.ledger.journal-entries", "0"): 5}
