"""CDC-12: a table added to the capture (publication + connector restart) reaches Kafka.

The table is a fresh copy of ``sales.returns`` so that other tests sharing the test database
never see the reference publication change. Its topic is created the way ``stack up`` creates
topics.yaml's (the broker does not auto-create).
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql as psql

from salesledger.connect import PUBLICATION

from .conftest import unique

pytestmark = pytest.mark.stack


@pytest.fixture
def new_table(settings, sales_dsn, capture):
    table = f"cdc12_returns_{uuid.uuid4().hex[:8]}"
    topic = capture.topic(table)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)
    ident = psql.Identifier("sales", table)
    with psycopg.connect(sales_dsn, autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE TABLE {} (LIKE sales.returns INCLUDING ALL)").format(ident))
        conn.execute(psql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ident))
        conn.execute(psql.SQL("GRANT SELECT ON {} TO {}").format(
            ident, psql.Identifier(settings.cdc_role)))
    yield table
    with psycopg.connect(sales_dsn, autocommit=True) as conn:
        conn.execute(psql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)


def _published(sales_dsn: str, table: str) -> bool:
    with psycopg.connect(sales_dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_publication_tables WHERE pubname = %s"
                            " AND schemaname = 'sales' AND tablename = %s",
                            (PUBLICATION, table)).fetchone() is not None


def test_CDC_12_table_added_to_the_capture_reaches_kafka(capture, sales_dsn, sql, new_table):
    assert not _published(sales_dsn, new_table)
    assert f"sales\\.{new_table}" not in capture.client.get_config(capture.name)["table.include.list"]
    table = psql.Identifier("sales", new_table)
    sql(psql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(psql.Identifier(PUBLICATION), table))
    assert _published(sales_dsn, new_table)

    capture.register()  # the include list is read from the publication again
    capture.client.restart(capture.name)
    assert capture.client.wait_running(capture.name).running
    assert f"sales\\.{new_table}" in capture.client.get_config(capture.name)["table.include.list"].split(",")

    reader = capture.reader(new_table)
    number = unique("RET")
    sql(psql.SQL("INSERT INTO {} (number, date, customer_code, warehouse_code,"
                 " against_invoice_number, status)"
                 " VALUES (%s, '2026-03-10', 'C1', 'W1', 'INV-1', 'posted')").format(table),
        (number,))
    records = reader.until(lambda rs: any(
        r.value and r.topic == capture.topic(new_table)
        and (r.value["payload"].get("after") or {}).get("number") == number for r in rs))
    reader.close()
    first = next(r for r in records if r.topic == capture.topic(new_table))
    assert first.value["payload"]["op"] == "c"
    assert first.value["payload"]["source"]["table"] == new_table
