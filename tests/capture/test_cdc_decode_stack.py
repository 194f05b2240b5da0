"""CDC-01/02/03/05/07 on envelopes the running Debezium produces from real SQL.

A scratch table in the test sales database (own publication, own connector, slot and topic
prefix) receives the field cases' values; the records are decoded live with the production
decoder; with ``SL_RECAPTURE_FIXTURES=1`` (or when missing) they are saved to
tests/fixtures/cdc/captured/scratch_decimals.jsonl, which test_cdc_decode_captured.py checks
without the stack. Everything created is removed afterwards
(connector, replication slot, publication, table, topics).
"""

from __future__ import annotations

import json
import os
import time
import uuid
import psycopg
import pytest
from psycopg import sql as pgsql

from tests.capture.conftest import TopicReader
from tests.capture.test_cdc_decode_captured import CAPTURED, check_scratch_capture

pytestmark = pytest.mark.stack

# The statements, each its own transaction (autocommit), in order.
STATEMENTS = [
    # CDC-01 exact NUMERIC(12,2); CDC-02 plain NUMERIC 1.5 / 1.50 / 100; a float money column
    "INSERT INTO {t} (id, amount, plain, price_f, doc_date, created_at, updated_at, uid, doc)"
    " VALUES (1, 0.10, 1.5, 0.1, '2026-11-30', '2026-11-30 04:00:00.123456',"
    " '2026-11-30 08:00:00.5+04', '6f1c1c1e-8e0b-5b7a-9a53-5a1e5d1e6e01', '{{\"a\": 1}}')",
    "INSERT INTO {t} (id, amount, plain) VALUES (2, -1.50, 1.50)",
    "INSERT INTO {t} (id, amount, plain) VALUES (3, 9999999999.99, 100)",
    # CDC-03: 'NaN'::numeric in both a scaled and an unscaled column; then a NULL amount
    "INSERT INTO {t} (id, amount, plain) VALUES (4, 'NaN', 'NaN')",
    "INSERT INTO {t} (id, amount, plain) VALUES (5, NULL, NULL)",
    # CDC-05: a long text stored out of line, then an update of the status only
    "INSERT INTO {t} (id, amount, note) VALUES (6, 6.00,"
    " (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 600) AS i))",
    "UPDATE {t} SET status = 'posted' WHERE id = 6",
    # CDC-07: delete (then Debezium's tombstone)
    "DELETE FROM {t} WHERE id = 2",
]
EXPECTED_TABLE_RECORDS = 9  # 6 inserts, 1 update, 1 delete, 1 tombstone


def _connector_config(settings, name: str, slot: str, publication: str, table: str,
                      prefix: str) -> dict[str, str]:
    from salesledger import connect

    _, config = connect.render_connector(connect.connector_values(
        settings, name=name, slot=slot, snapshot_mode="no_data"))
    config.update({
        "publication.name": publication,
        "table.include.list": f"sales\\.{table}",
        "topic.prefix": prefix,
        "heartbeat.interval.ms": "0",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    })
    config.pop("heartbeat.action.query", None)
    return config


def _cleanup(settings, sales_dsn, client, name, slot, publication, table, prefix) -> None:
    from confluent_kafka.admin import AdminClient

    from salesledger.salesdb.capture import drop_slot

    client.delete(name)
    drop_slot(settings.dsn("sales", "cdc"), slot, timeout_s=120)
    with psycopg.connect(sales_dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP PUBLICATION IF EXISTS {}").format(pgsql.Identifier(publication)))
        conn.execute(pgsql.SQL("DROP TABLE IF EXISTS sales.{}").format(pgsql.Identifier(table)))
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix + ".")]
    for future in admin.delete_topics(topics, operation_timeout=60).values() if topics else ():
        future.result(timeout=120)


def test_CDC_01_02_03_05_07_real_debezium_envelopes(settings, sales_dsn):
    from salesledger import connect

    suffix = uuid.uuid4().hex[:8]
    table, publication = f"scratch_dec_{suffix}", f"sl_scratch_{suffix}"
    name, slot = f"sltest-scratch-{suffix}", f"sltest_scratch_{suffix}"
    prefix = f"sltest.scratch{suffix}"
    client = connect.ConnectClient(settings.connect_url)
    ident = pgsql.Identifier(table)
    with psycopg.connect(sales_dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL(
            "CREATE TABLE sales.{} (id bigint PRIMARY KEY, amount numeric(12,2),"
            " plain numeric, price_f double precision, note text,"
            " status text NOT NULL DEFAULT 'draft', doc_date date, created_at timestamp(6),"
            " updated_at timestamptz, uid uuid, doc jsonb)").format(ident))
        conn.execute(pgsql.SQL("GRANT SELECT ON sales.{} TO {}").format(
            ident, pgsql.Identifier(settings.cdc_role)))
        conn.execute(pgsql.SQL("CREATE PUBLICATION {} FOR TABLE sales.{}").format(
            pgsql.Identifier(publication), ident))
    try:
        client.put_config(name, _connector_config(settings, name, slot, publication, table, prefix))
        client.wait_running(name, timeout_s=180)
        from salesledger.salesdb.capture import slot_info

        deadline = time.monotonic() + 120
        while (info := slot_info(sales_dsn, slot)) is None or not info.active:
            assert time.monotonic() < deadline, f"slot {slot} not active"
            time.sleep(0.5)
        with psycopg.connect(sales_dsn, autocommit=True) as conn:
            for statement in STATEMENTS:
                conn.execute(pgsql.SQL(statement).format(t=pgsql.SQL("sales.") + ident))
        topic, tx_topic = f"{prefix}.sales.{table}", f"{prefix}.transaction"
        # Debezium creates the topics with the first record: wait for them, then read from 0.
        records = _read_all(settings, [topic, tx_topic],
                            lambda rs: sum(r.topic == topic for r in rs) >= EXPECTED_TABLE_RECORDS
                            and sum(r.topic == tx_topic for r in rs) >= 2 * len(STATEMENTS))
        lines = [{"topic": r.topic, "partition": 0, "offset": r.offset,
                  "key": r.key_bytes.decode() if r.key_bytes else None,
                  "value": r.value_bytes.decode() if r.value_bytes else None}
                 for r in records]
        if os.environ.get("SL_RECAPTURE_FIXTURES") == "1" or not CAPTURED.exists():
            CAPTURED.parent.mkdir(parents=True, exist_ok=True)
            CAPTURED.write_text("".join(json.dumps(line) + "\n" for line in lines))
        check_scratch_capture(lines, table=table)  # the same checks as on the saved fixture
    finally:
        _cleanup(settings, sales_dsn, client, name, slot, publication, table, prefix)


def _read_all(settings, topics, done):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline = time.monotonic() + 180
    while not set(topics) <= set(admin.list_topics(timeout=30).topics):
        assert time.monotonic() < deadline, f"topics {topics} not created by Debezium"
        time.sleep(1)
    reader = TopicReader(settings.kafka_bootstrap, topics)
    try:
        from confluent_kafka import TopicPartition

        reader.consumer.assign([TopicPartition(t, 0, 0) for t in topics])  # from the start
        return sorted(reader.until(done), key=lambda r: (r.topic != topics[0], r.topic, r.offset))
    finally:
        reader.close()

