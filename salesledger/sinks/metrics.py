"""Prometheus metrics of the sink workers: the sink group of :mod:`salesledger.metrics` (where
every metric is built, buckets explained), re-exported under the names the sink code uses.
Importing this module registers the group in the process' registry.

Alert on ``salesledger_sink_dead_letters_total`` rising: the store rejected a record (or a record
could not be decoded) and it went to the dead-letter table and topic. Freshness
(``salesledger_sink_freshness_seconds``) is commit wall time minus the source transaction's
commit time (CDC ``source.ts``), i.e. the end-to-end delay sales database -> accounting store.
"""

from __future__ import annotations

from salesledger import metrics as _metrics

ROWS_WRITTEN = _metrics.SINK_ROWS_WRITTEN
DUPLICATES = _metrics.SINK_DUPLICATES
DEAD_LETTERS = _metrics.SINK_DEAD_LETTERS
BATCHES = _metrics.SINK_BATCHES
BATCH_ROWS = _metrics.SINK_BATCH_ROWS
COMMIT_SECONDS = _metrics.SINK_COMMIT_SECONDS
FRESHNESS_SECONDS = _metrics.SINK_FRESHNESS_SECONDS
LAST_COMMIT = _metrics.SINK_LAST_COMMIT

_metrics.register("sink")
