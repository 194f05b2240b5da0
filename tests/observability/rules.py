"""Helpers of the observability tests: the rule files, the metric names their expressions use,
promtool, and reading a /metrics page."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import yaml

from salesledger.resources import resource_path

RULES_DIR = resource_path("deploy/prometheus")
#: PromQL words that look like metric names but are functions, keywords or label values.
_PROMQL_WORDS = {"sum", "by", "rate", "increase", "delta", "deriv", "max", "and", "or",
                 "histogram_quantile", "le", "without", "on", "ignoring", "unless"}


def rule_files() -> list[Path]:
    """Every rule file of deploy/prometheus/."""
    files = sorted(RULES_DIR.glob("*.yml"))
    assert files, f"no rule files in {RULES_DIR}"
    return files


def rules() -> list[dict]:
    """Every rule (recording and alerting) of every rule file."""
    out = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend(group["rules"])
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names (not recorded ``a:b:c`` series, functions or label names) in ``expr``."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    names = set()
    for token in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_ranges):
        if ":" in token or token in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"[a-z][a-z0-9_]*", token) and "_" in token:
            names.add(token)
    return names


def used_metric_names() -> dict[str, str]:
    """Metric name -> the first rule (record or alert name) using it."""
    used: dict[str, str] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, rule.get("alert") or rule.get("record"))
    return used


DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"


def _panel_exprs(panels: list[dict]) -> list[tuple[str, str]]:
    out = []
    for panel in panels:
        out += [(panel.get("title", "?"), t["expr"]) for t in panel.get("targets", [])
                if t.get("expr")]
        out += _panel_exprs(panel.get("panels", []))  # rows hold panels too
    return out


def dashboard_metric_names() -> dict[str, str]:
    """Metric name -> ``dashboard: panel`` of the first Grafana panel (Prometheus query) using
    it, over deploy/grafana/dashboards/*.json."""
    import json

    used: dict[str, str] = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for title, expr in _panel_exprs(json.loads(path.read_text()).get("panels", [])):
            for name in metric_names(expr):
                used.setdefault(name, f"{path.stem}: {title}")
    return used


def promtool() -> str:
    """Path of promtool (Debian package ``prometheus``); fails when missing."""
    path = shutil.which("promtool")
    assert path, "promtool not found: install the Debian package prometheus (make system)"
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    """``promtool <args>``; output in the returned process."""
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def scrape(url: str, timeout_s: float = 10.0) -> dict[str, float]:
    """A /metrics page as ``{sample line name with labels: value}`` (comments dropped)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def sample_names(samples: dict[str, float]) -> set[str]:
    """The metric names of the samples (``name{labels}`` -> ``name``)."""
    return {key.split("{", 1)[0] for key in samples}
