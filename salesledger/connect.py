"""Kafka Connect REST client and the Debezium connector of the sales database.

The connector definition is ``connect-configs/sales-postgres.json``: a template whose ``{{name}}``
placeholders are filled from settings (:func:`render_connector`). Secrets never appear in it: the
password is a ``${file:<secrets file>:<key>}`` reference resolved by Connect's FileConfigProvider.
The captured-table list (``table.include.list``) is read from the publication
(``pg_publication_tables``), so the migration that defines the publication is the one list of
what is captured.

Only the standard library talks HTTP here (urllib); every call has a timeout.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from salesledger.resources import resource_path

CONNECTOR_TEMPLATE = "connect-configs/sales-postgres.json"
_PLACEHOLDER_RE = re.compile(r"\{\{([a-z_]+)\}\}")
_REQUEST_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 1.0


class ConnectError(RuntimeError):
    """Kafka Connect answered with an error (``status`` is the HTTP status, 0 if unreachable)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"Kafka Connect: HTTP {status}: {message}" if status else message)
        self.status = status


class ConnectorFailed(RuntimeError):
    """The connector or one of its tasks is FAILED; the message carries Connect's trace."""


@dataclass(frozen=True)
class ConnectorState:
    """``state`` of the connector and of each task (``RUNNING``, ``FAILED``, ``PAUSED``...)."""

    name: str
    state: str
    task_states: tuple[str, ...]
    traces: tuple[str, ...]

    @property
    def running(self) -> bool:
        """True when the connector and at least one task, and every task, are RUNNING."""
        return (
            self.state == "RUNNING"
            and bool(self.task_states)
            and all(s == "RUNNING" for s in self.task_states)
        )

    @property
    def failed(self) -> bool:
        """True when the connector or any task is FAILED."""
        return self.state == "FAILED" or "FAILED" in self.task_states

    @classmethod
    def from_status(cls, body: Mapping[str, Any]) -> "ConnectorState":
        """Build from the body of ``GET /connectors/<name>/status``."""
        tasks = body.get("tasks", [])
        traces = [body["connector"].get("trace", "")] + [t.get("trace", "") for t in tasks]
        return cls(
            name=body["name"],
            state=body["connector"]["state"],
            task_states=tuple(t["state"] for t in tasks),
            traces=tuple(t for t in traces if t),
        )


