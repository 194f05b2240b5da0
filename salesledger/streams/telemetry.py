"""Prometheus metrics of the stream workers (built in :mod:`salesledger.metrics`). Label ``stage``
(assembly | posting) only. Each worker exposes them on its own port
(``SALESLEDGER_PIPELINE_METRICS_PORT``, 9464 + worker index under ``salesledger run``); the sink
worker's are in :mod:`salesledger.sinks.metrics`.

Alert on ``salesledger_stream_dead_letters`` rising. ``STEP_SECONDS`` buckets span 0.1 ms (a
small document) to 1 s (a document releasing a long held queue).
"""

from __future__ import annotations

from salesledger import metrics as _metrics

# Built in salesledger.metrics (one registry); the names the stream code uses.
RECORDS = _metrics.STREAM_RECORDS
DOCUMENTS = _metrics.STREAM_DOCUMENTS
DEAD_LETTERS = _metrics.STREAM_DEAD_LETTERS
STEP_SECONDS = _metrics.STREAM_STEP_SECONDS
REBUILD_SECONDS = _metrics.STREAM_REBUILD_SECONDS

_metrics.register("stream")


def serve(port: int | None) -> None:
    """Expose this process's metrics on ``port`` (no-op for None)."""
    if port:
        import logging

        from prometheus_client import start_http_server

        try:
            start_http_server(port)
        except OSError as error:  # port taken: run without metrics rather than crash-loop
            logging.getLogger(__name__).warning("metrics port %d unavailable: %s", port, error)
