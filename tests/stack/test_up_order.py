"""`up`'s orchestration on stand-in services (no processes): dependencies start after what they
need; the first real failure is raised, the starts it abandoned are not."""

from __future__ import annotations

import threading
import time

import pytest

from salesledger.config import Settings
from salesledger.stack.base import Health, Service
from salesledger.stack.errors import StackAborted, StackError
from salesledger.stack.manager import _up_all


class StandIn(Service):
    """A service whose start and health are scripted."""

    def __init__(self, settings, name, needs=(), fail=False, healthy_after_s=0.0, log=None):
        super().__init__(settings)
        self.name, self.needs, self._fail = name, needs, fail
        self._healthy_after_s, self._started_at, self._log = healthy_after_s, None, log

    port = 1

    def pid(self):
        import os
        return os.getpid() if self._started_at is not None else None

    def marker(self):
        return self.name

    def start(self):
        self._log.append(("start", self.name))
        self._started_at = time.monotonic()
        if self._fail:
            raise self.fail("scripted failure")
        return None

    def health(self):
        ok = time.monotonic() - self._started_at >= self._healthy_after_s
        return Health(ok, "ok" if ok else "warming up")

    def wait_healthy(self, proc, timeout_s, check=None):
        return super().wait_healthy(proc, timeout_s, check)


@pytest.fixture
def settings(tmp_path):
    return Settings(stack_dir=tmp_path)


def test_dependents_start_after_their_needs_are_healthy(settings):
    log: list = []
    services = [StandIn(settings, "a", healthy_after_s=0.3, log=log),
                StandIn(settings, "b", needs=("a",), log=log),
                StandIn(settings, "c", log=log)]
    events = _up_all(settings, services, lambda _: None)
    assert [e.service for e in events] == ["a", "b", "c"]
    assert log.index(("start", "b")) > log.index(("start", "a"))
    assert all(e.health.healthy for e in events)


def test_first_failure_is_raised_and_other_waits_are_abandoned(settings):
    log: list = []
    services = [StandIn(settings, "slow", healthy_after_s=120.0, log=log),
                StandIn(settings, "broken", fail=True, log=log),
                StandIn(settings, "dependent", needs=("slow",), log=log)]
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        _up_all(settings, services, lambda _: None)
    assert not isinstance(caught.value, StackAborted)
    assert caught.value.service == "broken" and "scripted failure" in caught.value.cause
    assert ("start", "dependent") not in log
    assert time.monotonic() - started < 60  # the slow wait was abandoned, not timed out
    assert threading.active_count() < 50
