"""Pure checks of the sales-schema migrations, the topic list and the connector template."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from salesledger.connect import render_connector, table_include_list
from salesledger.resources import resource_path
from salesledger.salesdb.migrations import MigrationError, discover, render

_PUBLICATION_RE = re.compile(r"CREATE PUBLICATION \{publication\} FOR TABLE(.*?);", re.S)


def _publication_tables() -> set[str]:
    text = "\n".join(m.text for m in discover())
    block = _PUBLICATION_RE.search(text)
    assert block is not None
    return {name.strip() for name in block.group(1).split(",")}


def test_migrations_are_numbered_in_order():
    migrations = discover()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and versions[0] == "001"
    assert len(set(versions)) == len(versions)
    assert all(len(m.checksum) == 64 for m in migrations)


def test_a_badly_named_file_is_refused(tmp_path: Path):
    (tmp_path / "001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name.sql"):
        discover(tmp_path)


def test_two_files_with_one_version_are_refused(tmp_path: Path):
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="version 001"):
        discover(tmp_path)


def test_placeholders_become_quoted_identifiers():
    capture = next(m for m in discover() if "PUBLICATION" in m.text)
    composed = render(capture, {"cdc_role": "cdc-role", "reporting_role": "rep", "publication": "pub x"})
    assert isinstance(composed, sql.Composed)
    rendered = composed.as_string(None)
    assert 'TO "cdc-role"' in rendered and 'CREATE PUBLICATION "pub x"' in rendered
    assert "{" not in rendered.replace("{10}", "")


def test_every_migration_renders_with_the_standard_identifiers():
    names = {"cdc_role": "sl_cdc", "reporting_role": "sl_reporting", "publication": "pub"}
    for migration in discover():
        assert render(migration, names).as_string(None)


def test_a_missing_placeholder_value_is_an_error():
    capture = next(m for m in discover() if "PUBLICATION" in m.text)
    with pytest.raises(MigrationError, match="placeholder"):
        render(capture, {"cdc_role": "x"})


def test_money_and_quantities_are_never_float():
    for migration in discover():
        code = re.sub(r"--[^\n]*", "", migration.text).lower()
        for word in ("real", "float", "float4", "float8", "double precision", "money"):
            assert not re.search(rf"\b{word}\b", code), f"{migration.path.name} uses {word}"


def test_every_captured_table_has_full_replica_identity():
    text = "\n".join(m.text for m in discover())
    full = set(re.findall(r"ALTER TABLE (sales\.\w+)\s+REPLICA IDENTITY FULL", text))
    captured = _publication_tables()
    assert captured - {"sales.cdc_heartbeat"} == full
    assert "sales.invoices" in captured and "sales.schema_migrations" not in captured


def test_every_captured_table_has_a_cdc_topic():
    topics = yaml.safe_load(resource_path("deploy/topics.yaml").read_text())["topics"]
    names = {t["name"] for t in topics}
    for table in _publication_tables():
        assert "{prefix}.cdc." + table in names
    for name in ("{prefix}.cdc.transaction", "__debezium-heartbeat.{prefix}.cdc", "{prefix}.documents"):
        assert name in names


def test_document_and_ledger_topics_keep_everything_forever():
    topics = yaml.safe_load(resource_path("deploy/topics.yaml").read_text())["topics"]
    kept = [t for t in topics if t["name"].startswith(("{prefix}.documents", "{prefix}.ledger."))]
    assert len(kept) == 4
    for topic in kept:
        assert topic["config"]["retention.ms"] == "-1"
        assert topic["config"]["cleanup.policy"] == "delete"
        assert topic["key"]
    assert len({t["name"] for t in topics}) == len(topics)


def test_connector_template_renders_without_inline_secrets():
    values = {
        "connector_name": "sales-postgres", "db_host": "127.0.0.1", "db_port": "5432",
        "db_name": "sales", "cdc_user": "cdc", "secrets_file": "/s/secrets.properties",
        "cdc_password_key": "cdc.password", "slot_name": "slot1", "publication": "pub",
        "table_include_list": table_include_list([("sales", "invoices"), ("sales", "invoice_lines")]),
        "snapshot_mode": "initial", "topic_prefix": "sl.cdc", "heartbeat_interval_ms": "10000",
    }
    name, config = render_connector(values)
    assert name == "sales-postgres" and config["name"] == name
    assert config["database.password"] == "${file:/s/secrets.properties:cdc.password}"
    assert config["table.include.list"] == "sales\\.invoice_lines,sales\\.invoices"
    assert config["plugin.name"] == "pgoutput"
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["decimal.handling.mode"] == "precise"
    assert config["provide.transaction.metadata"] == "true"
    assert config["event.processing.failure.handling.mode"] == "fail"
    assert all(isinstance(v, str) and "{{" not in v for v in config.values())
    del values["slot_name"]
    with pytest.raises(KeyError, match="slot_name"):
        render_connector(values)


def test_cdc_topics_assembly_replays_keep_everything():
    from salesledger.streams.assembly import DOCUMENT_TABLES

    topics = {t["name"]: t for t in yaml.safe_load(resource_path("deploy/topics.yaml").read_text())["topics"]}
    for table in sorted(DOCUMENT_TABLES) + ["transaction"]:
        topic = topics["{prefix}.cdc." + table]
        assert topic["partitions"] == 1  # one Debezium task writes it in commit order
        assert topic["config"] == {"cleanup.policy": "delete", "retention.ms": "-1"}, table
