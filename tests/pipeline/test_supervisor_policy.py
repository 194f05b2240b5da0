"""The supervisor's restart policy (no stack needed): a worker that exits is restarted after the
backoff of :class:`SupervisorSettings`, doubling up to its maximum."""

from __future__ import annotations

import sys
import threading
import time

import pydantic
import pytest

from salesledger.config import Settings
from salesledger.supervisor import Supervisor, SupervisorSettings, WorkerSpec


class _Exiting(WorkerSpec):
    """A worker process that exits at once (a crash loop)."""

    def argv(self) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(1)"]


def _restarts_within(tmp_path, policy: SupervisorSettings, seconds: float) -> int:
    settings = Settings(profile="test", stack_dir=tmp_path, test_topic_prefix="slsupervisor")
    supervisor = Supervisor(settings, [_Exiting("posting-0", "posting")], policy=policy)
    runner = threading.Thread(target=supervisor.run, daemon=True)
    runner.start()
    time.sleep(seconds)
    supervisor.stop()
    runner.join(30)
    assert not runner.is_alive()
    return supervisor.running[0].restarts


def test_backoff_doubles_up_to_its_maximum(tmp_path):
    # backoff 0.2, 0.4, 0.4 ... s, + the 0.5 s poll + the process's start (up to ~1.5 s on
    # a loaded machine): at least 3 restarts in 6 s
    short = _restarts_within(tmp_path, SupervisorSettings(backoff_s_min=0.2, backoff_s_max=0.4), 6.0)
    # backoff 1, 2, 4 s: at most 2 restarts in 6 s
    default = _restarts_within(tmp_path, SupervisorSettings(), 6.0)
    assert short >= 3, short
    assert 1 <= default <= 2 < short, (default, short)


def test_contradictory_backoff_is_refused(monkeypatch):
    monkeypatch.setenv("SALESLEDGER_SUPERVISOR_BACKOFF_S_MIN", "5")
    monkeypatch.setenv("SALESLEDGER_SUPERVISOR_BACKOFF_S_MAX", "1")
    with pytest.raises(pydantic.ValidationError):
        SupervisorSettings()
