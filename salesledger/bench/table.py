"""The bench's summary as a rich table (median, min and max of the repeats)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}"


def _row(table: Table, label: str, data: dict, key: str, unit: str, digits: int = 0) -> None:
    table.add_row(label, _n(data.get(key), digits), _n(data.get(f"{key}_min"), digits),
                  _n(data.get(f"{key}_max"), digits), unit)


def summary_table(document: dict[str, Any]) -> Table:
    """Rows: throughputs and their ratio, freshness per offered rate, replay, CPU per stage,
    peak RSS per worker. Columns: median, min, max of the repeats, unit."""
    load = document["machine"]
    title = (f"salesledger bench — {document['repeats']} repeat(s), N = "
             f"{document['settings']['lines']:,} lines, load avg {load['load_avg_before'][0]:.1f}"
             f" → {load['load_avg_after'][0]:.1f} on {load['cores']} cores")
    table = Table(title=title)
    for column in ("figure", "median", "min", "max", "unit"):
        table.add_column(column, justify="left" if column in ("figure", "unit") else "right")
    _row(table, "Debezium alone (commit → CDC topic)", document, "debezium_lines_per_s",
         "lines/s")
    _row(table, "broker produce → consume", document, "broker_msgs_per_s", "msgs/s")
    _row(table, "pipeline (commit → accounting)", document, "pipeline_lines_per_s", "lines/s")
    _row(table, "pipeline (commit → accounting)", document, "pipeline_docs_per_s", "docs/s", 1)
    _row(table, "ratio pipeline / Debezium", document, "ratio_pipeline_to_debezium", "", 3)
    _row(table, "audit replay", document, "replay_entries_per_s", "entries/s")
    for rate, figures in (document.get("freshness_s") or {}).items():
        for key in ("p50", "p95", "p99", "max"):
            _row(table, f"freshness {key} @ {rate} docs/s offered", figures, key, "s", 2)
        table.add_row(f"lag bounded @ {rate} docs/s", _n(figures.get("bounded")),
                      "", "", f"{figures.get('bounded_repeats', 0)}/{document['repeats']} repeats")
    for stage, _ in sorted((document.get("cpu_s_per_1000_docs") or {}).items()):
        if not stage.endswith(("_min", "_max")):
            _row(table, f"CPU {stage}", document["cpu_s_per_1000_docs"], stage,
                 "s / 1000 docs", 2)
    for worker in sorted(document.get("rss_mb_max") or {}):
        if not worker.endswith(("_min", "_max")):
            _row(table, f"peak RSS {worker}", document["rss_mb_max"], worker, "MiB")
    return table
