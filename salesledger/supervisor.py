"""``salesledger run``: start, watch and stop the pipeline's worker processes.

Workers (each a process, ``python -m salesledger.streams.worker <stage>``):

- ``assembly-0`` — always one (every document topic must feed the same assembler);
- ``posting-0 .. posting-<N-1>`` — one active (the documents topic has one partition), the
  others standbys holding a replica of the ledger table;
- ``sink-0 .. sink-<N-1>`` — the sink workers share the ledger topics' partitions.

Worker ``i`` (in that order) exposes Prometheus metrics on ``worker_metrics_ports[0] + i``
(9464, 9465, ...) while the range lasts. Each worker logs to ``<stack_dir>/logs/worker-<prefix>-<name>.log``
(appended across restarts). A worker that exits is restarted after a backoff (1 s doubling to
30 s; back to 1 s once it has run for a minute; :class:`SupervisorSettings`). SIGINT / SIGTERM
stop every worker (SIGTERM, then SIGKILL after ``stop_timeout_s``). The running workers are listed in
``<stack_dir>/run/<prefix>-workers.json`` (name, stage, pid, restarts) for operators and tests.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from salesledger.config import Settings
from salesledger.stack.prometheus import register_worker_target, unregister_worker_target

log = logging.getLogger(__name__)

BACKOFF_S_MIN = 1.0
BACKOFF_S_MAX = 30.0
#: A worker that ran this long is healthy again: its next restart waits BACKOFF_S_MIN.
HEALTHY_AFTER_S = 60.0
POLL_S = 0.5
WORKERS_MAX = 16


class SupervisorSettings(BaseSettings):
    """Restart policy (frozen; ``SALESLEDGER_SUPERVISOR_<FIELD>``), seconds.

    - ``backoff_s_min`` / ``backoff_s_max``: the first wait before restarting an exited worker,
      doubled at each exit up to the maximum (a crash loop costs little CPU and log);
    - ``healthy_after_s``: a worker that ran this long waits ``backoff_s_min`` again.

    The crash tests set ``backoff_s_max`` to 1 s: they kill a worker every few seconds on
    purpose, and a doubling backoff (1, 2, 4 ... 30 s) would dominate their run time.
    """

    model_config = SettingsConfigDict(env_prefix="SALESLEDGER_SUPERVISOR_", frozen=True,
                                      extra="ignore")

    backoff_s_min: float = Field(default=BACKOFF_S_MIN, gt=0, le=600)
    backoff_s_max: float = Field(default=BACKOFF_S_MAX, gt=0, le=600)
    healthy_after_s: float = Field(default=HEALTHY_AFTER_S, gt=0, le=3600)

    @model_validator(mode="after")
    def _check(self) -> "SupervisorSettings":
        if self.backoff_s_min > self.backoff_s_max:
            raise ValueError("backoff_s_min must not exceed backoff_s_max")
        return self


@dataclass
class WorkerSpec:
    """One supervised worker: ``name`` (``posting-0``), ``stage``, extra environment."""

    name: str
    stage: str
    env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "salesledger.streams.worker", self.stage]


@dataclass
class _Running:
    spec: WorkerSpec
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = BACKOFF_S_MIN  # replaced by the supervisor's policy at start
    restart_at: float | None = None


def plan(settings: Settings, workers: int) -> list[WorkerSpec]:
    """The workers of ``salesledger run --workers N`` (see the module docstring)."""
    assert 1 <= workers <= WORKERS_MAX, f"--workers must be 1..{WORKERS_MAX}"
    specs = [WorkerSpec("assembly-0", "assembly")]
    specs += [WorkerSpec(f"posting-{i}", "posting") for i in range(workers)]
    specs += [WorkerSpec(f"sink-{i}", "sink") for i in range(workers)]
    first, last = settings.worker_metrics_ports
    for index, spec in enumerate(specs):
        port = first + index
        if port <= last:
            key = "SALESLEDGER_SINK_METRICS_PORT" if spec.stage == "sink" else \
                "SALESLEDGER_PIPELINE_METRICS_PORT"
            spec.env[key] = str(port)
    return specs


class Supervisor:
    """Runs ``specs`` until :meth:`stop` (or a signal, with :meth:`install_signal_handlers`)."""

    def __init__(self, settings: Settings, specs: list[WorkerSpec], *,
                 stop_timeout_s: float = 30.0, policy: SupervisorSettings | None = None) -> None:
        self.settings = settings
        self.policy = policy or SupervisorSettings()
        self.running = [_Running(spec, backoff_s=self.policy.backoff_s_min) for spec in specs]
        self.stop_timeout_s = stop_timeout_s
        self.stop_event = threading.Event()
        self.log_dir = settings.log_dir
        self.state_file = state_path(settings)

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop all workers (main thread only)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop_event.set())

    def stop(self) -> None:
        """Ask :meth:`run` to stop every worker and return."""
        self.stop_event.set()

    def run(self) -> None:
        """Start the workers, restart those that exit, stop them all when asked."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for item in self.running:
            self._start(item)
        try:
            while not self.stop_event.wait(POLL_S):
                self._check()
        finally:
            self._stop_all()

    # ---- internals -----------------------------------------------------------------------------

    def _start(self, item: _Running) -> None:
        path = self._log_path(item.spec)
        # PYTHONHASHSEED fixed: iteration order of hash maps (the held queue is an
        # immutables.Map keyed by str) must not differ between a worker and its restart.
        env = {"PYTHONHASHSEED": "0", **os.environ, **item.spec.env,
               "SALESLEDGER_WORKER_NAME": item.spec.name}
        with open(path, "ab") as handle:
            handle.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {item.spec.name} "
                         f"(restart {item.restarts})\n".encode())
            handle.flush()
            item.process = subprocess.Popen(item.spec.argv(), stdout=handle,
                                            stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        item.started_at = time.monotonic()
        item.restart_at = None
        self._register_target(item.spec)
        log.info("started %s pid %d", item.spec.name, item.process.pid)
        self._write_state()

    def _log_path(self, spec: WorkerSpec) -> Path:
        return self.log_dir / f"worker-{self.settings.topic_prefix}-{spec.name}.log"

    def _check(self) -> None:
        now = time.monotonic()
        for item in self.running:
            if item.process is None:
                continue
            code = item.process.poll()
            if code is None:
                if now - item.started_at >= self.policy.healthy_after_s:
                    item.backoff_s = self.policy.backoff_s_min
                continue
            if item.restart_at is None:
                item.restart_at = now + item.backoff_s
                log.warning("%s exited with %s; restarting in %.0f s", item.spec.name, code,
                            item.backoff_s)
                item.backoff_s = min(item.backoff_s * 2, self.policy.backoff_s_max)
            elif now >= item.restart_at:
                item.restarts += 1
                self._start(item)

    def _stop_all(self) -> None:
        alive = [i for i in self.running if i.process is not None and i.process.poll() is None]
        for item in alive:
            try:
                os.killpg(item.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_timeout_s
        for item in alive:
            try:
                item.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s: SIGKILL", item.spec.name,
                            self.stop_timeout_s)
                try:
                    os.killpg(item.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                item.process.wait(timeout=30)
        self.state_file.unlink(missing_ok=True)
        for item in self.running:
            unregister_worker_target(self.settings, self._target_name(item.spec))

    def _target_name(self, spec: WorkerSpec) -> str:
        return f"{self.settings.topic_prefix}-{spec.name}"

    def _register_target(self, spec: WorkerSpec) -> None:
        """Let the stack's Prometheus scrape this worker's metrics port (file_sd)."""
        port = spec.env.get("SALESLEDGER_SINK_METRICS_PORT") or \
            spec.env.get("SALESLEDGER_PIPELINE_METRICS_PORT")
        if port:
            register_worker_target(self.settings, self._target_name(spec), int(port),
                                   {"stage": spec.stage, "prefix": self.settings.topic_prefix})

    def _write_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"name": i.spec.name, "stage": i.spec.stage,
                 "pid": i.process.pid if i.process else None, "restarts": i.restarts,
                 "log": str(self._log_path(i.spec))} for i in self.running]
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor_pid": os.getpid(), "workers": rows}, indent=1))
        os.replace(tmp, self.state_file)


def state_path(settings: Settings) -> Path:
    """``<stack_dir>/run/<topic prefix>-workers.json`` (one supervisor per topic prefix)."""
    return settings.stack_dir / "run" / f"{settings.topic_prefix}-workers.json"


def read_state(settings: Settings) -> dict | None:
    """The supervisor's workers file (None when no supervisor runs)."""
    path = state_path(settings)
    return json.loads(path.read_text()) if path.exists() else None


__all__ = ["Supervisor", "SupervisorSettings", "WorkerSpec", "plan", "read_state"]
