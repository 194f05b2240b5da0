"""``stack up | down | status | reset``: the services in order, idempotently.

Order: PostgreSQL -> Kafka -> Kafka Connect -> Prometheus (-> schema registry when available).
``up`` runs every pre-flight check (binaries, ports, Maven) before it starts anything, leaves
running healthy services alone, and returns only when every required service passed its health
round trip. ``down`` stops only what ``up`` started (pid files), in reverse order.
"""

from __future__ import annotations

import shutil
import threading
import time
import urllib.error
from dataclasses import dataclass
from typing import Callable

import psycopg
from confluent_kafka.admin import AdminClient
from psycopg import sql

from salesledger.config import PROFILES, Profile, Settings
from salesledger.stack import jars, registry
from salesledger.stack.base import Health, Service, ServiceStatus
from salesledger.stack.connect import ConnectService, http_json
from salesledger.stack.errors import StackAborted, StackError
from salesledger.stack.kafka import HEALTH_TOPIC_PREFIX, JvmService, KafkaService
from salesledger.stack.postgres import PostgresService, cluster_home, orphan_home
from salesledger.stack.prometheus import PrometheusService
from salesledger.stack.topics import apply_topics

Reporter = Callable[[str], None]
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class UpEvent:
    """What ``up`` did with one service and how long it took (seconds)."""

    service: str
    action: str  # "started" | "already running"
    seconds: float
    health: Health


def services(settings: Settings) -> list[Service]:
    """The stack's services in start order (the registry only when it is available)."""
    found: list[Service] = [PostgresService(settings), KafkaService(settings),
                            ConnectService(settings), PrometheusService(settings)]
    service = registry.service(settings)
    if service is not None:
        found.append(service)
    return found


def service_by_name(settings: Settings, name: str) -> Service:
    """The service called ``name``; raises StackError for an unknown name."""
    for service in services(settings):
        if service.name == name:
            return service
    names = ", ".join(s.name for s in services(settings))
    raise StackError(name, f"no such service (known: {names})")


_DISK_FREE_MIN_BYTES = 1 << 30


def preflight(settings: Settings, todo: list[Service]) -> None:
    """Check everything needed to start ``todo`` before starting any of it: free disk, each
    service's binaries and ports, and Maven when jars are missing."""
    if todo:
        free = shutil.disk_usage(settings.stack_dir).free
        if free < _DISK_FREE_MIN_BYTES:
            raise StackError("stack", f"only {free >> 20} MiB free under {settings.stack_dir}; "
                             "the stack needs at least 1 GiB", settings.log_dir / "stack.log")
    for service in todo:
        service.preflight()
    if any(isinstance(s, JvmService) for s in todo):
        jars.preflight(settings)


def up(settings: Settings, report: Reporter = lambda _: None) -> list[UpEvent]:
    """Bring the stack up (idempotent). Raises StackError naming the failed service."""
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    all_services = services(settings)
    todo = [s for s in all_services if s.pid() is None]
    preflight(settings, todo)
    if any(isinstance(s, JvmService) for s in todo) and not jars.jars_ready(settings):
        report("resolving jars from Maven Central (first run; cached afterwards) ...")
        started = time.monotonic()
        jars.ensure_jars(settings)
        report(f"jars ready in {time.monotonic() - started:.0f} s")
    return _up_all(settings, all_services, report)


