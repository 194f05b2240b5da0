"""Pure figure computation of the benchmark: no I/O, no stack.

A bench run measures ``repeats`` times; each repeat yields one *sample* (a dict, see
:data:`SAMPLE_KEYS`). :func:`summarize` turns the samples into the published figures: every
number becomes the median of the repeats with ``<key>_min`` / ``<key>_max`` siblings (nested
dicts the same way), every yes/no becomes "yes in every repeat" with a ``<key>_repeats`` count.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Sequence

#: Top-level keys of one repeat's sample (all numbers are per second unless named otherwise).
SAMPLE_KEYS = ("debezium_lines_per_s", "broker_msgs_per_s", "pipeline_lines_per_s",
               "pipeline_docs_per_s", "ratio_pipeline_to_debezium", "freshness_s",
               "replay_entries_per_s", "cpu_s_per_1000_docs", "rss_mb_max")
#: Top-level keys of ``.bench/latest.json`` besides the summarized sample keys.
RUN_KEYS = ("machine", "versions", "settings", "seed", "repeats")
#: Offered rates of the freshness measurement (documents per second).
OFFERED_DOCS_PER_S = (10, 50, 100, 1000)
#: Freshness slope (seconds of freshness gained per second of load) above which lag is growing…
UNBOUNDED_SLOPE_MAX = 0.05
#: …unless all it gained over the whole window stays below this (noise of a short window), s.
UNBOUNDED_GROWTH_S_MIN = 1.0
#: Minutes of a soak left out of the RSS slope (caches, buffers and the JIT-less warm-up of a
#: Python worker fill first); a short soak leaves out its first quarter instead.
SOAK_WARMUP_MIN = 5.0
#: The soak reports every worker's RSS at this minute of the load (issue 6).
SOAK_RSS_AT_MIN = 15.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0 < q <= 100) of ``values``.

    Raises:
        ValueError: ``values`` is empty or ``q`` out of range.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} not in (0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def slope(points: Iterable[tuple[float, float]]) -> float:
    """Least-squares slope dy/dx of ``(x, y)`` points (0.0 with fewer than two distinct x)."""
    pts = list(points)
    if len(pts) < 2:
        return 0.0
    mean_x = sum(x for x, _ in pts) / len(pts)
    mean_y = sum(y for _, y in pts) / len(pts)
    var_x = sum((x - mean_x) ** 2 for x, _ in pts)
    if var_x == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in pts) / var_x


def rate(count: int, seconds: float) -> float:
    """``count / seconds`` (items per second).

    Raises:
        ValueError: ``seconds`` is not positive or ``count`` is negative.
    """
    if seconds <= 0 or count < 0:
        raise ValueError(f"rate of {count} items in {seconds} s")
    return count / seconds


def freshness_figures(points: Sequence[tuple[float, float]], offered_docs: int,
                      delivered_docs: int, achieved_docs_per_s: float) -> dict[str, Any]:
    """Freshness of one offered rate from ``(source commit epoch s, freshness s)`` points, one
    per delivered document.

    Lag is *bounded* when every offered document was delivered and freshness did not grow
    with the load: its slope over commit time stays below :data:`UNBOUNDED_SLOPE_MAX` (a
    pipeline slower than the offered rate falls behind by ``1 - capacity/offered`` seconds
    per second) or what it gained over the window stays below :data:`UNBOUNDED_GROWTH_S_MIN`.
    Returns p50, p95, p99, max, slope, bounded and the counts.
    """
    values = [f for _, f in points]
    growth = slope(points)
    window_s = (max(t for t, _ in points) - min(t for t, _ in points)) if points else 0.0
    flat = growth < UNBOUNDED_SLOPE_MAX or growth * window_s < UNBOUNDED_GROWTH_S_MIN
    figures: dict[str, Any] = {
        "p50": percentile(values, 50) if values else None,
        "p95": percentile(values, 95) if values else None,
        "p99": percentile(values, 99) if values else None,
        "max": max(values) if values else None,
        "slope_s_per_s": growth,
        "bounded": bool(values) and delivered_docs == offered_docs and flat,
        "offered_docs": offered_docs,
        "delivered_docs": delivered_docs,
        "achieved_docs_per_s": achieved_docs_per_s,
    }
    return figures


def with_ratio(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample plus ``ratio_pipeline_to_debezium`` (pipeline / Debezium lines per second)."""
    return {**sample, "ratio_pipeline_to_debezium":
            sample["pipeline_lines_per_s"] / sample["debezium_lines_per_s"]}


