"""PostgreSQL from Debian's packages as a private cluster of the stack (not the system cluster).

Where the data lives: PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` OS user. A checkout may sit in a folder that user cannot traverse (``/root/...``,
CI's clone), so as root the cluster lives in a postgres-owned folder,
``/var/lib/postgresql/salesledger/<stack-dir-name>-<hash>/`` (one per stack dir), and
``<stack_dir>/postgresql`` is a symlink to it. The log file is opened by ``stack up`` and handed
to the server as its stdout, so the server needs no access to ``<stack_dir>/logs``. As a normal
user, everything is under ``<stack_dir>/postgresql`` and the server runs as that user.

Databases: ``sales``/``accounting`` (profile run) and ``sales_test``/``accounting_test`` (profile
test), all owned by the owner role. Roles (names from settings): owner; CDC (LOGIN REPLICATION,
CONNECT on the sales databases; SELECT on captured tables and INSERT/UPDATE on the heartbeat table
are granted by the sales migrations); sink writer (CONNECT on the accounting databases; default
privileges SELECT/INSERT/UPDATE on the owner's tables there); reporting (read-only: default
privilege SELECT on the owner's tables everywhere, ``default_transaction_read_only``).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from salesledger.config import PROFILES, Settings, write_role_names
from salesledger.stack import process
from salesledger.stack.base import Health, Service, deploy_file

_CONNECT_TIMEOUT_S = 5
_OS_USER = "postgres"
_SHARED_HOME = Path("/var/lib/postgresql/salesledger")


def _as_root() -> bool:
    return os.geteuid() == 0


def _setpriv() -> str | None:
    """util-linux's setpriv (PATH first, then its Debian location)."""
    found = shutil.which("setpriv")
    if found:
        return found
    return "/usr/bin/setpriv" if os.access("/usr/bin/setpriv", os.X_OK) else None


def cluster_home(settings: Settings) -> Path:
    """The real folder of the cluster (data dir, socket dir) for this stack dir."""
    if not _as_root():
        return settings.stack_dir / "postgresql"
    digest = hashlib.sha256(str(settings.stack_dir).encode()).hexdigest()[:10]
    return _SHARED_HOME / f"{settings.stack_dir.parent.name}-{digest}"


def orphan_home(settings: Settings) -> Path:
    """Where ``stack up`` moves a cluster an earlier stack dir at the same path left behind
    (:meth:`PostgresService._set_aside_orphan`; root only)."""
    home = cluster_home(settings)
    return home.with_name(home.name + ".orphaned")


