"""The bench's figure computation and JSON shape, on synthetic timings (no stack)."""

from __future__ import annotations

import json

import pytest

from salesledger.bench import figures
from salesledger.bench.table import summary_table


def sample(debezium: float, pipeline: float, fresh_p: list[float], bounded: bool) -> dict:
    points = [(1_000.0 + i, f) for i, f in enumerate(fresh_p)]
    return {
        "debezium_lines_per_s": debezium, "broker_msgs_per_s": 10_000.0,
        "pipeline_lines_per_s": pipeline, "pipeline_docs_per_s": pipeline / 20,
        "replay_entries_per_s": 800.0,
        "freshness_s": {"100": figures.freshness_figures(points, len(points) if bounded
                                                         else len(points) + 1, len(points), 99.0)},
        "cpu_s_per_1000_docs": {"posting": 2.0, "sink": 1.0},
        "rss_mb_max": {"posting-0": 150.0},
    }


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert figures.percentile(values, 50) == 50.0
    assert figures.percentile(values, 99) == 99.0
    assert figures.percentile(values, 100) == 100.0
    assert figures.percentile([3.0], 95) == 3.0
    with pytest.raises(ValueError):
        figures.percentile([], 50)


def test_slope_and_rate():
    assert figures.slope([(0, 1.0), (1, 1.0), (2, 1.0)]) == 0.0
    assert figures.slope([(0, 0.0), (10, 5.0)]) == pytest.approx(0.5)
    assert figures.slope([(1, 2.0)]) == 0.0
    assert figures.rate(5_000, 2.0) == 2_500.0
    with pytest.raises(ValueError):
        figures.rate(1, 0.0)


def test_freshness_bounded_only_when_all_delivered_and_flat():
    flat = [(t, 0.3) for t in range(100)]
    growing = [(t, 0.3 + 0.5 * t) for t in range(100)]
    assert figures.freshness_figures(flat, 100, 100, 10.0)["bounded"] is True
    assert figures.freshness_figures(growing, 100, 100, 10.0)["bounded"] is False
    assert figures.freshness_figures(flat, 101, 100, 10.0)["bounded"] is False
    jitter = [(0.0, 0.2), (1.0, 0.5)]  # slope 0.3 but 0.3 s gained over a 1 s window
    assert figures.freshness_figures(jitter, 2, 2, 2.0)["bounded"] is True
    empty = figures.freshness_figures([], 5, 0, 10.0)
    assert empty["bounded"] is False and empty["p99"] is None


def test_report_medians_with_min_max_siblings_and_shape():
    samples = [sample(1_000.0, 500.0, [0.1, 0.1], True), sample(2_000.0, 600.0, [0.3, 0.3], True),
               sample(4_000.0, 2_000.0, [0.5, 5.0], False)]
    doc = figures.report(samples, machine={"cores": 2, "load_avg_before": [9.0, 0, 0],
                                           "load_avg_after": [8.0, 0, 0]},
                         versions={"python": "3.11"}, settings={"lines": 5_000}, seed=42)
    for key in figures.SAMPLE_KEYS + figures.RUN_KEYS:
        assert key in doc, key
    assert doc["repeats"] == 3 and doc["seed"] == 42
    assert (doc["debezium_lines_per_s"], doc["debezium_lines_per_s_min"],
            doc["debezium_lines_per_s_max"]) == (2_000.0, 1_000.0, 4_000.0)
    assert doc["pipeline_lines_per_s"] == 600.0
    # the ratio is taken per repeat, then its median: 0.5, 0.3, 0.5
    assert doc["ratio_pipeline_to_debezium"] == 0.5
    assert doc["ratio_pipeline_to_debezium_min"] == 0.3
    fresh = doc["freshness_s"]["100"]
    assert (fresh["p99"], fresh["p99_min"], fresh["p99_max"]) == (0.3, 0.1, 5.0)
    assert fresh["bounded"] is False and fresh["bounded_repeats"] == 2
    assert doc["cpu_s_per_1000_docs"]["posting"] == 2.0
    assert doc["cpu_s_per_1000_docs"]["posting_max"] == 2.0
    assert doc["rss_mb_max"]["posting-0_min"] == 150.0
    json.dumps(doc)  # the file is plain JSON
    summary_table(doc)  # and the table renders from it


def test_report_refuses_a_repeat_without_a_key():
    broken = sample(1.0, 1.0, [0.1], True)
    del broken["replay_entries_per_s"]
    with pytest.raises(ValueError, match="replay_entries_per_s"):
        figures.report([broken], machine={}, versions={}, settings={}, seed=1)
    with pytest.raises(ValueError):
        figures.summarize([])
