"""salesledger's settings: one frozen object per process, read from ``SALESLEDGER_*`` variables.

Usage::

    from salesledger.config import get_settings
    settings = get_settings()                       # cached; env prefix SALESLEDGER_
    settings.dsn("sales", "owner")                  # libpq URI for psycopg.connect()
    settings.kafka_bootstrap                        # "127.0.0.1:19092"
    settings.topic("documents")                     # "sl.documents" (profile run) / "sltest.documents"

Stable names (other layers import them; do not rename):

- ``profile``: ``"run"`` (the demo and real use) or ``"test"`` (``make test``). The profile chooses
  the databases (``sales``/``accounting`` vs ``sales_test``/``accounting_test``) and the topic
  prefix (``sl`` vs ``sltest``), so tests never touch the demo's data. One local stack serves both.
- ``stack_dir``: where the local stack keeps everything (default ``<repo>/.stack``).
- Ports (all on ``host`` = 127.0.0.1): ``pg_port`` 55432, ``kafka_port`` 19092,
  ``kafka_controller_port`` 19093, ``connect_port`` 18083, ``prometheus_port`` 19090,
  ``jmx_broker_port`` 17071, ``jmx_connect_port`` 17072, ``registry_port`` 18081,
  ``worker_metrics_ports`` 9464-9470 (Prometheus scrapes workers registered there).
- Roles (PostgreSQL): ``admin_role`` (superuser of the private cluster, only for the stack
  itself), ``owner_role`` (owns the databases, runs migrations, creates publications),
  ``cdc_role`` (LOGIN REPLICATION, Debezium), ``sink_role`` (writes the accounting store),
  ``reporting_role`` (read-only). Passwords: ``<role kind>_password`` (SecretStr), generated once
  into ``secrets_file`` (mode 600) unless given as ``SALESLEDGER_<KIND>_PASSWORD``.
- ``serde``: ``auto`` | ``registry`` | ``single-object`` (``SALESLEDGER_SERDE``): how the
  pipeline frames its own Avro topics (:meth:`salesledger.streams.serde.AvroSerde.for_settings`).
- ``secrets_file``: Java-properties file with ``<kind>.user`` / ``<kind>.password`` keys
  (``cdc.password`` ...), also read by Kafka Connect's FileConfigProvider:
  ``settings.connect_secret("cdc.password")`` -> ``${file:<secrets_file>:cdc.password}``.
"""

from __future__ import annotations

import os
import secrets as _secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from salesledger.resources import repo_root

Profile = Literal["run", "test"]
RoleKind = Literal["admin", "owner", "cdc", "sink", "reporting"]
DatabaseKind = Literal["sales", "accounting"]

ROLE_KINDS: tuple[RoleKind, ...] = ("admin", "owner", "cdc", "sink", "reporting")
DATABASE_KINDS: tuple[DatabaseKind, ...] = ("sales", "accounting")
PROFILES: tuple[Profile, ...] = ("run", "test")

_SECRETS_FILE_NAME = "credentials.properties"
_PASSWORD_BYTES = 24


def _default_stack_dir() -> Path:
    return repo_root() / ".stack"


