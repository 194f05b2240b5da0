"""CDC-01 on the real stack: NUMERIC(12,2) 0.10 inserted by SQL reaches Kafka through Debezium
(decimal.handling.mode=precise, JSON converter with schemas) and decodes to exactly
Decimal("0.10")."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
from decimal import Decimal

import pytest
from confluent_kafka import Consumer

from salesledger.stack.connect import POSTGRES_CONNECTOR_CLASS, http_json
import uuid

DEADLINE_S = 180.0


def decode_connect_decimal(value_b64: str, field_schema: dict) -> Decimal:
    """Kafka Connect ``Decimal``: base64 of the big-endian two's-complement unscaled integer;
    the scale is the schema parameter ``scale``."""
    assert field_schema["name"] == "org.apache.kafka.connect.data.Decimal", field_schema
    scale = int(field_schema["parameters"]["scale"])
    unscaled = int.from_bytes(base64.b64decode(value_b64), "big", signed=True)
    return Decimal(unscaled).scaleb(-scale)


def test_decode_connect_decimal_examples():
    schema = {"name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}
    assert str(decode_connect_decimal("Cg==", schema)) == "0.10"
    assert str(decode_connect_decimal(base64.b64encode((-10).to_bytes(1, "big", signed=True))
                                      .decode(), schema)) == "-0.10"
    assert decode_connect_decimal(base64.b64encode((12345678901).to_bytes(5, "big", signed=True))
                                  .decode(), schema) == Decimal("123456789.01")


def _wait_running(base: str, name: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    state = None
    while time.monotonic() < deadline:
        try:
            state = http_json(f"{base}/connectors/{name}/status")
        except urllib.error.HTTPError:
            state = None
        if state and state["connector"]["state"] == "RUNNING" and state["tasks"] \
                and all(t["state"] == "RUNNING" for t in state["tasks"]):
            return
        if state and any(t["state"] == "FAILED" for t in state["tasks"]):
            pytest.fail(f"connector task failed: {state}")
        time.sleep(1)
    pytest.fail(f"connector {name} not RUNNING after {DEADLINE_S} s: {state}")


@pytest.mark.stack
def test_CDC_01_numeric_0_10_arrives_as_exact_decimal(settings, pg_connect, kafka_admin):
    uid = uuid.uuid4().hex[:8]
    table, publication, slot = f"cdc01_lines_{uid}", f"sltest_cdc01_{uid}", f"sltest_cdc01_{uid}"
    connector, topic_prefix = f"sltest-cdc01-{uid}", f"sltest.cdc01-{uid}"
    topic = f"{topic_prefix}.public.{table}"
    owner = pg_connect("sales", "owner")
    owner.execute(f"CREATE TABLE public.{table} (id int PRIMARY KEY, amount NUMERIC(12,2) NOT NULL)")
    owner.execute(f"GRANT SELECT ON public.{table} TO {settings.cdc_role}")
    owner.execute(f"CREATE PUBLICATION {publication} FOR TABLE public.{table}")
    config = {
        "connector.class": POSTGRES_CONNECTOR_CLASS, "tasks.max": "1",
        "database.hostname": settings.host, "database.port": str(settings.pg_port),
        "database.dbname": settings.sales_db,
        "database.user": settings.cdc_role,
        "database.password": settings.connect_secret("cdc.password"),
        "plugin.name": "pgoutput", "slot.name": slot, "publication.name": publication,
        "publication.autocreate.mode": "disabled", "table.include.list": f"public.{table}",
        "snapshot.mode": "no_data", "topic.prefix": topic_prefix,
        "decimal.handling.mode": "precise",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }
    base = settings.connect_url
    http_json(f"{base}/connectors/{connector}/config", method="PUT", body=config)
    consumer = None
    try:
        _wait_running(base, connector)
        deadline = time.monotonic() + DEADLINE_S
        while not owner.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                (slot,)).fetchone() == (True,):
            assert time.monotonic() < deadline, "replication slot never became active"
            time.sleep(0.5)
        owner.execute(f"INSERT INTO public.{table} (id, amount) VALUES (1, 0.10)")

        consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                             "group.id": f"sltest-cdc01-{uid}", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False,
                             "topic.metadata.refresh.interval.ms": 1000})
        consumer.subscribe([topic])
        event = None
        while event is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() or msg.value() is None:
                continue
            event = json.loads(msg.value())
        assert event is not None, f"no change event on {topic} within {DEADLINE_S} s"

        payload, schema = event["payload"], event["schema"]
        assert payload["op"] == "c"
        after_schema = next(f for f in schema["fields"] if f["field"] == "after")
        amount_schema = next(f for f in after_schema["fields"] if f["field"] == "amount")
        assert amount_schema["parameters"]["scale"] == "2"
        assert isinstance(payload["after"]["amount"], str)  # base64, not a JSON float
        amount = decode_connect_decimal(payload["after"]["amount"], amount_schema)
        assert amount == Decimal("0.10") and str(amount) == "0.10"
        assert amount.as_tuple() == Decimal("0.10").as_tuple()
    finally:
        if consumer is not None:
            consumer.close()
        http_json(f"{base}/connectors/{connector}", method="DELETE")
        admin = pg_connect("postgres", "admin")
        deadline = time.monotonic() + 120
        while True:
            row = admin.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                                (slot,)).fetchone()
            if row is None:
                break
            if row[0] is None:
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            assert time.monotonic() < deadline, f"slot {slot} still active after connector delete"
            time.sleep(0.5)
        owner.execute(f"DROP PUBLICATION IF EXISTS {publication}")
        owner.execute(f"DROP TABLE IF EXISTS public.{table}")
        existing = kafka_admin.list_topics(timeout=30).topics
        doomed = [t for t in existing if t.startswith(topic_prefix)]
        if doomed:
            for future in kafka_admin.delete_topics(doomed, operation_timeout=30).values():
                future.result(timeout=30)
