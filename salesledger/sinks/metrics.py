"""Prometheus metrics of the sink workers, all defined here (no ``salesledger/metrics.py`` exists
yet; move them there when one does). Few labels: ``table``, ``reason``, ``outcome``.

Alert on ``salesledger_sink_dead_letters_total`` rising: the store rejected a record (or a record
could not be decoded) and it went to the dead-letter table and topic.

Freshness (``salesledger_sink_freshness_seconds``) is the age of a journal entry when its store
transaction commits: commit wall time minus the source transaction's commit time (CDC
``source.ts``), i.e. the end-to-end delay sales database -> accounting store. Buckets from 50 ms
to 5 minutes (p50/p99 at 50 documents/s are expected in the sub-second to seconds range).

Histogram buckets: batch sizes follow ``batch_rows_max`` (default 2,000 rows) in roughly 2-2.5x
steps; commit latency spans 1 ms (a small batch on a local store) to 10 s (a stalled store).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_WRITTEN = Counter(
    "salesledger_sink_rows_written_total",
    "Rows newly inserted into the accounting store (duplicates not counted), by table.",
    ["table"],
)
DUPLICATES = Counter(
    "salesledger_sink_duplicate_records_total",
    "Records whose rows already existed (re-delivery; harmless, CDC-09).",
)
DEAD_LETTERS = Counter(
    "salesledger_sink_dead_letters_total",
    "Records the sink dead-lettered (alert when it rises), by reason code.",
    ["reason"],
)
BATCHES = Counter(
    "salesledger_sink_batches_total",
    "Store transactions attempted, by outcome: committed | rejected (then split) | unavailable.",
    ["outcome"],
)
BATCH_ROWS = Histogram(
    "salesledger_sink_batch_rows",
    "Rows per committed store transaction.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
COMMIT_SECONDS = Histogram(
    "salesledger_sink_commit_seconds",
    "Wall time of one store transaction (insert + offsets + commit), seconds.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
FRESHNESS_SECONDS = Histogram(
    "salesledger_sink_freshness_seconds",
    "Source commit -> accounting store commit, per new journal entry, seconds.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
LAST_COMMIT = Gauge(
    "salesledger_sink_last_commit_timestamp_seconds",
    "Unix time of the sink's last committed store transaction.",
)
