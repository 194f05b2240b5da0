"""``salesledger bench`` on the real stack with a tiny N: every top-level key of
``latest.json`` is there and the throughputs, CPU and RSS figures are positive numbers.
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
         "--freshness-s", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert "Debezium alone" in done.stdout  # the table was printed
    doc = json.loads(out.read_text())
    for key in figures.SAMPLE_KEYS + figures.RUN_KEYS:
        assert key in doc, key
    for key in ("debezium_lines_per_s", "broker_msgs_per_s", "pipeline_lines_per_s",
                "pipeline_docs_per_s", "ratio_pipeline_to_debezium", "replay_entries_per_s"):
        assert doc[key] > 0 and doc[f"{key}_min"] <= doc[key] <= doc[f"{key}_max"], key
    assert set(doc["freshness_s"]) == {"10", "100", "1000"}
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
