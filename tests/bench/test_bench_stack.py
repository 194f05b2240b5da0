"""``salesledger bench`` on the real stack with a tiny N and a one-minute soak: every
top-level key of ``latest.json`` is there and the throughputs, CPU and RSS figures are positive
numbers; the soak delivered every document and sampled every worker's RSS.
(Not a performance assertion: the figures depend on the machine and its load.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from salesledger.bench import figures

pytestmark = pytest.mark.stack


def test_bench_quick_smoke(tmp_path):
    out = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "salesledger", "bench", "--lines", "200", "--repeats", "1",
         "--freshness-s", "1", "--soak", "--soak-minutes", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert "Debezium alone" in done.stdout  # the table was printed
    doc = json.loads(out.read_text())
    for key in figures.SAMPLE_KEYS + figures.RUN_KEYS:
        assert key in doc, key
    for key in ("debezium_lines_per_s", "broker_msgs_per_s", "pipeline_lines_per_s",
                "pipeline_docs_per_s", "ratio_pipeline_to_debezium", "replay_entries_per_s"):
        assert doc[key] > 0 and doc[f"{key}_min"] <= doc[key] <= doc[f"{key}_max"], key
    assert set(doc["freshness_s"]) == {"10", "50", "100", "1000"}
    low = doc["freshness_s"]["10"]
    assert low["delivered_docs"] == low["offered_docs"] == 10
    assert 0 < low["p50"] <= low["p95"] <= low["p99"] <= low["max"]
    assert {"assembly", "posting", "sink", "debezium", "postgresql", "kafka"} <= \
        set(doc["cpu_s_per_1000_docs"])
    assert all(doc["cpu_s_per_1000_docs"][k] > 0 for k in ("assembly", "posting", "sink"))
    assert {"assembly-0", "posting-0", "sink-0"} <= set(doc["rss_mb_max"])
    assert all(doc["rss_mb_max"][k] > 0 for k in ("assembly-0", "posting-0", "sink-0"))
    assert doc["settings"]["durability"]["fsync"] == "on"
    assert doc["settings"]["durability"]["synchronous_commit"] == "on"
    assert doc["repeats"] == 1 and doc["seed"] == 42 and doc["machine"]["cores"] >= 1
    assert len(doc["machine"]["load_avg_per_repeat"]) == 1
    soak = doc["soak"]
    assert soak["freshness_s"]["delivered_docs"] == soak["freshness_s"]["offered_docs"] == 600
    assert 0 < soak["freshness_s"]["p50"] <= soak["freshness_s"]["p99"]
    workers = {"assembly-0", "posting-0", "sink-0"}
    assert workers <= set(doc["rss_slope_mb_per_min"]) and workers <= set(soak["workers"])
    for name in workers:  # samples at 0, 0.5 and 1 min; the slope after the warm-up's 15 s
        assert soak["workers"][name]["samples"] >= 3, name
        assert isinstance(doc["rss_slope_mb_per_min"][name], float), name
        assert doc["rss_mb_at_15_min"][name] is None  # a one-minute soak has no 15th minute