class PostgresService(Service):
    """The private PostgreSQL cluster on ``settings.pg_port``."""

    name = "postgresql"

    @property
    def port(self) -> int:
        return self.settings.pg_port

    @property
    def cluster_home(self) -> Path:
        return cluster_home(self.settings)

    @property
    def data_dir(self) -> Path:
        return self.cluster_home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_home / "run"

    def marker(self) -> str:
        return f"-D {self.data_dir}"

    def binaries(self) -> dict[str, Path | None]:
        bins = self.settings.pg_bin_dir
        found: dict[str, Path | None] = {"postgres": bins / "postgres", "initdb": bins / "initdb"}
        if _as_root():
            setpriv = _setpriv()
            found["setpriv"] = Path(setpriv) if setpriv else None
        return found

    def preflight(self) -> None:
        if _as_root():
            try:
                pwd.getpwnam(_OS_USER)
            except KeyError:
                raise self.fail(f"OS user `{_OS_USER}` missing (is postgresql-15 installed? "
                                "run `make setup`)") from None
        super().preflight()

    # ---- running as the postgres OS user when root
    def _prefix(self) -> list[str]:
        if not _as_root():
            return []
        return [_setpriv() or "setpriv", f"--reuid={_OS_USER}", f"--regid={_OS_USER}", "--init-groups", "--"]

    def _own(self, path: Path) -> None:
        if _as_root():
            entry = pwd.getpwnam(_OS_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _make_home(self) -> None:
        home = self.cluster_home
        if _as_root():
            _SHARED_HOME.mkdir(parents=True, exist_ok=True)
            self._own(_SHARED_HOME)
            os.chmod(_SHARED_HOME, 0o700)
        for folder in (home, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            self._own(folder)
            os.chmod(folder, 0o700)
        link = self.settings.stack_dir / "postgresql"
        if _as_root() and not link.is_symlink():
            if link.exists():
                raise self.fail(f"{link} exists and is not the link to {home}; "
                                "remove it or run `salesledger stack reset --all`")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(home)

    def _write_config(self) -> None:
        values = {"host": self.settings.host, "port": self.port, "socket_dir": self.socket_dir}
        conf = self.data_dir / "salesledger.conf"
        process.render_file(deploy_file("postgresql/salesledger.conf"), conf, values, 0o600)
        hba = self.data_dir / "pg_hba.conf"
        process.render_file(deploy_file("postgresql/pg_hba.conf"), hba, {}, 0o600)
        main = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'salesledger.conf'"
        if include not in main.read_text():
            with open(main, "a") as handle:
                handle.write(f"\n# salesledger: the stack's settings\n{include}\n")
        for path in (conf, hba, main):
            self._own(path)

    def prepare(self) -> None:
        self._set_aside_orphan()
        self._make_home()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_config()
        if (self.data_dir / "postmaster.pid").exists():
            self._remove_stale_postmaster_pid()

    @property
    def orphan_home(self) -> Path:
        """Where :meth:`_set_aside_orphan` moves a cluster left by an earlier stack dir."""
        return orphan_home(self.settings)

    def _set_aside_orphan(self) -> None:
        """As root, move aside a cluster that an earlier stack dir at the same path left behind.

        The shared home is named after the stack dir's path, so a checkout deleted and cloned
        again at the same place (CI's clone, ``/check/work/main``) finds the old cluster, whose
        passwords died with the old ``secrets/``: every login then fails ("password
        authentication failed for user sl_admin", CI of 2026-12-08). A stack dir links to its
        cluster once it made it (``<stack_dir>/postgresql``), so data with no link is such an
        orphan. It is renamed to :attr:`orphan_home` (an older orphan of the same path is
        deleted: one is kept, so disk use stays bounded) and a new cluster is made.

        Raises :class:`StackError` when a server still runs on the orphan's data.
        """
        if not _as_root():
            return  # the cluster lives inside the stack dir and goes with it
        home = self.cluster_home
        link = self.settings.stack_dir / "postgresql"
        if link.is_symlink() or not (home / "data" / "PG_VERSION").exists():
            return
        pid = process.read_pid(home / "data" / "postmaster.pid")
        if pid is not None and str(home / "data") in process.cmdline(pid):
            raise self.fail(f"{home} was made by an earlier stack dir at {self.settings.stack_dir} "
                            f"and its server still runs (pid {pid}); stop it (`kill -INT {pid}`) "
                            "and run `stack up` again")
        orphan = self.orphan_home
        if orphan.exists():
            shutil.rmtree(orphan)
        home.rename(orphan)
        notice = (f"{home} holds a cluster made by an earlier stack dir at "
                  f"{self.settings.stack_dir} (no link to it, its credentials are gone); "
                  f"moved it to {orphan}, making a new cluster")
        self.log_line(f"WARNING: {notice}")
        self.notices.append(f"WARNING: {notice}")

    def _initdb(self) -> None:
        pwfile = self.cluster_home / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.settings.password("admin").get_secret_value() + "\n")
        self._own(pwfile)
        try:
            argv = self._prefix() + [
                str(self.settings.pg_bin_dir / "initdb"), "-D", str(self.data_dir),
                "-U", self.settings.admin_role, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums",
            ]
            self.run_tool(argv, "initdb (first start)", cwd=self.cluster_home)
        finally:
            pwfile.unlink(missing_ok=True)

    def _remove_stale_postmaster_pid(self) -> None:
        pid_path = self.data_dir / "postmaster.pid"
        pid = process.read_pid(pid_path)
        if pid is not None and "postgres" in process.cmdline(pid) and str(self.data_dir) in process.cmdline(pid):
            return  # a live server of this data dir that we did not start: postgres refuses anyway
        self.log_line(f"removing stale {pid_path} (pid {pid} is gone)")
        pid_path.unlink(missing_ok=True)

    def start(self) -> subprocess.Popen:
        argv = self._prefix() + [str(self.settings.pg_bin_dir / "postgres"), "-D", str(self.data_dir)]
        return process.spawn(argv, log_path=self.log_path, pid_file=self.pid_file,
                             cwd=self.cluster_home)

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        self.log_line("stopping (stack down): fast shutdown")
        process.stop_pid(pid, sig=signal.SIGINT, timeout_s=120.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    # ---- connections
    def connect_admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """Autocommit connection as the cluster's superuser (stack-internal use only)."""
        info = self.settings.conninfo(dbname, "admin")
        return psycopg.connect(**info, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)

    def converge(self) -> None:
        """Create or update roles, databases and default privileges (idempotent)."""
        s = self.settings
        write_role_names(s)
        with self.connect_admin() as conn:
            for kind in ("owner", "cdc", "sink", "reporting"):
                _ensure_role(conn, s.role(kind), s.password(kind).get_secret_value(),
                             replication=(kind == "cdc"))
            conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
                         .format(sql.Identifier(s.reporting_role)))
            for profile in PROFILES:
                for kind in ("sales", "accounting"):
                    _ensure_database(conn, s.database(kind, profile), s.owner_role)
        for profile in PROFILES:
            for kind in ("sales", "accounting"):
                with self.connect_admin(s.database(kind, profile)) as conn:
                    _grant_database(conn, s, s.database(kind, profile), kind)

    def ready(self) -> Health:
        """The superuser can log in (before roles exist)."""
        with self.connect_admin() as conn:
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        return Health(True, "accepting connections", version)

    def health(self) -> Health:
        """Log in as every role to every database it may use and run SQL."""
        s = self.settings
        with self.connect_admin() as conn:
            wal_level = conn.execute("SHOW wal_level").fetchone()[0]
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        if wal_level != "logical":
            return Health(False, f"wal_level is {wal_level}, expected logical", version)
        checked = 0
        for profile in PROFILES:
            for kind in ("sales", "accounting"):
                db = s.database(kind, profile)
                roles = ["owner", "reporting", "cdc" if kind == "sales" else "sink"]
                for role in roles:
                    with psycopg.connect(**s.conninfo(db, role),
                                         connect_timeout=_CONNECT_TIMEOUT_S) as conn:
                        user, = conn.execute("SELECT current_user").fetchone()
                        if user != s.role(role):
                            return Health(False, f"logged in as {user}, expected {s.role(role)}")
                        if role == "owner":
                            conn.execute("CREATE TEMP TABLE sl_health (v int)")
                            conn.execute("INSERT INTO sl_health VALUES (42)")
                            got, = conn.execute("SELECT v FROM sl_health").fetchone()
                            if got != 42:
                                return Health(False, "owner temp-table round trip failed")
                    checked += 1
        return Health(True, f"wal_level=logical; {checked} role logins ran SQL", version)


def _ensure_role(conn: psycopg.Connection, name: str, password: str, replication: bool) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    attrs = "LOGIN REPLICATION" if replication else "LOGIN NOREPLICATION"
    conn.execute(sql.SQL(f"{verb} ROLE {{}} {attrs} PASSWORD {{}}")
                 .format(sql.Identifier(name), sql.Literal(password)))


def _ensure_database(conn: psycopg.Connection, name: str, owner: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0")
                     .format(sql.Identifier(name), sql.Identifier(owner)))


def _grant_database(conn: psycopg.Connection, s: Settings, db: str, kind: str) -> None:
    ident = sql.Identifier
    owner, reporting = ident(s.owner_role), ident(s.reporting_role)
    writer = ident(s.cdc_role if kind == "sales" else s.sink_role)
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(db)))
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}, {}")
                 .format(ident(db), reporting, writer))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT USAGE ON SCHEMAS TO {}")
                 .format(owner, reporting))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT ON TABLES TO {}")
                 .format(owner, reporting))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reporting))
    if kind == "accounting":
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT USAGE ON SCHEMAS TO {}")
                     .format(owner, writer))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} "
                             "GRANT SELECT, INSERT, UPDATE ON TABLES TO {}").format(owner, writer))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} "
                             "GRANT USAGE, SELECT ON SEQUENCES TO {}").format(owner, writer))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(writer))
