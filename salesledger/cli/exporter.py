"""``salesledger exporter slots``: the replication-slot lag exporter (prometheus-client).

Every ``--interval`` seconds it reads ``pg_replication_slots`` of the sales database's cluster
(as the CDC role) and sets, per slot (:mod:`salesledger.metrics`):

- ``salesledger_replication_slot_lag_bytes``  ``pg_current_wal_lsn() - restart_lsn``: the WAL the
  slot keeps on disk. It grows while the connector is stopped (or lags) and nothing else frees
  it: the alert ``ReplicationSlotLagHigh`` (deploy/prometheus/alerts.yml) wakes someone first;
- ``..._confirmed_lag_bytes``  ``pg_current_wal_lsn() - confirmed_flush_lsn``;
- ``salesledger_replication_slot_active``  1 while Debezium is connected.

With ``--store`` (default) it also reads the accounting store
(``SALESLEDGER_EXPORTER_STORE_SCHEMA``): the held queue (``salesledger_held_documents``,
``..._oldest_age_seconds``), open dead letters of every stage by reason
(``salesledger_dead_letters_open{reason}``) and overdue receivables
(``salesledger_overdue_receivables_amount{currency}``); with ``--business`` (default) it sums
the metrics topic's money aggregates (``salesledger_business_amount_total`` by metric: revenue,
margin, ...). Slots that disappear are removed from the output. It listens on
``SALESLEDGER_EXPORTER_PORT`` (default 9463), which the stack's Prometheus scrapes as job
``salesledger-exporter``. A failed query is counted (``salesledger_exporter_errors_total{source}``)
and retried at the next interval; the exporter never exits on a database error.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

import psycopg
import typer
from psycopg import sql

from salesledger import metrics
from salesledger.config import Settings, get_settings

NAME = "exporter"
app = typer.Typer(help="Prometheus exporter: replication-slot lag, held queue, dead letters, "
                       "overdue receivables, revenue and margin.",
                  no_args_is_help=True)
log = logging.getLogger(__name__)

SLOTS_SQL = """
SELECT slot_name, COALESCE(database, ''), active,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
  FROM pg_replication_slots
"""
OVERDUE_SQL = """
SELECT currency, COALESCE(sum(open_amount), 0)
  FROM (SELECT currency, customer, document_number, sum(amount) AS open_amount,
               max(due_date) AS due_date
          FROM {}
         GROUP BY currency, customer, document_number) AS items
 WHERE open_amount > 0 AND due_date < current_date
 GROUP BY currency