class Settings(BaseSettings):
    """All configuration of salesledger (frozen). Fields map to ``SALESLEDGER_<FIELD>``.

    Raises ``pydantic.ValidationError`` on contradictory values (two services on one port,
    equal topic prefixes for both profiles).
    """

    model_config = SettingsConfigDict(env_prefix="SALESLEDGER_", frozen=True, extra="ignore")

    profile: Profile = "run"
    stack_dir: Path = Field(default_factory=_default_stack_dir)

    # ---- network (everything listens on loopback only)
    host: str = "127.0.0.1"
    pg_port: int = 55432
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    connect_port: int = 18083
    prometheus_port: int = 19090
    jmx_broker_port: int = 17071
    jmx_connect_port: int = 17072
    registry_port: int = 18081
    worker_metrics_ports: tuple[int, int] = (9464, 9470)

    # ---- databases and topics per profile
    run_databases: dict[str, str] = {"sales": "sales", "accounting": "accounting"}
    test_databases: dict[str, str] = {"sales": "sales_test", "accounting": "accounting_test"}
    run_topic_prefix: str = "sl"
    test_topic_prefix: str = "sltest"

    # ---- PostgreSQL roles and their passwords (None -> generated into secrets_file)
    admin_role: str = "sl_admin"
    owner_role: str = "sl_owner"
    cdc_role: str = "sl_cdc"
    sink_role: str = "sl_sink"
    reporting_role: str = "sl_reporting"
    admin_password: SecretStr | None = None
    owner_password: SecretStr | None = None
    cdc_password: SecretStr | None = None
    sink_password: SecretStr | None = None
    reporting_password: SecretStr | None = None

    # ---- binaries and JVM sizing
    pg_bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    prometheus_bin: Path = Path("/usr/bin/prometheus")
    java_bin: Path | None = None  # None: $JAVA_HOME/bin/java, else `java` on PATH
    maven_bin: str = "mvn"
    jars_dir: Path | None = None  # None: <stack_dir>/lib
    kafka_heap: str = "512m"
    connect_heap: str = "768m"
    # Seconds one service may take to become healthy before `stack up` fails.
    start_timeout_s: float = 240.0

    # ---- Avro framing of salesledger's own topics (salesledger/streams/serde.py,
    # AvroSerde.for_settings): "registry" Confluent framing (fails at start without the
    # registry), "single-object" Avro single-object encoding, "auto" the registry when it
    # answers at start, else single-object. Readers accept both framings whatever this says.
    serde: Literal["auto", "registry", "single-object"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _load_or_generate_passwords(cls, data: Any) -> Any:
        """Fill missing passwords from ``<stack_dir>/secrets/credentials.properties``,
        generating that file (mode 600) on first use."""
        if not isinstance(data, dict):
            return data
        stack_dir = Path(data.get("stack_dir") or _default_stack_dir()).absolute()
        data = {**data, "stack_dir": stack_dir}
        missing = [k for k in ROLE_KINDS if not data.get(f"{k}_password")]
        if missing:
            stored = _load_or_create_secrets(stack_dir / "secrets" / _SECRETS_FILE_NAME)
            data = dict(data)
            for kind in missing:
                data[f"{kind}_password"] = stored[f"{kind}.password"]
        return data

    @model_validator(mode="after")
    def _check_consistent(self) -> "Settings":
        ports = {
            "pg_port": self.pg_port, "kafka_port": self.kafka_port,
            "kafka_controller_port": self.kafka_controller_port,
            "connect_port": self.connect_port, "prometheus_port": self.prometheus_port,
            "jmx_broker_port": self.jmx_broker_port, "jmx_connect_port": self.jmx_connect_port,
            "registry_port": self.registry_port,
        }
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} are both {port}")
            seen[port] = name
        if self.run_topic_prefix == self.test_topic_prefix:
            raise ValueError("run_topic_prefix and test_topic_prefix must differ")
        if set(self.run_databases.values()) & set(self.test_databases.values()):
            raise ValueError("run_databases and test_databases must not share a database")
        for kind in DATABASE_KINDS:
            if kind not in self.run_databases or kind not in self.test_databases:
                raise ValueError(f"database kind {kind!r} missing from run/test databases")
        return self

    # ---- profile-dependent names
    def database(self, kind: DatabaseKind, profile: Profile | None = None) -> str:
        """Database name of ``kind`` ("sales" | "accounting") for ``profile`` (default: own)."""
        table = self.test_databases if (profile or self.profile) == "test" else self.run_databases
        return table[kind]

    @property
    def sales_db(self) -> str:
        """The sales (source) database of this profile: ``sales`` or ``sales_test``."""
        return self.database("sales")

    @property
    def accounting_db(self) -> str:
        """The accounting store of this profile: ``accounting`` or ``accounting_test``."""
        return self.database("accounting")

    def all_databases(self) -> list[str]:
        """Every database of both profiles (the stack creates them all)."""
        return [self.database(k, p) for p in PROFILES for k in DATABASE_KINDS]

    def topic_prefix_for(self, profile: Profile | None = None) -> str:
        """Topic prefix of ``profile`` (default: own): ``sl`` or ``sltest``."""
        return self.test_topic_prefix if (profile or self.profile) == "test" else self.run_topic_prefix

    @property
    def topic_prefix(self) -> str:
        """This profile's topic prefix (``sl`` / ``sltest``)."""
        return self.topic_prefix_for()

    def topic(self, suffix: str) -> str:
        """Full topic name: ``topic("documents")`` -> ``"sl.documents"``."""
        return f"{self.topic_prefix}.{suffix}"

    # ---- roles and DSNs
    def role(self, kind: RoleKind) -> str:
        """PostgreSQL role name of ``kind`` (admin | owner | cdc | sink | reporting)."""
        if kind not in ROLE_KINDS:
            raise ValueError(f"unknown role kind {kind!r}; expected one of {ROLE_KINDS}")
        return getattr(self, f"{kind}_role")

    def password(self, kind: RoleKind) -> SecretStr:
        """Password of the role ``kind`` (always set after validation)."""
        value = getattr(self, f"{kind}_password")
        assert value is not None, "passwords are filled by the validator"
        return value

    def _database_name(self, database: str, profile: Profile | None) -> str:
        return self.database(database, profile) if database in DATABASE_KINDS else database  # type: ignore[arg-type]

    def dsn(self, database: str, role: RoleKind = "owner", profile: Profile | None = None) -> str:
        """libpq URI for ``database`` as role ``role``, e.g.
        ``postgresql://sl_owner:...@127.0.0.1:55432/sales``.

        ``database`` is a kind, "sales" | "accounting", resolved for ``profile`` (default: this
        settings' profile), or any other literal database name ("postgres", "sales_test")."""
        name = self._database_name(database, profile)
        user = quote(self.role(role), safe="")
        pw = quote(self.password(role).get_secret_value(), safe="")
        return f"postgresql://{user}:{pw}@{self.host}:{self.pg_port}/{quote(name, safe='')}"

    def conninfo(self, database: str, role: RoleKind = "owner",
                 profile: Profile | None = None) -> dict[str, Any]:
        """Keyword form of :meth:`dsn` for ``psycopg.connect(**conninfo)``."""
        name = self._database_name(database, profile)
        return {"host": self.host, "port": self.pg_port, "dbname": name,
                "user": self.role(role), "password": self.password(role).get_secret_value()}

    # ---- service endpoints
    @property
    def kafka_bootstrap(self) -> str:
        """Kafka bootstrap servers, ``"127.0.0.1:19092"``."""
        return f"{self.host}:{self.kafka_port}"

    @property
    def connect_url(self) -> str:
        """Kafka Connect REST base URL, ``"http://127.0.0.1:18083"``."""
        return f"http://{self.host}:{self.connect_port}"

    @property
    def prometheus_url(self) -> str:
        """Prometheus base URL, ``"http://127.0.0.1:19090"``."""
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def registry_url(self) -> str:
        """Confluent-compatible schema registry base URL (``/apis/ccompat/v7`` of Apicurio)."""
        return f"http://{self.host}:{self.registry_port}/apis/ccompat/v7"

    # ---- files
    @property
    def secrets_file(self) -> Path:
        """Java-properties credentials file (``<kind>.user``, ``<kind>.password``), mode 600."""
        return self.stack_dir / "secrets" / _SECRETS_FILE_NAME

    def connect_secret(self, key: str) -> str:
        """Connect config-provider reference to a key of :attr:`secrets_file`, e.g.
        ``connect_secret("cdc.password")`` -> ``"${file:/…/credentials.properties:cdc.password}"``."""
        return "${file:%s:%s}" % (self.secrets_file, key)

    @property
    def lib_dir(self) -> Path:
        """Maven-resolved jars: ``broker/``, ``connect/``, ``debezium-plugin/``, ``jmx/``
        (default ``<stack_dir>/lib``; ``SALESLEDGER_JARS_DIR`` shares one copy between stacks)."""
        return self.jars_dir or self.stack_dir / "lib"

    @property
    def log_dir(self) -> Path:
        """One log file per service: ``<service>.log``."""
        return self.stack_dir / "logs"


