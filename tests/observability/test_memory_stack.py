"""CDC-20, short form: a sink worker's resident memory is flat under steady load.

A real sink worker process (``python -m salesledger.streams.worker sink``) consumes a steady
stream of journal entries (about 100 a second, each a new entry) for ``LOAD_S`` seconds while
its ``process_resident_memory_bytes`` is read from its /metrics every ``SAMPLE_S`` seconds.
After ``WARMUP_S`` (imports, caches, librdkafka buffers), the least-squares slope of RSS must
stay under ``SLOPE_MIB_PER_MIN_MAX`` — generous: a worker keeping every record it wrote
(~2 KiB each here, ~12 MiB/min) fails it. The hour-long soak is the benchmark's.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import pytest
from confluent_kafka import Producer

from salesledger.sinks.decode import shared_serde
from tests.observability.conftest import Process, free_port, wait_until
from tests.observability.rules import scrape
from tests.sinks.sink_factories import make_entry

LOAD_S = 150.0
WARMUP_S = 40.0
SAMPLE_S = 5.0
ENTRIES_PER_TICK = 50
TICK_S = 0.5
SLOPE_MIB_PER_MIN_MAX = 6.0
MIB = 1024**2


def slope_per_s(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(t, y)`` points (units of y per unit of t)."""
    n = len(points)
    assert n >= 3, points
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / var


def test_slope_is_least_squares():
    assert slope_per_s([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope_per_s([(0, 5), (1, 4), (2, 6), (3, 5)]) == pytest.approx(0.2)


@pytest.mark.stack
def test_CDC_20_sink_worker_rss_flat_under_steady_load(settings, pipeline, processes, tmp_path):
    port = free_port()
    env = {**pipeline.env, "SALESLEDGER_SINK_METRICS_PORT": str(port),
           "SALESLEDGER_WORKER_NAME": f"{pipeline.prefix}-memory-sink"}
    worker = Process([sys.executable, "-m", "salesledger.streams.worker", "sink"], env,
                     tmp_path / "sink.log")
    processes.append(worker)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until("the sink worker's /metrics", lambda: scrape(url), deadline_s=120,
               details=worker.tail)

    serde, topic = shared_serde(), pipeline.topic("ledger.journal-entries")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 50})
    started = time.monotonic()
    next_sample, samples, n = started, [], 0
    while (now := time.monotonic()) - started < LOAD_S:
        assert worker.popen.poll() is None, f"sink worker exited\n{worker.tail()}"
        for _ in range(ENTRIES_PER_TICK):
            entry = make_entry(n)
            producer.produce(topic, key=entry.entry_id.encode(),
                             value=serde.encode("journal_entry", dataclasses.asdict(entry)))
            n += 1
        producer.poll(0)
        if now >= next_sample:
            samples.append((now - started, scrape(url)["process_resident_memory_bytes"]))
            next_sample += SAMPLE_S
        time.sleep(TICK_S)
    assert producer.flush(60) == 0

    def stored() -> int | None:
        count = pipeline.query("SELECT count(*) FROM journal_entries")[0][0]
        return count if count >= n else None

    written = wait_until("the worker wrote every entry", stored, details=worker.tail)
    assert written == n
    steady = [(t, rss) for t, rss in samples if t >= WARMUP_S]
    slope_mib_per_min = slope_per_s(steady) * 60 / MIB
    report = (f"{n} entries in {LOAD_S:.0f} s; RSS {samples[0][1] / MIB:.1f} -> "
              f"{samples[-1][1] / MIB:.1f} MiB; slope after warm-up "
              f"{slope_mib_per_min:+.2f} MiB/min")
    print(report)
    assert slope_mib_per_min < SLOPE_MIB_PER_MIN_MAX, report
