"""Seeded ``kill -9`` rounds of one stream worker under ``salesledger run``, each proven to kill
the worker while it holds uncommitted work.

The proof uses two observations that the killed process cannot falsify afterwards:

- ``P``: the worker's processed position just before the kill = the group's committed offsets
  when this incarnation started (``S``, summed over its input partitions) + the records its
  agent has taken since (``salesledger_stream_records_total`` on the worker's metrics port);
- ``C``: the group's committed offsets read *after* the process is gone.

``P > C`` means the worker had changed its state and buffered outputs for ``P - C`` records
whose offsets were never committed: the restart re-delivers them. The next incarnation starts at
``C`` (``S`` of the next round). A round whose kill found nothing uncommitted (a commit landed
between the scrape and the kill) is repeated, up to ``rounds_max``.

The seed (``SALESLEDGER_CRASH_SEED``, printed) fixes each round's delay between the restarted
worker taking its first record and the kill; the kill then falls on the next record the worker
takes, so the moment is reproducible up to the feeder's pacing.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
import urllib.request
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

SEED_ENV = "SALESLEDGER_CRASH_SEED"
_RECORDS = re.compile(r'^salesledger_stream_records_total\{stage="(\w+)"\} ([0-9.e+]+)$', re.M)
_POLL_S = 0.02


def seed(default: int) -> int:
    """The crash seed: ``$SALESLEDGER_CRASH_SEED`` or ``default`` (printed by the caller)."""
    return int(os.environ.get(SEED_ENV, default))


def records_taken(port: int, stage: str) -> int | None:
    """``salesledger_stream_records_total{stage}`` of the worker on ``port`` (None: not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for name, value in _RECORDS.findall(text):
        if name == stage:
            return int(float(value))
    return 0  # the counter has no sample until the agent takes its first record


def committed_total(bootstrap: str, group: str, topics: list[str]) -> int:
    """Sum over ``topics`` (partition 0) of ``group``'s committed offsets (none: 0)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        parts = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=30)
        return sum(max(0, p.offset) for p in parts)
    finally:
        consumer.close()


@dataclass
class Round:
    """One kill: delay drawn from the seed, positions, and the restart that followed."""

    delay_s: float
    started_at: int        # S: committed offsets when this incarnation started
    taken: int = 0         # R: records its agent took before the kill
    committed: int = 0     # C: committed offsets after the kill
    restart_s: float = 0.0  # kill -> the next incarnation takes its first record

    @property
    def uncommitted(self) -> int:
        """Records processed but not committed at the kill (P - C)."""
        return self.started_at + self.taken - self.committed


@dataclass
class KillRounds:
    """Kill ``worker`` (``posting-0``) of ``pipeline`` ``kills`` times, see the module docstring.

    ``port``: its metrics port; ``group`` / ``topics``: its consumer group and input topics."""

    pipeline: object
    worker: str
    stage: str
    port: int
    group: str
    topics: list[str]
    seed: int
    kills: int = 10
    rounds_max: int = 16
    delay_s: tuple[float, float] = (0.3, 2.0)
    rounds: list[Round] = field(default_factory=list)

    def run(self, deadline_s: float = 240.0) -> list[Round]:
        """Do the rounds on a fresh pipeline (its input topics start at offset 0 and the worker
        has not restarted yet); return the proven rounds."""
        rng = random.Random(self.seed)
        start = 0
        self._wait_taking(time.monotonic(), deadline_s)
        assert self._restarts() == 0, "the first incarnation must be the one that started at 0"
        while sum(r.uncommitted > 0 for r in self.rounds) < self.kills:
            assert len(self.rounds) < self.rounds_max, self.summary()
            item = Round(delay_s=rng.uniform(*self.delay_s), started_at=start)
            time.sleep(item.delay_s)
            pid, item.taken = self._kill_at_next_record(deadline_s)
            killed_at = time.monotonic()
            self._poll(f"{self.worker} restarted",
                       lambda: self.pipeline.worker_pid(self.worker) != pid, deadline_s)
            item.committed = start = self._committed()
            item.restart_s = self._wait_taking(killed_at, deadline_s)
            self.rounds.append(item)
        return [r for r in self.rounds if r.uncommitted > 0]

    def summary(self) -> str:
        """One line per round (for the test's output and failure messages)."""
        return "\n".join(
            f"{self.worker} round {n}: delay {r.delay_s:.2f} s, S={r.started_at} R={r.taken} "
            f"C={r.committed} uncommitted={r.uncommitted}, restart {r.restart_s:.1f} s"
            for n, r in enumerate(self.rounds))

    def _restarts(self) -> int:
        state = self.pipeline.workers()
        return next(w["restarts"] for w in state["workers"] if w["name"] == self.worker)

    def _poll(self, what: str, check, deadline_s: float) -> None:  # noqa: ANN001
        deadline = time.monotonic() + deadline_s
        while not check():
            assert self.pipeline.supervisor.poll() is None, f"supervisor exited\n{self.pipeline.log_tail()}"
            assert time.monotonic() < deadline, f"{what}: not within {deadline_s:.0f} s\n" \
                f"{self.summary()}\n{self.pipeline.log_tail()}"
            time.sleep(0.1)

    def _committed(self) -> int:
        return committed_total(self.pipeline.settings.kafka_bootstrap, self.group, self.topics)

    def _kill_at_next_record(self, deadline_s: float) -> tuple[int, int]:
        """SIGKILL the worker right after its agent takes one more record; (pid, records)."""
        pid = self.pipeline.worker_pid(self.worker)
        before = records_taken(self.port, self.stage)
        assert before is not None, f"{self.worker} metrics port {self.port} not answering"
        deadline = time.monotonic() + deadline_s
        while True:
            now = records_taken(self.port, self.stage)
            if now is not None and now > before:
                os.kill(pid, signal.SIGKILL)
                return pid, now
            assert time.monotonic() < deadline, f"{self.worker} took no record"
            time.sleep(_POLL_S)

    def _wait_taking(self, since: float, deadline_s: float) -> float:
        """Wait until the running incarnation has taken a record; seconds since ``since``."""
        self._poll(f"{self.worker} taking records",
                   lambda: (records_taken(self.port, self.stage) or 0) > 0, deadline_s)
        return time.monotonic() - since