def _up_all(settings: Settings, all_services: list[Service], report: Reporter) -> list[UpEvent]:
    """Start each service in its own thread once the services it ``needs`` are healthy
    (PostgreSQL, Kafka and the registry together; Connect and Prometheus after Kafka).
    The first failure aborts the other waits and is raised (the root cause, not the
    abandoned starts)."""
    done = {s.name: threading.Event() for s in all_services}
    abort = threading.Event()
    events: dict[str, UpEvent] = {}
    errors: list[StackError] = []

    def run(service: Service) -> None:
        try:
            for need in service.needs:
                while need in done and not done[need].wait(0.5):
                    if abort.is_set():
                        return
            if abort.is_set():
                return
            service.abort = abort
            events[service.name] = _up_one(settings, service, report)
            done[service.name].set()
        except StackError as exc:
            errors.append(exc)
            abort.set()
        except Exception as exc:  # e.g. a psycopg error in converge: name the service
            errors.append(StackError(service.name, f"{type(exc).__name__}: {exc}",
                                     service.log_path))
            abort.set()

    threads = [threading.Thread(target=run, args=(s,), name=f"up-{s.name}", daemon=True)
               for s in all_services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        causes = [e for e in errors if not isinstance(e, StackAborted)]
        raise (causes or errors)[0]
    return [events[s.name] for s in all_services]


def _up_one(settings: Settings, service: Service, report: Reporter) -> UpEvent:
    started = time.monotonic()
    timeout = settings.start_timeout_s
    if service.pid() is not None:
        service.converge()
        health = service.status().health
        if not health.healthy:
            report(f"{service.name}: running but not healthy ({health.detail}); waiting ...")
            health = service.wait_healthy(None, timeout)
        action = "already running"
    else:
        report(f"{service.name}: starting ...")
        service.prepare()
        for notice in service.notices:
            report(f"{service.name}: {notice}")
        proc = service.start()
        service.wait_healthy(proc, timeout, check=service.ready)
        service.converge()
        health = service.wait_healthy(proc, timeout)
        action = "started"
    seconds = time.monotonic() - started
    report(f"{service.name}: {action}, healthy in {seconds:.1f} s — {health.detail}")
    return UpEvent(service.name, action, seconds, health)


def down(settings: Settings, report: Reporter = lambda _: None) -> list[str]:
    """Stop the services ``up`` started, in reverse order; returns the names stopped."""
    stopped = []
    for service in reversed(services(settings)):
        if service.stop():
            report(f"{service.name}: stopped")
            stopped.append(service.name)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """One row per service (the registry row says why it is absent when it is)."""
    rows = [s.status() for s in services(settings)]
    if registry.service(settings) is None:
        rows.append(registry.unavailable_status(settings))
    return rows


def all_healthy(rows: list[ServiceStatus]) -> bool:
    """True when every required service is healthy."""
    return all(r.health.healthy for r in rows if r.required)


# ---------------------------------------------------------------- reset

def belongs_to_prefix(name: str, prefix: str) -> bool:
    """A topic / group / connector belongs to a profile when its name starts with
    ``<prefix>.`` or ``<prefix>-`` or has ``.<prefix>.`` inside (Debezium heartbeat topics
    ``__debezium-heartbeat.<prefix>.cdc``)."""
    return (name.startswith(f"{prefix}.") or name.startswith(f"{prefix}-")
            or f".{prefix}." in name or name == prefix)


def reset_profile(settings: Settings, profile: Profile, report: Reporter = lambda _: None) -> None:
    """Wipe one profile's data on the running stack: its connectors (and their offsets), its
    replication slots, its databases (recreated empty), its topics and consumer groups (topics
    of ``deploy/topics.yaml`` recreated empty). The other profile is untouched."""
    pg, kafka, connect = (PostgresService(settings), KafkaService(settings),
                          ConnectService(settings))
    for service in (pg, kafka, connect):
        if service.pid() is None:
            raise StackError(service.name, "not running; reset of one profile needs the "
                             "running stack (`salesledger stack up`)", service.log_path)
    prefix = settings.topic_prefix_for(profile)
    databases = [settings.database(kind, profile) for kind in ("sales", "accounting")]
    _reset_connectors(settings, prefix, databases, report)
    _reset_databases(pg, databases, report)
    pg.converge()
    _reset_kafka(settings, prefix, report)
    apply_topics(settings, profile=profile)
    report(f"profile {profile}: reset done")


def _reset_connectors(settings: Settings, prefix: str, databases: list[str],
                      report: Reporter) -> None:
    base = settings.connect_url
    for name in http_json(f"{base}/connectors"):
        config = http_json(f"{base}/connectors/{name}/config")
        mine = (belongs_to_prefix(name, prefix)
                or belongs_to_prefix(config.get("topic.prefix", ""), prefix)
                or config.get("database.dbname") in databases)
        if not mine:
            continue
        http_json(f"{base}/connectors/{name}/stop", method="PUT")
        _wait_connector_stopped(base, name)
        try:
            http_json(f"{base}/connectors/{name}/offsets", method="DELETE", timeout_s=60)
        except urllib.error.HTTPError as exc:
            report(f"connector {name}: offsets not reset ({exc})")
        http_json(f"{base}/connectors/{name}", method="DELETE")
        report(f"connector {name}: deleted with its offsets")


def _wait_connector_stopped(base: str, name: str) -> None:
    for _ in range(60):
        state = http_json(f"{base}/connectors/{name}/status")["connector"]["state"]
        if state == "STOPPED":
            return
        time.sleep(0.5)


def _reset_databases(pg: PostgresService, databases: list[str], report: Reporter) -> None:
    with pg.connect_admin() as conn:
        for db in databases:
            slots = conn.execute("SELECT slot_name, active_pid FROM pg_replication_slots "
                                 "WHERE database = %s", (db,)).fetchall()
            for slot, active_pid in slots:
                if active_pid:
                    conn.execute("SELECT pg_terminate_backend(%s)", (active_pid,))
                _drop_slot(conn, slot)
                report(f"replication slot {slot}: dropped")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(db)))
            report(f"database {db}: dropped (recreated empty)")


def _drop_slot(conn: psycopg.Connection, slot: str) -> None:
    for _ in range(50):
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.2)
    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def _reset_kafka(settings: Settings, prefix: str, report: Reporter) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=_TIMEOUT_S).valid
              if belongs_to_prefix(g.group_id, prefix)]
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=_TIMEOUT_S).values():
            future.result(timeout=_TIMEOUT_S)
        report(f"consumer groups deleted: {len(groups)}")
    topics = [t for t in admin.list_topics(timeout=_TIMEOUT_S).topics
              if belongs_to_prefix(t, prefix) or t.startswith(HEALTH_TOPIC_PREFIX)]
    if not topics:
        return
    for future in admin.delete_topics(topics, operation_timeout=_TIMEOUT_S).values():
        future.result(timeout=_TIMEOUT_S)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = set(topics) & set(admin.list_topics(timeout=_TIMEOUT_S).topics)
        if not left:
            break
        time.sleep(0.5)
    report(f"topics deleted: {len(topics)}")


def reset_all(settings: Settings, report: Reporter = lambda _: None) -> None:
    """Stop everything and delete all data (both profiles). Keeps the resolved jars
    (``lib/``) and the generated credentials (``secrets/``)."""
    down(settings, report)
    home = cluster_home(settings)
    for path in (settings.stack_dir / "postgresql", settings.stack_dir / "kafka",
                 settings.stack_dir / "connect", settings.stack_dir / "prometheus",
                 settings.stack_dir / "registry" / "data", settings.stack_dir / "run"):
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    for folder in (home, orphan_home(settings)):
        if folder.exists():
            shutil.rmtree(folder)
    report(f"all data deleted under {settings.stack_dir} "
           "(kept: lib/, registry/build/, secrets/, logs/)")


__all__ = ["UpEvent", "services", "service_by_name", "up", "down", "status", "all_healthy",
           "reset_profile", "reset_all", "belongs_to_prefix", "PROFILES"]
