"""Files of the stack that need no running service: the Docker Compose variant parses and has
the stack's services; every file it mounts exists; templates have no unfilled placeholders."""

from __future__ import annotations

import re

import pytest
import yaml

from salesledger.resources import repo_root
from salesledger.stack.process import render

DEPLOY = repo_root() / "deploy"


def test_docker_compose_parses_and_lists_the_services():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"postgresql", "kafka", "connect", "prometheus", "grafana"}
    assert compose["services"]["kafka"]["image"].endswith(":4.3.0")
    assert compose["services"]["connect"]["image"].endswith(":3.6.1.Final")
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_docker_compose_mounts_files_of_the_repository():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_compose_and_local_prometheus_scrape_the_same_jobs():
    local = yaml.safe_load((DEPLOY / "local/prometheus/prometheus.yml").read_text()
                           .replace("{{", "").replace("}}", ""))
    compose = yaml.safe_load((DEPLOY / "local/compose/prometheus.yml").read_text())
    jobs = lambda doc: [job["job_name"] for job in doc["scrape_configs"]]  # noqa: E731
    assert jobs(local) == jobs(compose) == ["kafka-broker", "kafka-connect", "salesledger-workers",
                                          "salesledger-exporter"]


@pytest.mark.parametrize("relative", ["kafka/server.properties",
                                      "connect/connect-distributed.properties",
                                      "postgresql/salesledger.conf", "prometheus/prometheus.yml"])
def test_templates_name_only_known_placeholders(relative):
    text = (DEPLOY / "local" / relative).read_text()
    names = set(re.findall(r"\{\{\s*([a-z_0-9]+)\s*\}\}", text))
    assert names, relative
    rendered = render(text, {name: "X" for name in names})
    assert "{{" not in rendered
    with pytest.raises(KeyError):
        render(text, {})


def test_jmx_exporter_rule_files_parse():
    for path in (DEPLOY / "local" / "jmx").glob("*.yml"):
        rules = yaml.safe_load(path.read_text())["rules"]
        assert rules and all("pattern" in rule for rule in rules)
        for rule in rules:
            re.compile(rule["pattern"])


def test_pom_pins_kafka_to_debeziums_build_version():
    pom = (DEPLOY / "local" / "pom.xml").read_text()
    assert "<version.debezium>3.6.1.Final</version.debezium>" in pom
    assert "<version.kafka>4.3.0</version.kafka>" in pom
