"""``salesledger salesdb`` and ``salesledger connect`` commands against the real stack
(profile test): migrate/status, register twice, status, delete with the slot."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from salesledger.cli import app
from salesledger.connect import ConnectClient, connector_name, slot_name
from salesledger.salesdb.capture import slot_info

pytestmark = pytest.mark.stack

_RUNNER = CliRunner()


def run(*args: str):
    return _RUNNER.invoke(app, list(args), catch_exceptions=False)


def test_salesdb_migrate_and_status(sales_dsn):
    result = run("salesdb", "migrate", "--profile", "test")
    assert result.exit_code == 0 and "0 migration(s) applied" in result.output
    result = run("salesdb", "status", "--profile", "test")
    assert result.exit_code == 0 and "003_capture" in result.output and "pending" not in result.output


def test_connect_register_status_delete(settings, sales_dsn):
    name, slot = connector_name(settings.topic_prefix), slot_name(settings.topic_prefix)
    client = ConnectClient(settings.connect_url)
    try:
        for _ in range(2):  # idempotent
            result = run("connect", "register", "--profile", "test")
            assert result.exit_code == 0 and f"{name}: RUNNING, tasks RUNNING" in result.output
        deadline = time.monotonic() + 300  # streaming (and the slot's use) follows the snapshot
        while not (slot_info(sales_dsn, slot) or SimpleNamespace(active=False)).active:
            assert time.monotonic() < deadline, f"slot {slot} never active"
            time.sleep(0.5)
        result = run("connect", "status", "--profile", "test")
        assert result.exit_code == 0 and f"slot {slot}: active=True" in result.output
        assert client.get_config(name)["snapshot.mode"] == "initial"
    finally:
        result = run("connect", "delete", "--profile", "test", "--drop-slot")
    assert result.exit_code == 0 and "deleted" in result.output and "dropped" in result.output
    assert client.status(name) is None and slot_info(sales_dsn, slot) is None
    assert run("connect", "status", "--profile", "test").exit_code == 1
