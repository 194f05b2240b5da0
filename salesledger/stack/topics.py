"""Topics as code: ``deploy/topics.yaml`` applied to the broker.

Format::

    defaults: {partitions: 3, replication_factor: 1}
    topics:
      - name: "{prefix}.documents"     # {prefix}: the profile's topic prefix
        key: "document id"             # descriptive only
        partitions: 6                  # optional, else defaults
        config: {cleanup.policy: delete, retention.ms: "-1"}

:func:`apply_topics` creates missing topics, sets the listed configs on existing ones
(incrementally: unlisted configs are left alone) and adds partitions when more are asked for.
It never decreases partitions and never deletes a topic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)

from salesledger.config import Profile, Settings
from salesledger.resources import resource_path

_TIMEOUT_S = 30.0
# librdkafka's own chatter (e.g. purged background events on close) stays out of the CLI output;
# failures surface as exceptions from the admin futures.
_QUIET = logging.getLogger("salesledger.stack.topics.rdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the file with ``{prefix}`` filled in."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    key: str = ""


@dataclass
class TopicsReport:
    """What :func:`apply_topics` did (topic names)."""

    created: list[str] = field(default_factory=list)
    reconfigured: list[str] = field(default_factory=list)
    repartitioned: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def topics_file() -> Path | None:
    """``deploy/topics.yaml`` if it exists (shipped resource), else None."""
    try:
        return resource_path("deploy/topics.yaml")
    except FileNotFoundError:
        return None


def load_topics(path: Path, prefix: str) -> list[TopicSpec]:
    """Parse ``path`` and fill ``{prefix}``. Raises ValueError on a malformed entry."""
    document = yaml.safe_load(path.read_text()) or {}
    defaults = document.get("defaults") or {}
    specs: list[TopicSpec] = []
    for entry in document.get("topics") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{path}: topic entry without a name: {entry!r}")
        partitions = int(entry.get("partitions", defaults.get("partitions", 1)))
        replication = int(entry.get("replication_factor", defaults.get("replication_factor", 1)))
        if partitions < 1 or replication < 1:
            raise ValueError(f"{path}: {entry['name']}: partitions/replication must be >= 1")
        config = {str(k): _config_value(v) for k, v in (entry.get("config") or {}).items()}
        specs.append(TopicSpec(str(entry["name"]).replace("{prefix}", prefix), partitions,
                               replication, config, str(entry.get("key", ""))))
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise ValueError(f"{path}: duplicate topic names")
    return specs


def _config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def apply_topics(settings: Settings, profile: Profile | None = None,
                 path: Path | None = None) -> TopicsReport:
    """Make the broker match the topics file for ``profile`` (default: the settings' own).

    Raises ``confluent_kafka.KafkaException`` when the broker refuses a change.
    """
    path = path or topics_file()
    report = TopicsReport()
    if path is None:
        return report
    specs = load_topics(path, settings.topic_prefix_for(profile))
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "logger": _QUIET})
    existing = admin.list_topics(timeout=_TIMEOUT_S).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                      config=s.config) for s in missing], operation_timeout=_TIMEOUT_S)
        for name, future in futures.items():
            future.result(timeout=_TIMEOUT_S)
            report.created.append(name)
    present = [s for s in specs if s.name in existing]
    grow = []
    for spec in present:
        have = len(existing[spec.name].partitions)
        if spec.partitions > have:
            grow.append(NewPartitions(spec.name, spec.partitions))
        elif spec.partitions < have:
            report.warnings.append(f"{spec.name}: has {have} partitions, file asks {spec.partitions}; "
                                   "partitions are never decreased")
    if grow:
        for name, future in admin.create_partitions(grow, operation_timeout=_TIMEOUT_S).items():
            future.result(timeout=_TIMEOUT_S)
            report.repartitioned.append(name)
    _apply_configs(admin, [s for s in present if s.config], report)
    changed = set(report.created) | set(report.reconfigured) | set(report.repartitioned)
    report.unchanged = [s.name for s in specs if s.name not in changed]
    return report


def _apply_configs(admin: AdminClient, specs: list[TopicSpec], report: TopicsReport) -> None:
    if not specs:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    current = {r.name: f.result(timeout=_TIMEOUT_S)
               for r, f in admin.describe_configs(resources).items()}
    to_alter = []
    for spec in specs:
        entries = current[spec.name]
        diff = {k: v for k, v in spec.config.items() if k not in entries or entries[k].value != v}
        if diff:
            to_alter.append(ConfigResource(
                ConfigResource.Type.TOPIC, spec.name,
                incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                                     for k, v in diff.items()]))
    if to_alter:
        for resource, future in admin.incremental_alter_configs(to_alter).items():
            future.result(timeout=_TIMEOUT_S)
            report.reconfigured.append(resource.name)
