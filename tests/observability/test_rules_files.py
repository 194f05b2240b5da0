"""The Prometheus files as code: promtool checks the config and every rule file, promtool's unit
tests drive each alert across its production threshold, and every salesledger metric a rule
uses is built in :mod:`salesledger.metrics` (no rule over a name nobody defines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from salesledger import metrics
from salesledger.config import Settings
from salesledger.stack.prometheus import PrometheusService
from tests.observability.rules import (
    RULES_DIR,
    rule_files,
    rules,
    run_promtool,
    used_metric_names,
)

HERE = Path(__file__).parent


def test_promtool_checks_every_rule_file():
    result = run_promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(rule_files())


def test_promtool_checks_the_rendered_config_which_loads_the_rules(tmp_path):
    settings = Settings(profile="test", stack_dir=tmp_path)
    service = PrometheusService(settings)
    service.prepare()
    config = yaml.safe_load(service.config_path().read_text())
    assert config["rule_files"] == [f"{RULES_DIR}/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["salesledger-exporter"]["static_configs"][0]["targets"] == [
        f"{settings.host}:{metrics.ExporterSettings().port}"]
    result = run_promtool("check", "config", str(service.config_path()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_files())} rule files found" in result.stdout


def test_promtool_unit_tests_fire_each_alert_at_its_threshold(tmp_path):
    text = (HERE / "alerts_unit.yml").read_text().replace("RULES_DIR", str(RULES_DIR))
    unit = tmp_path / "alerts_unit.yml"
    unit.write_text(text)
    result = run_promtool("test", "rules", str(unit))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_salesledger_metric_a_rule_uses_is_built_in_salesledger_metrics():
    registry, seen = CollectorRegistry(), set()
    for group in metrics.GROUPS.values():
        for collector in group:
            if id(collector) not in seen:  # PARTITIONS is in two groups
                seen.add(id(collector))
                registry.register(collector)
    metrics.PARTITIONS.observe("sink", "t", 0, 1, 2)  # the tracker's families need one sample
    try:
        exposed = set(re.findall(r"^# TYPE (\S+) (\S+)", generate_latest(registry).decode(), re.M))
    finally:
        metrics.PARTITIONS.retain("sink", set())
    families = {name for name, _ in exposed}
    suffixes = ("_total", "_bucket", "_sum", "_count")
    missing = []
    for name, rule in used_metric_names().items():
        if not name.startswith("salesledger_"):
            continue
        base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
        if name not in families and base not in families:
            missing.append(f"{name} (used by {rule})")
    assert not missing, missing


def test_alerts_use_only_recorded_series_that_are_recorded():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        for series in re.findall(r"salesledger:[a-z0-9_:]+", rule["expr"]):
            assert series in recorded, f"{rule.get('alert') or rule.get('record')}: {series}"


def test_production_thresholds_and_labels():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) >= {"ReplicationSlotLagHigh", "DeadLettersRising", "HeldDocumentsWaiting",
                           "FreshnessP99High", "PartitionStalled", "StoreRejections"}
    assert alerts["ReplicationSlotLagHigh"]["expr"].endswith("> 1073741824")  # 1 GiB
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"]["summary"], name
