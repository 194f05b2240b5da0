"""apply_topics(): creates missing topics, applies configs, adds partitions, never decreases or
deletes; `{prefix}` follows the profile. Against the real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import ConfigResource

from salesledger.stack.topics import apply_topics, load_topics, topics_file


def _write(path, name_suffix: str, partitions: int, retention: str, extra: str = ""):
    path.write_text(f"""
defaults: {{partitions: 2, replication_factor: 1}}
topics:
  - name: "{{prefix}}.astest.{name_suffix}"
    key: "test key"
    partitions: {partitions}
    config: {{cleanup.policy: delete, retention.ms: "{retention}"}}
  - name: "{{prefix}}.astest.{name_suffix}-defaults"
    key: "uses defaults"
{extra}""")


def _describe(admin, name):
    topic = admin.list_topics(timeout=30).topics[name]
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    config = admin.describe_configs([resource])[resource].result(timeout=30)
    return len(topic.partitions), {k: v.value for k, v in config.items()}


@pytest.mark.stack
def test_apply_topics_creates_reconfigures_grows_and_never_shrinks(settings, kafka_admin, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    path = tmp_path / "topics.yaml"
    name = f"{settings.topic_prefix}.astest.{suffix}"
    try:
        _write(path, suffix, 2, "-1")
        report = apply_topics(settings, path=path)
        assert sorted(report.created) == sorted([name, f"{name}-defaults"])
        partitions, config = _describe(kafka_admin, name)
        assert partitions == 2 and config["retention.ms"] == "-1"
        assert _describe(kafka_admin, f"{name}-defaults")[0] == 2

        again = apply_topics(settings, path=path)
        assert again.created == [] and again.reconfigured == [] and again.repartitioned == []

        _write(path, suffix, 4, "86400000")
        report = apply_topics(settings, path=path)
        assert report.repartitioned == [name] and report.reconfigured == [name]
        partitions, config = _describe(kafka_admin, name)
        assert partitions == 4 and config["retention.ms"] == "86400000"

        _write(path, suffix, 1, "86400000")
        report = apply_topics(settings, path=path)
        assert report.warnings and "never decreased" in report.warnings[0]
        assert _describe(kafka_admin, name)[0] == 4

        path.write_text("defaults: {partitions: 1, replication_factor: 1}\ntopics: []\n")
        apply_topics(settings, path=path)
        assert name in kafka_admin.list_topics(timeout=30).topics  # never deleted
    finally:
        doomed = [t for t in kafka_admin.list_topics(timeout=30).topics if t.startswith(name)]
        if doomed:
            for future in kafka_admin.delete_topics(doomed, operation_timeout=30).values():
                future.result(timeout=30)


@pytest.mark.stack
def test_project_topics_exist_for_both_profiles(settings, kafka_admin):
    path = topics_file()
    assert path is not None, "deploy/topics.yaml is applied by stack up"
    existing = kafka_admin.list_topics(timeout=30).topics
    for profile in ("run", "test"):
        for spec in load_topics(path, settings.topic_prefix_for(profile)):
            assert spec.name in existing, spec.name
            assert len(existing[spec.name].partitions) >= spec.partitions


def test_load_topics_fills_prefix_and_rejects_duplicates(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text('topics:\n  - {name: "{prefix}.a", partitions: 2}\n')
    assert [(s.name, s.partitions) for s in load_topics(path, "px")] == [("px.a", 2)]
    path.write_text('topics:\n  - {name: "{prefix}.a"}\n  - {name: "{prefix}.a"}\n')
    with pytest.raises(ValueError, match="duplicate"):
        load_topics(path, "px")
