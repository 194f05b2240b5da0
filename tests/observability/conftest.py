"""Fixtures of the observability tests: a free port, the slot exporter as a real process, and a
private Prometheus (Debian's binary) loading the production rule files with only chosen ``for:``
durations shortened — so an alert test never disturbs the stack's Prometheus.

The pipeline fixtures (``pipeline``, ``captured_pipeline``) come from tests/pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from salesledger.config import Settings
from tests.observability.rules import rule_files
from tests.pipeline.conftest import (  # noqa: F401 - fixtures re-used here
    captured_pipeline,
    pipeline,
    pipeline_factory,
    sales_dsn,
)

DEADLINE_S = 300.0


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, check: Callable[[], object], deadline_s: float = DEADLINE_S,
               pause_s: float = 2.0, details: Callable[[], str] = lambda: ""):
    """Poll ``check()`` until truthy; AssertionError after ``deadline_s`` (generous)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            value = check()
        except OSError:  # a process still starting
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_s:.0f} s\n{details()}")
        time.sleep(pause_s)


def http_json(url: str, timeout_s: float = 10.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


class Process:
    """A child process in its own session, its output in ``log``; stopped by :meth:`stop`."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as handle:
            self.popen = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Processes a test starts; all stopped afterwards."""
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()


@pytest.fixture
def start_exporter(processes, tmp_path) -> Callable[..., tuple[Process, int]]:
    """``start_exporter(env=None, *args)`` -> (process, port): ``salesledger exporter slots``."""

    def start(env: dict[str, str] | None = None, *args: str) -> tuple[Process, int]:
        port = free_port()
        argv = [str(Path(sys.executable).parent / "salesledger"), "exporter", "slots",
                "--port", str(port), "--interval", "2", *args]
        process = Process(argv, {**os.environ, **(env or {})},
                          tmp_path / f"exporter-{port}.log")
        processes.append(process)
        return process, port

    return start


class PrivatePrometheus:
    """A Prometheus of its own (temp TSDB, free port) scraping ``targets`` every 2 s and
    evaluating the production rule files every 2 s, with ``for_overrides`` {alert: duration}."""

    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, promql: str) -> list[dict]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        return http_json(url)["data"]["result"]

    def evaluated_after(self, unix_s: float) -> bool:
        """Every rule group was evaluated after ``unix_s``."""
        import datetime as dt

        groups = http_json(f"{self.base}/api/v1/rules")["data"]["groups"]
        return bool(groups) and all(
            dt.datetime.fromisoformat(g["lastEvaluation"][:26].rstrip("Z") + "+00:00").timestamp()
            > unix_s for g in groups)

    def alerts(self) -> list[dict]:
        return http_json(f"{self.base}/api/v1/alerts")["data"]["alerts"]


@pytest.fixture
def private_prometheus(settings: Settings, processes, tmp_path):
    """``private_prometheus(targets, for_overrides)`` -> :class:`PrivatePrometheus` (ready)."""

    def start(targets: list[str], for_overrides: dict[str, str]) -> PrivatePrometheus:
        home = tmp_path / "prometheus"
        (home / "rules").mkdir(parents=True)
        overridden = set()
        for path in rule_files():
            doc = yaml.safe_load(path.read_text())
            for group in doc["groups"]:
                group["interval"] = "2s"
                for rule in group["rules"]:
                    if rule.get("alert") in for_overrides:
                        rule["for"] = for_overrides[rule["alert"]]  # only `for:` changes
                        overridden.add(rule["alert"])
            (home / "rules" / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        assert overridden == set(for_overrides), set(for_overrides) - overridden
        config = {"global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
                  "rule_files": [str(home / "rules" / "*.yml")],
                  "scrape_configs": [{"job_name": "observability-test",
                                      "static_configs": [{"targets": targets}]}]}
        (home / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        process = Process([str(settings.prometheus_bin),
                           f"--config.file={home / 'prometheus.yml'}",
                           f"--storage.tsdb.path={home / 'data'}",
                           f"--web.listen-address=127.0.0.1:{port}"],
                          dict(os.environ), tmp_path / "prometheus.log")
        processes.append(process)
        prom = PrivatePrometheus(f"http://127.0.0.1:{port}")
        wait_until("private Prometheus ready",
                   lambda: urllib.request.urlopen(f"{prom.base}/-/ready", timeout=5).status == 200,
                   deadline_s=120, details=process.tail)
        return prom

    return start
