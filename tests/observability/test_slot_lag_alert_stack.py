"""The replication-slot lag alert at its production threshold (1 GiB of retained WAL).

A scratch logical slot on ``sales_test`` stands for a connector's slot: while its consumer is
caught up (fresh slot) the alert is inactive; once nobody confirms it ("the connector stopped")
and more than 1 GiB of WAL is written, it fires. WAL is made cheaply by :func:`write_wal` (1 MiB
rows in another database, truncated as it goes). The slot exporter runs as a real process; a
private Prometheus loads the production rule files with only the alert's ``for:`` shortened
(10m -> 10s). The slot is dropped afterwards (the WAL is then recycled).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from psycopg import sql

from salesledger.stack.prometheus import PrometheusService
from tests.observability.conftest import http_json, wait_until
from tests.observability.rules import scrape

GIB = 1024**3
WAL_ROWS_MIB = 1100  # > 1 GiB of WAL
WAL_BATCH_ROWS = 50
ALERT = "ReplicationSlotLagHigh"


def write_wal(conn, mib: int) -> None:
    """Write about ``mib`` MiB of WAL cheaply: rows of 1 MiB (TOAST without compression) in a
    scratch table of the ``postgres`` database, truncated per batch (the disk does not fill with
    table data) and dropped after. Logical decoding of the sales databases' slots skips other
    databases' records at once, so no connector sees or buffers them (a logical message would be
    streamed by Debezium's pgoutput and can exhaust Connect's heap)."""
    table = sql.Identifier(f"sl_obs_wal_{uuid.uuid4().hex[:8]}")
    conn.execute(sql.SQL("CREATE TABLE {} (payload text)").format(table))
    try:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN payload SET STORAGE EXTERNAL")
                     .format(table))
        for start in range(0, mib, WAL_BATCH_ROWS):
            rows = min(WAL_BATCH_ROWS, mib - start)
            conn.execute(sql.SQL("INSERT INTO {} SELECT repeat('x', 1048576) "
                                 "FROM generate_series(1, %s)").format(table), (rows,))
            conn.execute(sql.SQL("TRUNCATE {}").format(table))
    finally:
        conn.execute(sql.SQL("DROP TABLE {}").format(table))


def _slot_alerts(prom, slot: str) -> list[dict]:
    return [a for a in prom.alerts()
            if a["labels"].get("alertname") == ALERT and a["labels"].get("slot") == slot]


@pytest.mark.stack
def test_slot_lag_alert_inactive_while_caught_up_fires_after_1_GiB_behind(
        settings, pg_connect, start_exporter, private_prometheus):
    slot = f"sltest_obs_{uuid.uuid4().hex[:8]}"
    admin = pg_connect("sales", "admin")
    admin.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    try:
        exporter, port = start_exporter(None, "--no-store", "--no-business")
        prom = private_prometheus([f"127.0.0.1:{port}"], {ALERT: "10s"})
        lag = f'salesledger_replication_slot_lag_bytes{{slot="{slot}"}}'

        # Before: the series is there, under the threshold, and the rule has been evaluated.
        first = wait_until("the slot's lag scraped", lambda: prom.query(lag),
                           details=exporter.tail)
        assert float(first[0]["value"][1]) < GIB
        seen_at = time.time()
        wait_until("the alert rules evaluated after that",
                   lambda: prom.evaluated_after(seen_at + 4))
        assert _slot_alerts(prom, slot) == []

        # The connector stops (nobody confirms the slot) and the cluster keeps writing.
        write_wal(pg_connect("postgres", "admin"), WAL_ROWS_MIB)
        behind = admin.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots "
            "WHERE slot_name = %s", (slot,)).fetchone()[0]
        assert behind > GIB, behind

        def exported_lag() -> float:
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
            return next((v for k, v in samples.items() if k.startswith(
                "salesledger_replication_slot_lag_bytes{") and f'slot="{slot}"' in k), 0.0)

        wait_until("the exporter reports > 1 GiB", lambda: exported_lag() > GIB,
                   details=exporter.tail)
        firing = wait_until("the alert firing",
                            lambda: [a for a in _slot_alerts(prom, slot)
                                     if a["state"] == "firing"],
                            details=lambda: json.dumps(prom.alerts(), indent=1))
        assert firing[0]["labels"]["severity"] == "page"
        assert float(firing[0]["value"]) > GIB
    finally:
        admin.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = %s", (slot,))


@pytest.mark.stack
def test_stack_prometheus_loads_the_rule_files_and_scrapes_the_exporter(settings):
    # Render the stack's config as `stack up` does and reload (idempotent), then read it back.
    PrometheusService(settings).prepare()
    request = urllib.request.Request(f"{settings.prometheus_url}/-/reload", method="POST")
    urllib.request.urlopen(request, timeout=30).close()
    groups = wait_until("rule groups loaded", lambda: http_json(
        f"{settings.prometheus_url}/api/v1/rules")["data"]["groups"], deadline_s=60)
    by_name = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert by_name[ALERT]["duration"] == 600  # production `for: 10m`
    assert by_name[ALERT]["query"] == "salesledger_replication_slot_lag_bytes > 1.073741824e+09"
    assert "salesledger:sink_freshness_seconds:p99_5m" in by_name
    targets = http_json(f"{settings.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
    assert "salesledger-exporter" in {t["labels"]["job"] for t in targets}