class ConnectClient:
    """A thin client of the Kafka Connect REST API at ``base_url`` (``http://host:8083``)."""

    def __init__(self, base_url: str, timeout_s: float = _REQUEST_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                message = json.loads(raw).get("message", raw.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace")
            return error.code, {"error_code": error.code, "message": message}
        except (urllib.error.URLError, OSError) as error:
            raise ConnectError(0, f"Kafka Connect unreachable at {self.base_url}: {error}") from error

    def _ok(self, method: str, path: str, body: Any = None, allow: tuple[int, ...] = ()) -> Any:
        status, answer = self._call(method, path, body)
        if status >= 400 and status not in allow:
            raise ConnectError(status, (answer or {}).get("message", ""))
        return None if status in allow else answer

    def connectors(self) -> list[str]:
        """Names of the registered connectors."""
        return list(self._ok("GET", "/connectors"))

    def plugins(self) -> list[str]:
        """Class names of the installed connector plugins."""
        return [p["class"] for p in self._ok("GET", "/connector-plugins")]

    def get_config(self, name: str) -> dict[str, str] | None:
        """The connector's config, or None if no such connector."""
        return self._ok("GET", f"/connectors/{_quote(name)}/config", allow=(404,))

    def put_config(self, name: str, config: Mapping[str, str]) -> dict[str, Any]:
        """Create or update the connector (``PUT /connectors/<name>/config``): idempotent."""
        return self._ok("PUT", f"/connectors/{_quote(name)}/config", dict(config))

    def status(self, name: str) -> ConnectorState | None:
        """The connector's state, or None if no such connector."""
        body = self._ok("GET", f"/connectors/{_quote(name)}/status", allow=(404,))
        return None if body is None else ConnectorState.from_status(body)

    def stop(self, name: str, timeout_s: float = 60.0) -> None:
        """Stop the connector (``PUT .../stop``: tasks shut down, config kept) and wait until
        its state is STOPPED.

        Raises:
            TimeoutError: not STOPPED within ``timeout_s``.
        """
        self._ok("PUT", f"/connectors/{_quote(name)}/stop")
        deadline = time.monotonic() + timeout_s
        while (state := self.status(name)) is not None and state.state != "STOPPED":
            if time.monotonic() > deadline:
                raise TimeoutError(f"connector {name} not STOPPED after {timeout_s:.0f} s")
            time.sleep(_POLL_INTERVAL_S)

    def reset_offsets(self, name: str) -> None:
        """Erase the connector's committed source offsets (``DELETE .../offsets``); the
        connector must be STOPPED. Its next start begins as a new connector (snapshot mode)."""
        self._ok("DELETE", f"/connectors/{_quote(name)}/offsets")

    def delete(self, name: str, *, reset_offsets: bool = False) -> bool:
        """Delete the connector; False if it did not exist. (Its replication slot stays.)

        ``reset_offsets``: stop it and erase its committed offsets first. Do this when its slot
        is dropped too: offsets pointing into a dropped slot's history make a connector
        registered again under the same name fail ("no longer available on the server").
        """
        if reset_offsets and self.status(name) is not None:
            self.stop(name)
            self.reset_offsets(name)
        status, answer = self._call("DELETE", f"/connectors/{_quote(name)}")
        if status == 404:
            return False
        if status >= 400:
            raise ConnectError(status, (answer or {}).get("message", ""))
        # Connect answers the DELETE before its status store forgets the connector (it may
        # still be listed as STOPPED/UNASSIGNED for a moment): wait until it is gone.
        deadline = time.monotonic() + _DELETE_WAIT_S
        while self.status(name) is not None and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL_S)
        return True

    def restart(self, name: str) -> None:
        """Restart the connector and all its tasks."""
        self._ok("POST", f"/connectors/{_quote(name)}/restart?includeTasks=true&onlyFailed=false")

    def wait_running(self, name: str, timeout_s: float = 180.0) -> ConnectorState:
        """Poll until the connector and every task are RUNNING; return that state.

        Raises:
            ConnectorFailed: the connector or a task FAILED (with Connect's stack trace).
            TimeoutError: not RUNNING after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        state: ConnectorState | None = None
        while time.monotonic() < deadline:
            state = self.status(name)
            if state is not None and state.failed:
                raise ConnectorFailed(f"connector {name} FAILED:\n" + "\n".join(state.traces))
            if state is not None and state.running:
                return state
            time.sleep(_POLL_INTERVAL_S)
        raise TimeoutError(f"connector {name} not RUNNING after {timeout_s:.0f} s (last: {state})")


_DELETE_WAIT_S = 60.0  # bound on waiting for a deleted connector to leave the status store


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def render_connector(values: Mapping[str, str], template: Path | None = None) -> tuple[str, dict[str, str]]:
    """Fill the connector template's ``{{placeholders}}``; return (connector name, config).

    Every config value is a string (Connect's REST API takes strings). Values are substituted
    into the parsed JSON's strings, never into JSON text, so no value can change its structure.

    Raises:
        KeyError: the template uses a placeholder missing from ``values``.
    """
    template = template or resource_path(CONNECTOR_TEMPLATE)
    document = json.loads(template.read_text(encoding="utf-8"))

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise KeyError(f"connector template placeholder {{{{{key}}}}} has no value")
            return str(values[key])

        return _PLACEHOLDER_RE.sub(one, text)

    name = fill(document["name"])
    config = {key: fill(str(value)) for key, value in document["config"].items()}
    config["name"] = name
    return name, config


def table_include_list(tables: list[tuple[str, str]]) -> str:
    """Debezium's ``table.include.list`` for (schema, table) pairs: anchored, dot escaped."""
    if not tables:
        raise ValueError("the publication holds no table: nothing to capture")
    return ",".join(f"{re.escape(schema)}\\.{re.escape(table)}" for schema, table in sorted(tables))


# --------------------------------------------------------------------------- the sales connector

#: The publication created by migration 003 (same name in every profile's sales database).
PUBLICATION = "sl_sales_capture"
SNAPSHOT_MODE = "initial"
HEARTBEAT_INTERVAL_MS = 10_000


def connector_name(topic_prefix: str) -> str:
    """Name of the profile's sales connector: ``sl-sales-postgres`` / ``sltest-sales-postgres``."""
    return f"{topic_prefix}-sales-postgres"


def slot_name(topic_prefix: str) -> str:
    """Replication slot of the profile's connector (slots are cluster-wide, so per profile)."""
    return f"{topic_prefix}_sales_cdc".replace("-", "_").replace(".", "_")


def cdc_topic_prefix(topic_prefix: str) -> str:
    """Debezium's ``topic.prefix``: CDC topics are ``<prefix>.cdc.<schema>.<table>``."""
    return f"{topic_prefix}.cdc"


def connector_values(settings, *, name: str | None = None, slot: str | None = None,
                     snapshot_mode: str = SNAPSHOT_MODE,
                     heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
                     tables: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """The template values for ``settings`` (a :class:`salesledger.config.Settings`).

    ``table_include_list`` comes from the publication in the profile's sales database, so the
    database must be migrated first. ``snapshot_mode`` ``initial`` (go-live: read the existing
    rows once, then stream; master data and open documents become known) is the default.

    ``tables`` narrows the capture to some of the publication's (schema, table) pairs.

    Raises:
        ValueError: the publication is missing or empty (run ``salesledger salesdb migrate``),
            or ``tables`` names a table it does not hold.
    """
    from salesledger.salesdb.capture import publication_tables

    published = publication_tables(settings.dsn("sales", "owner"), PUBLICATION)
    if tables is not None and not set(tables) <= set(published):
        raise ValueError(f"not in publication {PUBLICATION}: {sorted(set(tables) - set(published))}")
    tables = published if tables is None else list(tables)
    prefix = settings.topic_prefix
    return {
        "connector_name": name or connector_name(prefix),
        "db_host": settings.host,
        "db_port": str(settings.pg_port),
        "db_name": settings.sales_db,
        "cdc_user": settings.cdc_role,
        "secrets_file": str(settings.secrets_file),
        "cdc_password_key": "cdc.password",
        "slot_name": slot or slot_name(prefix),
        "publication": PUBLICATION,
        "table_include_list": table_include_list(tables),
        "snapshot_mode": snapshot_mode,
        "topic_prefix": cdc_topic_prefix(prefix),
        "heartbeat_interval_ms": str(heartbeat_interval_ms),
    }


def register(settings, *, timeout_s: float = 180.0, client: ConnectClient | None = None,
             **overrides) -> ConnectorState:
    """Create or update the sales connector (``PUT .../config``) and wait until it RUNS.

    Idempotent: the same config again changes nothing. ``overrides`` go to
    :func:`connector_values` (``name``, ``slot``, ``snapshot_mode``, ``heartbeat_interval_ms``).

    Raises:
        ConnectError: Connect unreachable or refused the config.
        ConnectorFailed: the connector or its task FAILED (trace in the message).
        TimeoutError: not RUNNING within ``timeout_s``.
    """
    client = client or ConnectClient(settings.connect_url)
    name, config = render_connector(connector_values(settings, **overrides))
    client.put_config(name, config)
    return client.wait_running(name, timeout_s=timeout_s)
