"""The bench's figure computation and JSON shape, on synthetic timings (no stack)."""

from __future__ import annotations

import io
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


def _rendered(table) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


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
    # the table shows median (min–max)
    assert "2,000 (1,000–4,000)" in _rendered(summary_table(doc))


def test_report_refuses_a_repeat_without_a_key():
    broken = sample(1.0, 1.0, [0.1], True)
    del broken["replay_entries_per_s"]
    with pytest.raises(ValueError, match="replay_entries_per_s"):
        figures.report([broken], machine={}, versions={}, settings={}, seed=1)
    with pytest.raises(ValueError):
        figures.summarize([])


def test_rss_slope_after_warmup_of_the_last_process():
    # 60 min, a sample every 0.5 min: 200 MiB flat during the 5 min warm-up, then +0.1 MiB/min
    samples = [(m / 2, 7, 200.0 if m / 2 < 5 else 200.0 + 0.1 * (m / 2 - 5)) for m in range(121)]
    worker = figures.rss_figures(samples, soak_min=60)
    assert worker["rss_slope_mb_per_min"] == pytest.approx(0.1)
    assert worker["rss_mb_at_15_min"] == pytest.approx(201.0)
    assert worker["restarts"] == 0 and worker["samples"] == 121 and worker["warmup_min"] == 5
    # a restart at minute 30: only the new process counts, its heap starts lower
    restarted = [(m, 7 if m < 30 else 8, r - (150.0 if m >= 30 else 0.0)) for m, _, r in samples]
    again = figures.rss_figures(restarted, soak_min=60)
    assert again["restarts"] == 1 and again["slope_samples"] == 61
    assert again["rss_slope_mb_per_min"] == pytest.approx(0.1)
    # a 2-minute soak: the first quarter is the warm-up, no 15-minute figure
    short = figures.rss_figures([(0.0, 1, 100.0), (0.5, 1, 101.0), (1.0, 1, 102.0),
                                 (1.5, 1, 103.0)], soak_min=2)
    assert short["warmup_min"] == 0.5 and short["slope_samples"] == 3
    assert short["rss_slope_mb_per_min"] == pytest.approx(2.0)
    assert short["rss_mb_at_15_min"] is None
    assert figures.rss_figures([(0.0, 1, 100.0)], soak_min=60)["rss_slope_mb_per_min"] is None
    with pytest.raises(ValueError):
        figures.rss_figures([], soak_min=60)


def test_soak_figures_per_worker_and_freshness():
    rss = {"sink-0": [(float(m), 3, 100.0 + m) for m in range(0, 21)],
           "posting-0": [(float(m), 4, 300.0) for m in range(0, 21)]}
    points = [(1_000.0 + i, 0.2 + (i % 10) / 10) for i in range(100)]
    soak = figures.soak_figures(rss, points, offered_docs=100, achieved_docs_per_s=10.0,
                                soak_min=20)
    assert soak["rss_slope_mb_per_min"] == {"posting-0": 0.0, "sink-0": pytest.approx(1.0)}
    assert soak["rss_mb_at_15_min"] == {"posting-0": 300.0, "sink-0": 115.0}
    fresh = soak["freshness_s"]
    assert fresh["delivered_docs"] == 100 and fresh["p50"] == pytest.approx(0.6)
    assert fresh["p99"] == pytest.approx(1.1) and fresh["bounded"] is True
    doc = {"repeats": 0, "settings": {"lines": 100}, "soak": {**soak, "minutes": 20,
                                                              "docs_per_s": 10},
           "machine": {"cores": 2, "load_avg_before": [1.0, 0, 0], "load_avg_after": [1.0, 0, 0]}}
    text = _rendered(summary_table(doc))  # a soak-only document renders
    assert "RSS slope sink-0" in text and "100/100" in text
