"""The running stack: every service healthy through the CLI; what each service promises."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import urllib.request
import json

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer

from salesledger.stack import jars
from salesledger.stack.postgres import PostgresService

SALESLEDGER = [sys.executable, "-m", "salesledger"]


@pytest.mark.stack
def test_status_cli_reports_every_service_healthy(settings):
    result = subprocess.run(SALESLEDGER + ["stack", "status"], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
             if line.startswith("│") and line.split("│")[1].strip()}
    for service in ("postgresql", "kafka", "connect", "prometheus", "registry"):
        assert service in lines, result.stdout
        assert "healthy" in lines[service] and "unhealthy" not in lines[service], lines[service]
    assert "3.6.1.Final" in lines["connect"]
    assert jars.pom_property("version.kafka") in lines["kafka"]


@pytest.mark.stack
def test_postgres_is_private_cluster_with_logical_wal(settings, pg_connect):
    conn = pg_connect("postgres", "admin")
    values = dict(conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('wal_level','fsync','max_replication_slots','max_wal_senders','max_slot_wal_keep_size',"
        "'port','data_directory')").fetchall())
    assert values["wal_level"] == "logical"
    assert values["fsync"] == "on"
    assert int(values["max_replication_slots"]) >= 10 and int(values["max_wal_senders"]) >= 10
    assert int(values["max_slot_wal_keep_size"]) > 0
    assert int(values["port"]) == settings.pg_port
    assert values["data_directory"] == str(PostgresService(settings).data_dir)
    assert values["data_directory"] != "/var/lib/postgresql/15/main"


@pytest.mark.stack
def test_postgres_data_dir_is_reachable_by_its_os_user(settings):
    """As root, the cluster lives in a postgres-owned folder (the checkout may not be
    traversable by `postgres`) and .stack/postgresql links to it."""
    service = PostgresService(settings)
    link = settings.stack_dir / "postgresql"
    assert link.resolve() == service.cluster_home.resolve()
    if os.geteuid() == 0:
        assert link.is_symlink()
        owner = pwd.getpwuid(service.data_dir.stat().st_uid).pw_name
        assert owner == "postgres"
        probe = subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres",
                                "--init-groups", "--", "test", "-w",
                                str(service.data_dir / "PG_VERSION")], timeout=30)
        assert probe.returncode == 0


@pytest.mark.stack
@pytest.mark.parametrize("role", ["owner", "cdc", "reporting"])
def test_roles_log_in_to_sales(pg_connect, settings, role):
    conn = pg_connect("sales", role)
    assert conn.execute("SELECT current_user, current_database()").fetchone() == (
        settings.role(role), settings.sales_db)


@pytest.mark.stack
def test_role_attributes(pg_connect, settings):
    conn = pg_connect("postgres", "admin")
    rows = dict(conn.execute("SELECT rolname, rolreplication FROM pg_roles WHERE rolname = ANY(%s)",
                             ([settings.role(k) for k in ("owner", "cdc", "sink", "reporting")],))
                .fetchall())
    assert rows[settings.cdc_role] is True
    assert rows[settings.owner_role] is False and rows[settings.sink_role] is False
    owners = dict(conn.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database").fetchall())
    for db in settings.all_databases():
        assert owners[db] == settings.owner_role


@pytest.mark.stack
def test_reporting_role_is_read_only_and_sees_owner_tables(pg_connect, settings):
    import psycopg

    owner = pg_connect("accounting", "owner")
    table = f"sl_ro_probe_{os.getpid()}"
    owner.execute(f"CREATE TABLE {table} (id int)")
    try:
        owner.execute(f"INSERT INTO {table} VALUES (1)")
        reporting = pg_connect("accounting", "reporting")
        assert reporting.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reporting.execute(f"INSERT INTO {table} VALUES (2)")
        sink = pg_connect("accounting", "sink")
        sink.execute(f"INSERT INTO {table} VALUES (3)")
        assert sink.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 2
    finally:
        owner.execute(f"DROP TABLE {table}")


@pytest.mark.stack
def test_kafka_produce_consume_on_fresh_topic(settings, fresh_topic, consumer_group, kafka_admin):
    topic = fresh_topic("roundtrip", partitions=3)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for i in range(9):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0
    group = consumer_group("roundtrip")
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = []
    try:
        for _ in range(120):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                seen.append(msg.value())
                consumer.commit(msg, asynchronous=False)
            if len(seen) == 9:
                break
    finally:
        consumer.close()
    assert sorted(seen) == sorted(f"v{i}".encode() for i in range(9))
    offsets = kafka_admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    assert sum(tp.offset for tp in offsets.topic_partitions if tp.topic == topic) == 9


@pytest.mark.stack
def test_broker_does_not_auto_create_topics(settings, kafka_admin):
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    config = kafka_admin.describe_configs([resource])[resource].result(timeout=30)
    assert config["auto.create.topics.enable"].value == "false"


@pytest.mark.stack
def test_connect_config_provider_and_internal_topics(settings, kafka_admin):
    topics = kafka_admin.list_topics(timeout=30).topics
    for internal in ("_sl-connect-configs", "_sl-connect-offsets", "_sl-connect-status"):
        assert internal in topics
        assert all(len(p.replicas) == 1 for p in topics[internal].partitions.values())
    with urllib.request.urlopen(f"{settings.connect_url}/", timeout=10) as response:
        assert json.load(response)["version"] == jars.pom_property("version.kafka")
    assert oct(settings.secrets_file.stat().st_mode & 0o777) == "0o600"


@pytest.mark.stack
def test_prometheus_scrapes_kafka_and_debezium_jmx(settings):
    def query(expr: str) -> list:
        url = f"{settings.prometheus_url}/api/v1/query?query={urllib.request.quote(expr)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]["result"]

    assert {r["metric"]["job"] for r in query("up == 1")} >= {"kafka-broker", "kafka-connect"}
    assert query("kafka_server_brokertopicmetrics_messagesin_total")
    assert query('jvm_memory_used_bytes{job="kafka-connect"}')


@pytest.mark.stack
def test_logs_cli_prints_a_service_log_and_refuses_unknown(settings):
    result = subprocess.run(SALESLEDGER + ["stack", "logs", "kafka", "--lines", "5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 0 < len(result.stdout.splitlines()) <= 5
    missing = subprocess.run(SALESLEDGER + ["stack", "logs", "no-such-service"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no-such-service.log" in missing.stderr


@pytest.mark.stack
def test_stack_up_is_idempotent_on_the_shared_stack(settings):
    pids = {p.name: p.read_text() for p in (settings.stack_dir / "run").glob("*.pid")}
    result = subprocess.run(SALESLEDGER + ["stack", "up"], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting" not in result.stdout
    assert {p.name: p.read_text() for p in (settings.stack_dir / "run").glob("*.pid")} == pids


@pytest.mark.stack
def test_registry_stores_and_returns_an_avro_decimal_schema(settings):
    """The Confluent-compatible API of the stack's registry (Apicurio, /apis/ccompat/v7)."""
    from salesledger.stack.connect import http_json

    schema = {"type": "record", "name": "Line", "namespace": "salesledger.test",
              "fields": [{"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                                     "precision": 12, "scale": 2}}]}
    subject = f"{settings.topic_prefix}.registry-probe-{os.getpid()}-value"
    created = http_json(f"{settings.registry_url}/subjects/{subject}/versions", method="POST",
                        body={"schema": json.dumps(schema)})
    try:
        fetched = http_json(f"{settings.registry_url}/schemas/ids/{created['id']}")
        assert json.loads(fetched["schema"]) == schema
        latest = http_json(f"{settings.registry_url}/subjects/{subject}/versions/latest")
        assert latest["id"] == created["id"] and latest["version"] == 1
    finally:
        http_json(f"{settings.registry_url}/subjects/{subject}", method="DELETE")
