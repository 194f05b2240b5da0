"""Prometheus from Debian's package, own config and TSDB under ``<stack_dir>/prometheus``.

Scrapes the two JMX exporters (Kafka broker, Kafka Connect) and the salesledger workers that
register themselves with :func:`register_worker_target` (file-based service discovery).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
from pathlib import Path

from salesledger.config import Settings
from salesledger.metrics import ExporterSettings
from salesledger.resources import resource_path
from salesledger.stack import process
from salesledger.stack.base import Health, Service, deploy_file
from salesledger.stack.connect import http_json

JMX_JOBS = ("kafka-broker", "kafka-connect")


def targets_dir(settings: Settings) -> Path:
    """Folder of file_sd target files for the ``salesledger-workers`` job."""
    return settings.stack_dir / "prometheus" / "targets"


def register_worker_target(settings: Settings, name: str, port: int,
                           labels: dict[str, str] | None = None) -> Path:
    """Make Prometheus scrape ``127.0.0.1:<port>`` as worker ``name`` (picked up within 10 s).

    ``port`` should lie in ``settings.worker_metrics_ports`` (inclusive range). Returns the
    target file; :func:`unregister_worker_target` removes it.
    """
    low, high = settings.worker_metrics_ports
    if not low <= port <= high:
        raise ValueError(f"worker metrics port {port} outside {low}-{high}")
    folder = targets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    entry = [{"targets": [f"{settings.host}:{port}"],
              "labels": {"worker": name, **(labels or {})}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, indent=2))
    os.replace(tmp, path)
    return path


def unregister_worker_target(settings: Settings, name: str) -> None:
    """Stop scraping worker ``name``."""
    (targets_dir(settings) / f"{name}.json").unlink(missing_ok=True)


class PrometheusService(Service):
    """Prometheus on ``prometheus_port``."""

    name = "prometheus"
    needs = ("kafka",)  # its health also waits for Connect's JMX target

    @property
    def port(self) -> int:
        return self.settings.prometheus_port

    def config_path(self) -> Path:
        return self.home / "prometheus.yml"

    def marker(self) -> str:
        return str(self.config_path())

    def binaries(self) -> dict[str, Path | None]:
        return {"prometheus": self.settings.prometheus_bin}

    def prepare(self) -> None:
        s = self.settings
        targets_dir(s).mkdir(parents=True, exist_ok=True)
        low, high = s.worker_metrics_ports
        values = {"host": s.host, "jmx_broker_port": s.jmx_broker_port,
                  "jmx_connect_port": s.jmx_connect_port, "targets_dir": targets_dir(s),
                  "worker_ports": f"{low}-{high}",
                  # rule files and the slot exporter: salesledger.metrics / cli.exporter
                  "rules_dir": resource_path("deploy/prometheus"),
                  "exporter_port": ExporterSettings().port}
        process.render_file(deploy_file("prometheus/prometheus.yml"), self.config_path(), values)

    def start(self) -> subprocess.Popen:
        argv = [str(self.settings.prometheus_bin), f"--config.file={self.config_path()}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address={self.settings.host}:{self.port}",
                "--storage.tsdb.retention.time=15d", "--web.enable-lifecycle"]
        return process.spawn(argv, log_path=self.log_path, pid_file=self.pid_file, cwd=self.home)

    def health(self) -> Health:
        """Ready, and the targets of both JMX jobs were scraped successfully."""
        base = self.settings.prometheus_url
        try:
            build = http_json(f"{base}/api/v1/status/buildinfo")
            targets = http_json(f"{base}/api/v1/targets?state=active")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return Health(False, f"API not answering: {exc}")
        version = build.get("data", {}).get("version")
        by_job = {t["labels"].get("job"): t for t in targets["data"]["activeTargets"]}
        problems = []
        for job in JMX_JOBS:
            target = by_job.get(job)
            if target is None:
                problems.append(f"{job}: no target")
            elif target.get("health") != "up":
                problems.append(f"{job}: {target.get('health')} {target.get('lastError', '')}".strip())
        if problems:
            return Health(False, "; ".join(problems), version)
        workers = sum(1 for t in targets["data"]["activeTargets"]
                      if t["labels"].get("job") == "salesledger-workers")
        return Health(True, f"targets up: {', '.join(JMX_JOBS)}; {workers} worker targets",
                      version)
