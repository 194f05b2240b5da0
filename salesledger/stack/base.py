"""What every stack service has: files, pid, preflight, start, health round trip, stop."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from salesledger.config import Settings
from salesledger.resources import resource_path
from salesledger.stack import process
from salesledger.stack.errors import StackAborted, StackError

_HEALTH_POLL_S = 1.0


@dataclass(frozen=True)
class Health:
    """Outcome of one health round trip: ``healthy`` only after real work succeeded."""

    healthy: bool
    detail: str
    version: str | None = None


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``salesledger stack status``. ``rss_kib``: resident memory of the pid and its
    child processes."""

    name: str
    pid: int | None
    port: int | None
    health: Health
    log_path: Path
    rss_kib: int | None = None
    required: bool = True


def deploy_file(relative: str) -> Path:
    """A file of ``deploy/local/`` (shipped with the package)."""
    return resource_path(f"deploy/local/{relative}")


def find_java(settings: Settings) -> Path | None:
    """The java binary: ``settings.java_bin``, else ``$JAVA_HOME/bin/java``, else ``java`` on
    PATH; None when none exists."""
    if settings.java_bin is not None:
        return settings.java_bin if os.access(settings.java_bin, os.X_OK) else None
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return Path(home) / "bin" / "java"
    found = shutil.which("java")
    return Path(found) if found else None


class Service:
    """Base class. Subclasses set ``name`` and implement the hooks; :mod:`manager` drives them.

    Life cycle on ``up``: :meth:`preflight` (all services, before anything starts) ->
    :meth:`prepare` (config files, first-start initialisation) -> :meth:`start` ->
    :meth:`converge` (idempotent set-up on the running service) -> :meth:`health` until healthy.
    """

    name: str = "?"
    required: bool = True
    # Services that must be healthy before this one starts (``up`` starts the rest in parallel).
    needs: tuple[str, ...] = ()
    # Set by ``up`` when another service failed: waiting loops stop early.
    abort: threading.Event | None = None

    def __init__(self, settings: Settings):
        self.settings = settings
        # What :meth:`prepare` did that the user must hear of (``up`` prints them).
        self.notices: list[str] = []

    # ---- files
    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.settings.stack_dir / "run" / f"{self.name}.pid"

    @property
    def home(self) -> Path:
        """This service's own folder under the stack dir."""
        return self.settings.stack_dir / self.name

    # ---- identity
    @property
    def port(self) -> int:
        """The main port shown by ``status``."""
        raise NotImplementedError

    @property
    def ports(self) -> list[int]:
        """Every port the service binds (checked free before start)."""
        return [self.port]

    def marker(self) -> str:
        """A string in the process's command line that proves it is ours."""
        raise NotImplementedError

    def pid(self) -> int | None:
        """The running pid started by ``up``, or None."""
        return process.alive_pid(self.pid_file, self.marker())

    # ---- hooks
    def binaries(self) -> dict[str, Path | None]:
        """Binaries needed to start: name -> resolved path (None when missing)."""
        return {}

    def preflight(self) -> None:
        """Raise :class:`StackError` naming the binary or port when the service cannot start."""
        for label, path in self.binaries().items():
            if path is None or not os.access(path, os.X_OK):
                shown = path if path is not None else label
                raise self.fail(f"required binary `{label}` not found ({shown}); "
                                "run `make setup` (deploy/local/install-system.sh)")
        for port in self.ports:
            if process.port_in_use(self.settings.host, port):
                raise self.fail(f"port {port} on {self.settings.host} is already in use by "
                                f"{process.port_owner(port)}")

    def prepare(self) -> None:
        """Write config files; initialise storage on first start."""

    def start(self) -> subprocess.Popen:
        raise NotImplementedError

    def converge(self) -> None:
        """Idempotent set-up on the running service (roles, databases, topics)."""

    def health(self) -> Health:
        raise NotImplementedError

    def version(self) -> str | None:
        return None

    def stop(self) -> bool:
        """Stop the process started by ``up``; True if one was running."""
        pid = self.pid()
        if pid is None:
            return False
        self.log_line("stopping (stack down)")
        process.stop_pid(pid, timeout_s=90.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    # ---- helpers
    def fail(self, cause: str) -> StackError:
        """A StackError for this service; the cause is also appended to its log file."""
        self.log_line(f"ERROR: {cause}")
        return StackError(self.name, cause, self.log_path)

    def log_line(self, text: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            log.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} salesledger: {text}\n")

    def run_tool(self, argv: list[str], what: str, *, cwd: Path | None = None,
                 timeout_s: float = 300.0, env: dict[str, str] | None = None) -> None:
        """Run a one-shot command with output appended to the log; raise on failure."""
        self.log_line(f"{what}: {' '.join(argv)}")
        with open(self.log_path, "ab") as log:
            try:
                result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                                        timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise self.fail(f"{what} failed: {exc}") from exc
        if result.returncode != 0:
            raise self.fail(f"{what} failed with exit code {result.returncode}")

    def ready(self) -> Health:
        """Cheap check that the process accepts work (before :meth:`converge`)."""
        return self.health()

    def wait_healthy(self, proc: subprocess.Popen | None, timeout_s: float,
                     check: Callable[[], Health] | None = None) -> Health:
        """Poll ``check`` (default :meth:`health`) until healthy; raise when the process exits
        or time runs out."""
        check = check or self.health
        deadline = time.monotonic() + timeout_s
        last = Health(False, "not checked yet")
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = process.tail(self.log_path, 15)
                raise self.fail(f"process exited with code {proc.returncode} during start; "
                                f"last log lines:\n{tail}")
            if proc is None and self.pid() is None:
                raise self.fail("process is gone")
            if self.abort is not None and self.abort.is_set():
                raise StackAborted(self.name, "start abandoned: another service failed",
                                   self.log_path)
            try:
                last = check()
            except Exception as exc:  # a health probe must never crash the wait loop
                last = Health(False, f"{type(exc).__name__}: {exc}")
            if last.healthy:
                return last
            time.sleep(_HEALTH_POLL_S)
        raise self.fail(f"not healthy after {timeout_s:.0f} s: {last.detail}")

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            health = Health(False, "not running")
        else:
            try:
                health = self.health()
            except Exception as exc:
                health = Health(False, f"{type(exc).__name__}: {exc}")
        return ServiceStatus(self.name, pid, self.port, health, self.log_path,
                             process.rss_tree_kib(pid) if pid else None, self.required)
