"""Settings: profiles choose databases and topic prefixes; contradictions are refused;
passwords are generated once into a private file."""

from __future__ import annotations

import stat

import pytest
from pydantic import ValidationError

from salesledger.config import Settings
from salesledger.stack.manager import belongs_to_prefix


def test_profiles_separate_databases_and_topics(tmp_path):
    run = Settings(profile="run", stack_dir=tmp_path)
    test = Settings(profile="test", stack_dir=tmp_path)
    assert (run.sales_db, run.accounting_db, run.topic_prefix) == ("sales", "accounting", "sl")
    assert (test.sales_db, test.accounting_db, test.topic_prefix) == (
        "sales_test", "accounting_test", "sltest")
    assert test.topic("documents") == "sltest.documents"
    assert test.conninfo("sales", "cdc", profile="run")["dbname"] == "sales"
    assert test.conninfo("sales", "cdc")["dbname"] == "sales_test"
    assert test.dsn("postgres", "admin").endswith("/postgres")


def test_passwords_generated_once_into_private_file(tmp_path):
    first = Settings(stack_dir=tmp_path)
    again = Settings(stack_dir=tmp_path)
    assert first.password("cdc").get_secret_value() == again.password("cdc").get_secret_value()
    assert len({first.password(k).get_secret_value() for k in
                ("admin", "owner", "cdc", "sink", "reporting")}) == 5
    mode = stat.S_IMODE(first.secrets_file.stat().st_mode)
    assert mode == 0o600
    assert "cdc.password=" in first.secrets_file.read_text()
    assert first.connect_secret("cdc.password") == f"${{file:{first.secrets_file}:cdc.password}}"
    assert "cdc.password" not in repr(first) and first.password("cdc").get_secret_value() not in repr(first)


def test_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("SALESLEDGER_KAFKA_PORT", "29092")
    monkeypatch.setenv("SALESLEDGER_CDC_PASSWORD", "from-env")
    s = Settings(stack_dir=tmp_path)
    assert s.kafka_bootstrap == "127.0.0.1:29092"
    assert s.password("cdc").get_secret_value() == "from-env"


def test_contradictions_are_refused(tmp_path):
    with pytest.raises(ValidationError, match="both"):
        Settings(stack_dir=tmp_path, pg_port=55432, kafka_port=55432)
    with pytest.raises(ValidationError, match="prefix"):
        Settings(stack_dir=tmp_path, test_topic_prefix="sl")
    with pytest.raises(ValidationError):
        Settings(stack_dir=tmp_path, profile="prod")


def test_settings_are_frozen(tmp_path):
    s = Settings(stack_dir=tmp_path)
    with pytest.raises(ValidationError):
        s.kafka_port = 1  # type: ignore[misc]


@pytest.mark.parametrize("name,prefix,expected", [
    ("sltest.documents", "sltest", True), ("sltest-cdc17-ab", "sltest", True),
    ("__debezium-heartbeat.sltest.cdc", "sltest", True), ("sl.documents", "sltest", False),
    ("sltest.documents", "sl", False), ("sl.documents", "sl", True),
    ("_sl-connect-offsets", "sl", False), ("sltestx.documents", "sltest", False),
])
def test_profile_ownership_of_names(name, prefix, expected):
    assert belongs_to_prefix(name, prefix) is expected