"""
DEAD_LETTERS_SQL = ("SELECT reason, count(*) FROM {} WHERE status = 'open' GROUP BY reason "
                    "ORDER BY reason LIMIT 200")
#: Metric-topic records read per poll (bounded).
BUSINESS_POLL_MAX = 500
HELD_SQL = ("SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - "
            "min(COALESCE(occurred_at, ingested_at))), 0)::float8 FROM {}")


class SlotExporter:
    """Reads the replication slots and, with ``store_schema``, the accounting store's held queue,
    open dead letters and overdue receivables into :mod:`salesledger.metrics` gauges."""

    def __init__(self, settings: Settings, store_schema: str | None) -> None:
        self.settings = settings
        self.store_schema = store_schema
        self._slots: set[tuple[str, str]] = set()
        self._reasons: set[str] = set()
        self._currencies: set[str] = set()

    def refresh(self) -> None:
        """One read of every source; a failing source is counted, the others still read."""
        try:
            self._refresh_slots()
        except psycopg.Error as err:
            metrics.SLOT_SCRAPE_ERRORS.labels("slots").inc()
            log.warning("reading pg_replication_slots failed: %s", err)
        if self.store_schema:
            for source, read in (("held", self._refresh_held), ("overdue", self._refresh_overdue),
                                 ("dead_letters", self._refresh_dead_letters)):
                try:
                    read()
                except psycopg.Error as err:
                    metrics.SLOT_SCRAPE_ERRORS.labels(source).inc()
                    log.warning("reading %s from the store failed: %s", source, err)

    def _refresh_slots(self) -> None:
        with psycopg.connect(**self.settings.conninfo("sales", "cdc"), connect_timeout=5,
                             autocommit=True) as conn:
            rows = conn.execute(SLOTS_SQL).fetchall()
        seen = set()
        for slot, database, active, lag_bytes, confirmed_bytes in rows:
            labels = (slot, database)
            seen.add(labels)
            metrics.SLOT_LAG_BYTES.labels(*labels).set(lag_bytes)
            metrics.SLOT_CONFIRMED_LAG_BYTES.labels(*labels).set(confirmed_bytes)
            metrics.SLOT_ACTIVE.labels(*labels).set(1 if active else 0)
        for labels in self._slots - seen:  # dropped slots leave the output
            for gauge in (metrics.SLOT_LAG_BYTES, metrics.SLOT_CONFIRMED_LAG_BYTES,
                          metrics.SLOT_ACTIVE):
                gauge.remove(*labels)
        self._slots = seen

    def _refresh_held(self) -> None:
        query = sql.SQL(HELD_SQL).format(sql.Identifier(self.store_schema, "held_queue"))
        with psycopg.connect(**self.settings.conninfo("accounting", "reporting"),
                             connect_timeout=5, autocommit=True) as conn:
            count, oldest_s = conn.execute(query).fetchone()
        metrics.HELD_DOCUMENTS.set(count)
        metrics.HELD_OLDEST_AGE_SECONDS.set(oldest_s)

    def _refresh_overdue(self) -> None:
        query = sql.SQL(OVERDUE_SQL).format(sql.Identifier(self.store_schema, "receivable_items"))
        with psycopg.connect(**self.settings.conninfo("accounting", "reporting"),
                             connect_timeout=5, autocommit=True) as conn:
            rows = conn.execute(query).fetchall()
        # Observability, not accounting: the exact Decimal becomes a float sample.
        amounts = {currency: float(amount) for currency, amount in rows}
        for currency in self._currencies - amounts.keys():  # nothing overdue any more
            amounts[currency] = 0.0
        for currency, amount in amounts.items():
            metrics.OVERDUE_RECEIVABLES_AMOUNT.labels(currency).set(amount)
        self._currencies = set(amounts)

    def _refresh_dead_letters(self) -> None:
        query = sql.SQL(DEAD_LETTERS_SQL).format(sql.Identifier(self.store_schema, "dead_letters"))
        with psycopg.connect(**self.settings.conninfo("accounting", "reporting"),
                             connect_timeout=5, autocommit=True) as conn:
            rows = dict(conn.execute(query).fetchall())
        for reason, count in rows.items():
            metrics.DEAD_LETTERS_OPEN.labels(reason).set(count)
        for reason in self._reasons - rows.keys():  # all resolved: the series ends
            metrics.DEAD_LETTERS_OPEN.remove(reason)
        self._reasons = set(rows)

    def serve(self, port: int, interval_s: float, stop: threading.Event) -> None:
        """Expose /metrics on ``port`` and refresh every ``interval_s`` until ``stop``."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=self.settings.host)
        while True:
            self.refresh()
            if stop.wait(interval_s):
                return


def follow_metrics_topic(settings: Settings, group: str, stop: threading.Event) -> None:
    """Add the money aggregates of ``{prefix}.metrics`` to ``salesledger_business_amount_total``
    (by metric and currency) until ``stop``. Reads the topic from its start on the group's
    first use; the group's committed offsets carry it across restarts (a restart resets the
    counter to 0, which ``rate()`` absorbs)."""
    from confluent_kafka import Consumer

    from salesledger.sinks.decode import shared_serde

    serde = shared_serde()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    consumer.subscribe([settings.topic("metrics")])
    try:
        while not stop.is_set():
            for message in consumer.consume(BUSINESS_POLL_MAX, timeout=1.0):
                if message.error() or message.value() is None:
                    continue
                try:
                    datum = serde.decode(message.value())
                except Exception as err:  # noqa: BLE001 - a bad record must not stop the exporter
                    metrics.SLOT_SCRAPE_ERRORS.labels("business").inc()
                    log.warning("undecodable metrics record at offset %d: %s",
                                message.offset(), err)
                    continue
                metrics.BUSINESS_RECORDS.inc()
                if datum.get("amount_sum") is not None and datum.get("currency"):
                    metrics.BUSINESS_AMOUNT.labels(datum["metric"], datum["currency"]).inc(
                        float(datum["amount_sum"]))
    finally:
        consumer.close()


@app.command("slots")
def slots(port: Optional[int] = typer.Option(None, help="HTTP port (default: "
                                                        "SALESLEDGER_EXPORTER_PORT or 9463)"),
          interval: Optional[float] = typer.Option(None, help="seconds between reads"),
          store: bool = typer.Option(True, help="also export the accounting store's held queue "
                                                "and overdue receivables"),
          business: bool = typer.Option(True, help="also sum the metrics topic (revenue, margin)"),
          ) -> None:
    """Export replication-slot lag (bytes behind), the held queue, overdue receivables and the
    business aggregates of the metrics topic until SIGINT/SIGTERM."""
    import signal

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = metrics.ExporterSettings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    settings = get_settings()
    metrics.register("exporter")
    if business:
        threading.Thread(target=follow_metrics_topic, name="metrics-topic", daemon=True,
                         args=(settings, f"{settings.topic_prefix}-exporter", stop)).start()
    exporter = SlotExporter(settings, options.store_schema if store else None)
    exporter.serve(port or options.port, interval or options.interval_s, stop)
