"""Fixtures of the pipeline tests: the whole pipeline on the real stack, isolated per module.

Each module gets its own topic prefix ``sltp<hex>`` (all topics of deploy/topics.yaml created
for it, so nothing another test or the demo writes reaches this pipeline), its own accounting
store schema in ``accounting_test``, and — when it needs Debezium — its own connector and
replication slot on ``sales_test`` (``snapshot.mode=no_data``), removed afterwards (a leftover
slot retains WAL). ``salesledger run`` is started as a real process with those settings.
A missing service fails; nothing skips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from salesledger.config import Settings

DEADLINE_S = 480.0  # generous: a worker stuck at start-up is restarted by its watchdog after 240 s
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Pipeline:
    """One isolated pipeline: ``settings`` (profile test, own prefix), ``schema`` of the store,
    ``env`` for processes, and the supervisor process once started."""

    settings: Settings
    schema: str
    env: dict[str, str]
    tmp: Path
    supervisor: subprocess.Popen | None = None
    connector: str | None = None
    slot: str | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix

    def topic(self, suffix: str) -> str:
        return self.settings.topic(suffix)

    # ---- processes -----------------------------------------------------------------------------

    def start(self, workers: int = 1) -> None:
        """Start ``salesledger run --workers N`` with this pipeline's environment."""
        assert self.supervisor is None or self.supervisor.poll() is not None
        log = open(self.tmp / f"run-{time.time():.0f}.log", "ab")
        self.supervisor = subprocess.Popen(
            [str(Path(sys.executable).parent / "salesledger"), "run", "--workers", str(workers)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True)

    def stop(self, timeout_s: float = 90.0) -> None:
        """SIGTERM the supervisor (it stops every worker) and wait."""
        if self.supervisor is None or self.supervisor.poll() is not None:
            return
        os.killpg(self.supervisor.pid, signal.SIGTERM)
        try:
            self.supervisor.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.supervisor.pid, signal.SIGKILL)
            self.supervisor.wait(timeout=30)
            self._kill_workers()
            raise

    def _kill_workers(self) -> None:
        state = self.workers()
        for row in (state or {}).get("workers", []):
            try:
                os.killpg(row["pid"], signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass

    def workers(self) -> dict | None:
        from salesledger.supervisor import read_state

        return read_state(self.settings)

    def worker_pid(self, name: str) -> int:
        state = self.workers()
        assert state, "no supervisor state file"
        return next(w["pid"] for w in state["workers"] if w["name"] == name)

    def log_tail(self, chars: int = 6000) -> str:
        out = []
        for path in sorted(self.settings.log_dir.glob(f"worker-{self.prefix}-*.log")):
            out.append(f"==== {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        for path in sorted(self.tmp.glob("run-*.log")):
            out.append(f"==== {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    # ---- the accounting store ------------------------------------------------------------------

    def query(self, statement: str, params: Any = None) -> list[tuple]:
        with psycopg.connect(**self.settings.conninfo("accounting", "owner"), autocommit=True,
                             connect_timeout=10) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            return conn.execute(statement, params).fetchall()

    def wait_for(self, what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
        """Poll ``check()`` until truthy; fail with the workers' logs after ``deadline_s``."""
        deadline = time.monotonic() + deadline_s
        while True:
            value = check()
            if value:
                return value
            if self.supervisor is not None:
                assert self.supervisor.poll() is None, f"supervisor exited\n{self.log_tail()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {deadline_s:.0f} s\n{self.log_tail()}")
            time.sleep(1.0)


def _make_pipeline(settings: Settings, tmp: Path, kafka_admin) -> Pipeline:
    from salesledger.config import Settings as SettingsClass
    from salesledger.sinks.migrate import apply_migrations
    from salesledger.stack.topics import apply_topics

    prefix = f"sltp{uuid.uuid4().hex[:8]}"
    own = SettingsClass(profile="test", test_topic_prefix=prefix)
    apply_topics(own)
    schema = f"p_{prefix}"
    with psycopg.connect(**settings.conninfo("accounting", "owner"), autocommit=True,
                         connect_timeout=10) as conn:
        apply_migrations(conn, schema, writer_role=settings.sink_role,
                         reporting_role=settings.reporting_role)
    ports = 19464 + (int(prefix[-4:], 16) % 200) * 8
    env = {**os.environ, "SALESLEDGER_PROFILE": "test", "SALESLEDGER_TEST_TOPIC_PREFIX": prefix,
           "SALESLEDGER_SINK_SCHEMA": schema, "SALESLEDGER_SINK_CONSUMER_GROUP": f"{prefix}-sink",
           "SALESLEDGER_WORKER_METRICS_PORTS": json.dumps([ports, ports + 7]),
           "SALESLEDGER_PIPELINE_COMMIT_INTERVAL_S": "0.5"}
    return Pipeline(settings=own, schema=schema, env=env, tmp=tmp)


def _drop_pipeline(pipeline: Pipeline, settings: Settings, kafka_admin) -> None:
    pipeline.stop()
    if pipeline.connector:
        from salesledger import connect
        from salesledger.salesdb.capture import drop_slot

        client, deadline = connect.ConnectClient(settings.connect_url), time.monotonic() + 180
        while True:  # Connect may be restarting (another test kills it): wait, then delete
            try:
                client.delete(pipeline.connector)
                break
            except connect.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        drop_slot(settings.dsn("sales", "cdc"), pipeline.slot, timeout_s=120)
    topics = [t for t in kafka_admin.list_topics(timeout=30).topics
              if t.startswith(pipeline.prefix + ".") or t.startswith(pipeline.prefix + "-")
              or t == f"__debezium-heartbeat.{pipeline.prefix}.cdc"]
    if topics:
        for future in kafka_admin.delete_topics(topics, operation_timeout=60).values():
            try:
                future.result(timeout=60)
            except Exception:
                pass
    groups = [f"{pipeline.prefix}-{g}" for g in ("assembly", "posting", "sink",
                                                 "assembly-rebuild")]
    for future in kafka_admin.delete_consumer_groups(groups, request_timeout=30).values():
        try:
            future.result(timeout=30)
        except Exception:
            pass
    with psycopg.connect(**settings.conninfo("accounting", "owner"), autocommit=True,
                         connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(pipeline.schema)))
    for path in pipeline.settings.log_dir.glob(f"worker-{pipeline.prefix}-*.log"):
        path.unlink()  # a failing test has already shown their tails
    import shutil

    for path in (pipeline.settings.stack_dir / "faust").glob(f"{pipeline.prefix}-*"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pipeline_factory(settings, kafka_admin, tmp_path) -> Iterator[Callable[[], Pipeline]]:
    """Makes isolated pipelines (topics + store schema), not started; all dropped afterwards."""
    made: list[Pipeline] = []

    def make() -> Pipeline:
        sub = tmp_path / f"p{len(made)}"
        sub.mkdir()
        made.append(_make_pipeline(settings, sub, kafka_admin))
        return made[-1]

    try:
        yield make
    finally:
        for item in made:
            _drop_pipeline(item, settings, kafka_admin)


@pytest.fixture
def pipeline(pipeline_factory) -> Pipeline:
    """An isolated pipeline (topics + store schema), not started, no connector."""
    return pipeline_factory()


@pytest.fixture(scope="session")
def sales_dsn(settings) -> str:
    """The test sales database as the owner role, migrated."""
    from salesledger.cli.salesdb import identifiers
    from salesledger.salesdb.migrations import migrate

    dsn = settings.dsn("sales", "owner")
    migrate(dsn, identifiers(settings))
    return dsn


@pytest.fixture
def captured_pipeline(pipeline: Pipeline, sales_dsn: str) -> Pipeline:
    """:func:`pipeline` plus its own Debezium connector and slot on ``sales_test``."""
    return attach_connector(pipeline, sales_dsn)


def attach_connector(pipeline: Pipeline, sales_dsn: str) -> Pipeline:
    """Register ``pipeline``'s own Debezium connector and slot on ``sales_test`` (removed with
    the pipeline) and wait until the slot is active; returns ``pipeline``."""
    from salesledger import connect
    from salesledger.salesdb.capture import slot_info

    suffix = pipeline.prefix
    pipeline.connector = f"{suffix}-sales-postgres"
    pipeline.slot = f"{suffix}_slot"
    connect.register(pipeline.settings, name=pipeline.connector, slot=pipeline.slot,
                     snapshot_mode="no_data")
    deadline = time.monotonic() + 120
    while True:
        info = slot_info(sales_dsn, pipeline.slot)
        if info is not None and info.active:
            break
        assert time.monotonic() < deadline, f"slot {pipeline.slot} not active"
        time.sleep(0.5)
    return pipeline


def unique(prefix: str) -> str:
    """A document number no other run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