def _load_or_create_secrets(path: Path) -> dict[str, str]:
    """Read the credentials properties file, adding any missing password (file mode 600)."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    wanted = {f"{k}.password" for k in ROLE_KINDS}
    if wanted <= values.keys():
        return values
    for key in sorted(wanted - values.keys()):
        values[key] = _secrets.token_urlsafe(_PASSWORD_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    _write_private(path, values)
    return values


def _write_private(path: Path, values: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# salesledger local stack credentials (generated; keep private)\n")
        for key in sorted(values):
            handle.write(f"{key}={values[key]}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_role_names(settings: Settings) -> None:
    """Record the role names (``<kind>.user``) in :attr:`Settings.secrets_file` next to the
    passwords, so Connect configs can reference ``${file:…:cdc.user}`` too."""
    path = settings.secrets_file
    values = _load_or_create_secrets(path)
    changed = False
    for kind in ROLE_KINDS:
        for key, value in ((f"{kind}.user", settings.role(kind)),
                           (f"{kind}.password", settings.password(kind).get_secret_value())):
            if values.get(key) != value:
                values[key] = value
                changed = True
    if changed:
        _write_private(path, values)


@lru_cache(maxsize=8)
def _cached(overrides: tuple[tuple[str, Any], ...]) -> Settings:
    return Settings(**dict(overrides))


def get_settings(**overrides: Any) -> Settings:
    """The process's settings (cached per set of overrides), e.g. ``get_settings(profile="test")``.

    Environment variables are read on the first call; call :func:`reset_settings_cache` after
    changing them (tests do).
    """
    return _cached(tuple(sorted(overrides.items())))


def reset_settings_cache() -> None:
    """Forget cached settings (after changing ``SALESLEDGER_*`` variables)."""
    _cached.cache_clear()
