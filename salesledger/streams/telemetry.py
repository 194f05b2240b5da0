"""Prometheus metrics of the stream workers, all defined here. Label ``stage`` (assembly |
posting) only. Each worker exposes them on its own port (``SALESLEDGER_PIPELINE_METRICS_PORT``,
9464 + worker index under ``salesledger run``); the sink worker's are in
:mod:`salesledger.sinks.metrics`.

Alert on ``salesledger_stream_dead_letters`` rising. ``STEP_SECONDS`` buckets span 0.1 ms (a
small document) to 1 s (a document releasing a long held queue).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter("salesledger_stream_records_total",
                  "Input records processed (all outcomes), by stage.", ["stage"])
DOCUMENTS = Counter("salesledger_stream_documents_total",
                    "Document events produced by assembly, by stage.", ["stage"])
DEAD_LETTERS = Gauge("salesledger_stream_dead_letters",
                     "Dead letters produced since the worker started, by stage.", ["stage"])
STEP_SECONDS = Histogram(
    "salesledger_stream_step_seconds", "Wall time to process one input record, seconds.",
    ["stage"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0))
REBUILD_SECONDS = Gauge("salesledger_stream_rebuild_seconds",
                        "Time the last start-up rebuild took (assembler replay), seconds.",
                        ["stage"])


def serve(port: int | None) -> None:
    """Expose this process's metrics on ``port`` (no-op for None)."""
    if port:
        import logging

        from prometheus_client import start_http_server

        try:
            start_http_server(port)
        except OSError as error:  # port taken: run without metrics rather than crash-loop
            logging.getLogger(__name__).warning("metrics port %d unavailable: %s", port, error)
