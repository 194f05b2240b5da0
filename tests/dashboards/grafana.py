"""Reading the provisioned Grafana files and turning panel queries into what Grafana would send.

Grafana's PostgreSQL datasource replaces the macros ``$__timeFrom()`` / ``$__timeTo()`` by
quoted UTC timestamps and interpolates single-value template variables raw with ``'`` doubled
(grafana ``SqlDatasource.interpolateVariable``). :func:`render_sql` does the same,
deterministically, for a window of whole days; anything ``$``-prefixed left over fails.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Iterator

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
PG_UID = "salesledger-accounting"
PROM_UID = "salesledger-prometheus"
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of deploy/grafana/dashboards, by file stem."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The dashboard's panels, rows' children included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """The dashboard's constant template variables: name -> value."""
    return {v["name"]: v["query"] for v in dashboard.get("templating", {}).get("list", [])
            if v["type"] == "constant"}


def render_sql(raw: str, values: dict[str, str], date_from: dt.date, date_to: dt.date) -> str:
    """``raw`` with the time macros for [date_from 00:00:00Z, date_to 23:59:59Z] and the
    variables ``values`` substituted as Grafana does. Raises KeyError for an unknown variable."""
    text = raw.replace("$__timeFrom()", f"'{date_from.isoformat()}T00:00:00Z'")
    text = text.replace("$__timeTo()", f"'{date_to.isoformat()}T23:59:59Z'")
    assert "$__" not in text, f"unsupported Grafana macro in {raw!r}"
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)].replace("'", "''"), text)