def summarize(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median of the repeats for every number (``<key>_min`` / ``<key>_max`` beside it),
    "in every repeat" for every yes/no (``<key>_repeats``: in how many), recursively for dicts.
    A value missing (None) in some repeats is summarized over the others; None in all stays None.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("no repeats to summarize")
    out: dict[str, Any] = {}
    keys: list[str] = []
    for sample in samples:
        keys += [k for k in sample if k not in keys]
    for key in keys:
        values = [s.get(key) for s in samples if s.get(key) is not None]
        if not values:
            out[key] = None
        elif all(isinstance(v, bool) for v in values):
            out[key] = all(values) and len(values) == len(samples)
            out[f"{key}_repeats"] = sum(values)
        elif all(isinstance(v, (int, float)) for v in values):
            out[key] = statistics.median(values)
            out[f"{key}_min"] = min(values)
            out[f"{key}_max"] = max(values)
        elif all(isinstance(v, dict) for v in values):
            out[key] = summarize(values)
        else:
            out[key] = values[-1]
    return out


def report(samples: Sequence[dict[str, Any]], *, machine: dict, versions: dict,
           settings: dict, seed: int) -> dict[str, Any]:
    """The document written to ``.bench/latest.json``: the summarized samples (with the
    ratio), ``machine``, ``versions``, ``settings``, ``seed``, ``repeats`` and the raw samples
    under ``samples``.

    Raises:
        ValueError: no samples, or a sample lacks a key of :data:`SAMPLE_KEYS`.
    """
    full = [with_ratio(s) for s in samples]
    for sample in full:
        missing = set(SAMPLE_KEYS) - sample.keys()
        if missing:
            raise ValueError(f"a repeat lacks {sorted(missing)}")
    summary = summarize(full)
    return {**summary, "machine": machine, "versions": versions, "settings": settings,
            "seed": seed, "repeats": len(full), "samples": full}


def rss_figures(samples: Sequence[tuple[float, int, float]], soak_min: float) -> dict[str, Any]:
    """RSS figures of one worker from its soak samples ``(minute since the load started, pid,
    RSS MiB)`` in time order.

    ``rss_slope_mb_per_min``: least-squares slope over the samples after the warm-up
    (``min(SOAK_WARMUP_MIN, soak_min / 4)``) of the worker's last process — a worker the
    supervisor restarted starts from a fresh heap, so its earlier process is left out (None
    with fewer than two such samples); ``rss_mb_at_15_min``: the first sample at or after
    :data:`SOAK_RSS_AT_MIN` (None when the soak is shorter); ``restarts``: pids seen minus one.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("no RSS samples")
    warmup_min = min(SOAK_WARMUP_MIN, soak_min / 4)
    pids = list(dict.fromkeys(pid for _, pid, _ in samples))
    kept = [(m, r) for m, pid, r in samples if pid == pids[-1] and m >= warmup_min]
    at = next((r for m, _, r in samples if m >= SOAK_RSS_AT_MIN), None)
    return {"rss_slope_mb_per_min": slope(kept) if len(kept) >= 2 else None,
            "rss_mb_at_15_min": at, "rss_mb_first": samples[0][2],
            "rss_mb_last": samples[-1][2], "rss_mb_max": max(r for _, _, r in samples),
            "restarts": len(pids) - 1, "samples": len(samples), "slope_samples": len(kept),
            "warmup_min": warmup_min}


def soak_figures(rss: dict[str, Sequence[tuple[float, int, float]]],
                 freshness_points: Sequence[tuple[float, float]], *, offered_docs: int,
                 achieved_docs_per_s: float, soak_min: float) -> dict[str, Any]:
    """The soak's figures: per worker :func:`rss_figures` (``workers``), the slope and the
    RSS at 15 minutes per worker side by side, and the freshness over the whole soak
    (:func:`freshness_figures`: p50, p95, p99, max, bounded)."""
    workers = {name: rss_figures(points, soak_min) for name, points in sorted(rss.items())
               if points}
    return {"workers": workers,
            "rss_slope_mb_per_min": {n: w["rss_slope_mb_per_min"] for n, w in workers.items()},
            "rss_mb_at_15_min": {n: w["rss_mb_at_15_min"] for n, w in workers.items()},
            "freshness_s": freshness_figures(freshness_points, offered_docs,
                                             len(freshness_points), achieved_docs_per_s)}
