"""Every Prometheus panel of the dashboards returns data from the stack's real Prometheus
after a small real pipeline run — the metrics are emitted by the processes that own them, not
by the test: ``salesledger run --workers 1`` with its own Debezium connector posts a goods
receipt and an invoice (due long ago: an overdue receivable), a garbage record on the
journal-entries topic becomes a dead letter, and ``salesledger exporter slots`` runs over the
pipeline's store, registered as a scrape target of the stack's Prometheus like the workers.
A panel whose metric nothing emits never returns data and fails here.
"""

from __future__ import annotations

import json
import math
import urllib.parse

import pytest
from confluent_kafka import Producer

from salesledger.stack.prometheus import register_worker_target, unregister_worker_target
from tests.dashboards.grafana import PROM_UID, dashboards, panels
from tests.observability.conftest import (  # noqa: F401 - fixtures re-used here
    http_json,
    processes,
    start_exporter,
    wait_until,
)
from tests.pipeline.conftest import (  # noqa: F401 - fixtures re-used here
    captured_pipeline,
    pipeline,
    pipeline_factory,
    sales_dsn,
)
from tests.pipeline.test_pipeline_smoke import MASTER_DATA, post_receipt_and_invoice
from tests.pipeline.conftest import unique

pytestmark = pytest.mark.stack
DEADLINE_S = 300.0  # generous: pipeline start, two scrape intervals, rate windows


def _prometheus_targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL) of every Prometheus query of every dashboard."""
    return [(name, p["title"], t["expr"]) for name, board in dashboards().items()
            for p in panels(board) if p["datasource"]["uid"] == PROM_UID for t in p["targets"]]


def _has_data(settings, promql: str) -> bool:
    """The instant query returns at least one sample that is a number (not NaN)."""
    url = f"{settings.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    result = http_json(url)["data"]["result"]
    return any(not math.isnan(float(r["value"][1])) for r in result)


def test_every_prometheus_panel_covers_the_pipeline_health_topics() -> None:
    exprs = " ".join(expr for _, _, expr in _prometheus_targets())
    for metric in ("salesledger_stream_records_total", "salesledger_sink_freshness_seconds",
                   "salesledger_consumer_lag_records", "salesledger_sink_dead_letters_total",
                   "salesledger_held_documents", "salesledger_replication_slot_lag_bytes",
                   "debezium_metrics_millisecondssincelastevent",
                   "salesledger_business_amount_total",
                   "salesledger_overdue_receivables_amount"):
        assert metric in exprs, metric


def test_every_prometheus_panel_returns_data_after_a_pipeline_run(
        settings, captured_pipeline, pg_connect, start_exporter, kafka_admin) -> None:
    pipeline = captured_pipeline
    pipeline.env["SALESLEDGER_PIPELINE_METRICS_WINDOW_S"] = "5"
    pipeline.env["SALESLEDGER_PIPELINE_METRICS_FLUSH_S"] = "1"
    exporter, port = start_exporter({**pipeline.env,
                                     "SALESLEDGER_EXPORTER_STORE_SCHEMA": pipeline.schema})
    target = f"{pipeline.prefix}-exporter"
    register_worker_target(settings.model_copy(update={"worker_metrics_ports": (port, port)}),
                           target, port, labels={"prefix": pipeline.prefix,
                                                 "stage": "exporter"})
    try:
        pipeline.start(workers=1)
        sales = pg_connect("sales")
        sales.execute(MASTER_DATA)
        post_receipt_and_invoice(sales, unique("DGR"), unique("DINV"))
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        producer.produce(pipeline.topic("ledger.journal-entries"), key=b"x", value=b"\x01\x02!")
        assert producer.flush(60) == 0
        pipeline.wait_for("the sink stored the entries and the dead letter", lambda: (
            pipeline.query("SELECT count(*) FROM journal_entries")[0][0] >= 2
            and pipeline.query("SELECT count(*) FROM dead_letters")[0][0] >= 1))

        queries = _prometheus_targets()
        missing: list = []

        def all_have_data() -> bool:
            missing[:] = [q for q in queries if not _has_data(settings, q[2])]
            return not missing

        wait_until("every Prometheus panel query returns data", all_have_data,
                   deadline_s=DEADLINE_S, pause_s=5,
                   details=lambda: json.dumps(missing, indent=1) + "\n" + exporter.tail())
        # This run's own processes are among the answers (not only other runs' leftovers).
        prefix = f'prefix="{pipeline.prefix}"'
        for promql in (f"salesledger_stream_records_total{{{prefix}}}",
                       f"salesledger_sink_dead_letters_total{{{prefix}}}",
                       f"salesledger_held_documents{{{prefix}}}",
                       f"salesledger_overdue_receivables_amount{{{prefix}}}",
                       f'debezium_metrics_connected{{server="{pipeline.prefix}.cdc"}}'):
            assert _has_data(settings, promql), promql
    finally:
        unregister_worker_target(settings, target)
        pipeline.stop()
        exporter.stop()
        for future in kafka_admin.delete_consumer_groups(
                [f"{pipeline.prefix}-exporter"], request_timeout=30).values():
            try:
                future.result(timeout=30)
            except Exception:  # noqa: BLE001 - cleanup of a group that may not exist
                pass
