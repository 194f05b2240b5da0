"""Kafka Connect (distributed mode, one worker) with the Debezium PostgreSQL connector.

REST on ``settings.connect_url`` (loopback). Plugin path ``<stack_dir>/lib/debezium-plugin``.
Secrets reach connector configs through the FileConfigProvider (``${file:<path>:<key>}``),
allowed to read ``<stack_dir>/secrets`` only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from salesledger.stack import jars, process
from salesledger.stack.base import Health, deploy_file
from salesledger.stack.kafka import JvmService

POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
_HTTP_TIMEOUT_S = 10.0


def http_json(url: str, method: str = "GET", body: Any = None,
              timeout_s: float = _HTTP_TIMEOUT_S) -> Any:
    """One JSON HTTP call (stdlib); raises ``urllib.error.URLError`` / ``HTTPError``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


class ConnectService(JvmService):
    """The Connect worker on ``connect_port``."""

    name = "connect"
    needs = ("kafka",)
    lib_name = "connect"
    main_class = "org.apache.kafka.connect.cli.ConnectDistributed"
    jmx_config = "jmx/kafka-connect.yml"

    @property
    def heap(self) -> str:  # type: ignore[override]
        return self.settings.connect_heap

    @property
    def jmx_port(self) -> int:  # type: ignore[override]
        return self.settings.jmx_connect_port

    @property
    def port(self) -> int:
        return self.settings.connect_port

    def config_path(self) -> Path:
        return self.home / "connect-distributed.properties"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        values = {"host": self.settings.host, "port": self.port,
                  "bootstrap": self.settings.kafka_bootstrap,
                  "plugin_path": self.settings.lib_dir / "debezium-plugin",
                  "secrets_dir": self.settings.secrets_file.parent}
        process.render_file(deploy_file("connect/connect-distributed.properties"),
                            self.config_path(), values)

    def health(self) -> Health:
        """The worker answers and lists PostgresConnector at the pinned Debezium version."""
        base = self.settings.connect_url
        want = jars.pom_property("version.debezium")
        try:
            info = http_json(f"{base}/")
            plugins = http_json(f"{base}/connector-plugins?connectorsOnly=true")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return Health(False, f"REST not answering: {exc}")
        version = f"{info.get('version')} (Debezium {want})"
        found = [p for p in plugins if p.get("class") == POSTGRES_CONNECTOR_CLASS]
        if not found:
            return Health(False, f"{POSTGRES_CONNECTOR_CLASS} not on the plugin path", version)
        if found[0].get("version") != want:
            return Health(False, f"PostgresConnector is {found[0].get('version')}, "
                                 f"expected {want}", version)
        return Health(True, f"PostgresConnector {want} listed; "
                            f"{len(http_json(f'{base}/connectors'))} connectors", version)
