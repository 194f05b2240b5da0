"""The bench's summary as a rich table: every figure as median (min–max) of the repeats."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}"


def _cell(data: dict, key: str, digits: int) -> str:
    """``median (min–max)``; just the median when min and max equal it (one repeat)."""
    median, low, high = data.get(key), data.get(f"{key}_min"), data.get(f"{key}_max")
    if median is None or low is None or high is None or low == high:
        return _n(median, digits)
    return f"{_n(median, digits)} ({_n(low, digits)}–{_n(high, digits)})"


def _row(table: Table, label: str, data: dict, key: str, unit: str, digits: int = 0) -> None:
    table.add_row(label, _cell(data, key, digits), unit)


def _title(document: dict[str, Any]) -> str:
    load = document["machine"]
    per_repeat = " / ".join(f"{l[0]:.1f}" for l in load.get("load_avg_per_repeat") or [])
    lines = document["settings"].get("lines")
    return (f"salesledger bench — {document['repeats']} repeat(s), N = "
            f"{lines:,} lines, {document['settings'].get('dataset', 'synthetic')}; load avg "
            f"{load['load_avg_before'][0]:.1f} before, {per_repeat or '-'} per repeat, "
            f"{load['load_avg_after'][0]:.1f} after, on {load['cores']} cores")


def summary_table(document: dict[str, Any]) -> Table:
    """Rows: throughputs and their ratio, freshness per offered rate, replay, CPU per stage,
    peak RSS per worker, and the soak's figures when there was one. Columns: figure, median
    (min–max) of the repeats, unit."""
    table = Table(title=_title(document))
    for column in ("figure", "median (min–max)", "unit"):
        table.add_column(column, justify="right" if column.startswith("median") else "left")
    if document["repeats"]:
        _repeat_rows(table, document)
    if document.get("soak"):
        _soak_rows(table, document["soak"])
    return table


def _repeat_rows(table: Table, document: dict[str, Any]) -> None:
    _row(table, "Debezium alone (commit → CDC topic)", document, "debezium_lines_per_s",
         "lines/s")
    _row(table, "broker produce → consume", document, "broker_msgs_per_s", "msgs/s")
    _row(table, "pipeline (commit → accounting)", document, "pipeline_lines_per_s", "lines/s")
    _row(table, "pipeline (commit → accounting)", document, "pipeline_docs_per_s", "docs/s", 1)
    _row(table, "ratio pipeline / Debezium", document, "ratio_pipeline_to_debezium", "", 3)
    _row(table, "audit replay", document, "replay_entries_per_s", "entries/s")
    for rate, figures in sorted((document.get("freshness_s") or {}).items(),
                                key=lambda item: int(item[0])):
        for key in ("p50", "p95", "p99", "max"):
            _row(table, f"freshness {key} @ {rate} docs/s offered", figures, key, "s", 2)
        table.add_row(f"lag bounded @ {rate} docs/s", _n(figures.get("bounded")),
                      f"{figures.get('bounded_repeats', 0)}/{document['repeats']} repeats")
    for stage in sorted(document.get("cpu_s_per_1000_docs") or {}):
        if not stage.endswith(("_min", "_max")):
            _row(table, f"CPU {stage}", document["cpu_s_per_1000_docs"], stage,
                 "s / 1000 docs", 2)
    for worker in sorted(document.get("rss_mb_max") or {}):
        if not worker.endswith(("_min", "_max")):
            _row(table, f"peak RSS {worker}", document["rss_mb_max"], worker, "MiB")


def _soak_rows(table: Table, soak: dict[str, Any]) -> None:
    label = f"soak {soak.get('minutes', 0):g} min @ {soak.get('docs_per_s', 0):g} docs/s"
    fresh = soak["freshness_s"]
    table.add_row(f"{label}: delivered", f"{fresh['delivered_docs']:,}/{fresh['offered_docs']:,}",
                  "docs")
    for key in ("p50", "p99", "max"):
        table.add_row(f"{label}: freshness {key}", _n(fresh.get(key), 2), "s")
    for name, worker in sorted(soak["workers"].items()):
        table.add_row(f"{label}: RSS slope {name}", _n(worker["rss_slope_mb_per_min"], 3),
                      f"MiB/min ({worker['restarts']} restarts)")
        table.add_row(f"{label}: RSS {name} at 15 min", _n(worker["rss_mb_at_15_min"]), "MiB")
