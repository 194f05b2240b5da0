"""Every metric a rule or a dashboard panel uses is emitted by a live process after a small
pipeline run.

The real pipeline (``salesledger run --workers 1`` with its own connector, topics and store
schema) posts a goods receipt and an invoice (due long ago: an overdue receivable), one garbage
record on the journal-entries topic becomes a dead letter, and the slot exporter runs over the
pipeline's store. Then the workers' and the exporter's /metrics are scraped, plus the stack's
Prometheus for the Debezium JMX metrics: a metric name used in deploy/prometheus/*.yml or in a
panel of deploy/grafana/dashboards/*.json that no process emits fails the test. The stack's
Prometheus also scrapes the workers (file_sd targets written by the supervisor).
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from confluent_kafka import Producer

from salesledger.config import Settings
from tests.observability.conftest import http_json, wait_until
from tests.observability.rules import (
    dashboard_metric_names,
    sample_names,
    scrape,
    used_metric_names,
)
from tests.pipeline.test_pipeline_smoke import MASTER_DATA, post_receipt_and_invoice
from tests.pipeline.conftest import unique

WORKERS = ("assembly-0", "posting-0", "sink-0")  # ports first, first+1, first+2


def _prometheus_query(settings: Settings, promql: str) -> list[dict]:
    url = f"{settings.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    return http_json(url)["data"]["result"]


@pytest.mark.stack
def test_every_metric_a_rule_uses_is_emitted_by_a_live_process(
        settings, captured_pipeline, pg_connect, start_exporter, kafka_admin):
    pipeline = captured_pipeline
    pipeline.env["SALESLEDGER_PIPELINE_METRICS_WINDOW_S"] = "5"
    pipeline.env["SALESLEDGER_PIPELINE_METRICS_FLUSH_S"] = "1"
    first_port = json.loads(pipeline.env["SALESLEDGER_WORKER_METRICS_PORTS"])[0]
    worker_urls = {name: f"http://127.0.0.1:{first_port + i}/metrics"
                   for i, name in enumerate(WORKERS)}
    exporter, port = start_exporter({**pipeline.env,
                                     "SALESLEDGER_EXPORTER_STORE_SCHEMA": pipeline.schema})
    exporter_url = f"http://127.0.0.1:{port}/metrics"
    try:
        pipeline.start(workers=1)
        sales = pg_connect("sales")
        sales.execute(MASTER_DATA)
        post_receipt_and_invoice(sales, unique("OGR"), unique("OINV"))
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        producer.produce(pipeline.topic("ledger.journal-entries"), key=b"x", value=b"\x01\x02!")
        assert producer.flush(60) == 0

        pipeline.wait_for("the sink stored the entries and the dead letter", lambda: (
            pipeline.query("SELECT count(*) FROM journal_entries")[0][0] >= 2
            and pipeline.query("SELECT count(*) FROM dead_letters")[0][0] >= 1))
        wait_until("revenue and margin summed by the exporter", lambda: {
            'salesledger_business_amount_total{currency="AZN",metric="revenue_amount"}',
            'salesledger_business_amount_total{currency="AZN",metric="margin_amount"}',
        } <= scrape(exporter_url).keys(), details=exporter.tail)
        wait_until("the open dead letter exported by reason", lambda: any(
            k.startswith("salesledger_dead_letters_open{") for k in scrape(exporter_url)),
            details=exporter.tail)
        wait_until("the overdue receivable exported", lambda: scrape(exporter_url).get(
            'salesledger_overdue_receivables_amount{currency="AZN"}', 0) > 0,
            details=exporter.tail)

        def has_series(url: str, prefix: str, stage: str) -> bool:
            return any(k.startswith(prefix) and f'stage="{stage}"' in k for k in scrape(url))

        # librdkafka reports positions every 5 s: the sink's series appear with its statistics.
        wait_until("per-partition lag of the sink and last-fetch age of posting", lambda: (
            has_series(worker_urls["sink-0"], "salesledger_consumer_lag_records{", "sink")
            and has_series(worker_urls["posting-0"],
                           "salesledger_consumer_last_fetch_age_seconds{", "posting")))
        wait_until("Debezium's JMX metrics of this connector in the stack's Prometheus",
                   lambda: _prometheus_query(settings, f'debezium_metrics_connected{{server='
                                                       f'"{pipeline.prefix}.cdc"}}'))
        pages = {name: scrape(url) for name, url in worker_urls.items()}
        pages["exporter"] = scrape(exporter_url)
        used = {**dashboard_metric_names(), **used_metric_names()}
        assert len(dashboard_metric_names()) >= 10  # the dashboards were read
        emitted = set().union(*(sample_names(page) for page in pages.values()))
        emitted |= {name for name in used if name.startswith("debezium_")
                    and _prometheus_query(settings, f'{name}{{server="{pipeline.prefix}.cdc"}}')}
        missing = {name: user for name, user in used.items() if name not in emitted}
        assert not missing, f"used by rules or dashboards but emitted by no process: {missing}"

        # The values make sense: this run's dead letter, memory per worker.
        sink = pages["sink-0"]
        assert sum(v for k, v in sink.items()
                   if k.startswith("salesledger_sink_dead_letters_total{")) >= 1
        for name, page in pages.items():
            assert page["process_resident_memory_bytes"] > 0, name

        # The stack's Prometheus scrapes the workers the supervisor registered.
        query = f'up{{job="salesledger-workers",prefix="{pipeline.prefix}"}} == 1'
        up = wait_until("the workers scraped by the stack's Prometheus",
                        lambda: (lambda r: r if len(r) == len(WORKERS) else None)(
                            _prometheus_query(settings, query)), deadline_s=120)
        assert {r["metric"]["stage"] for r in up} == {"assembly", "posting", "sink"}
    finally:
        pipeline.stop()
        exporter.stop()
        for future in kafka_admin.delete_consumer_groups(
                [f"{pipeline.prefix}-exporter"], request_timeout=30).values():
            try:
                future.result(timeout=30)
            except Exception:  # noqa: BLE001 - cleanup of a group that may not exist
                pass
