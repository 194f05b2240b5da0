"""Plain-process plumbing: pid files, spawning detached daemons, ports, stopping, templates.

A service started by ``stack up`` has a pid file ``<stack_dir>/run/<service>.pid``; a pid counts as
ours only while ``/proc/<pid>/cmdline`` still contains the service's marker (its config or data
path), so a recycled pid is never signalled.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

LOG_ROTATE_BYTES_MAX = 64 * 1024 * 1024
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` or None (missing or garbled file)."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    """The process's command line joined by spaces, or ``""`` when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def alive_pid(pid_file: Path, marker: str) -> int | None:
    """The pid of ``pid_file`` if that process is running and its command line contains
    ``marker``; otherwise None (a stale pid file is removed)."""
    pid = read_pid(pid_file)
    if pid is None:
        return None
    if marker in cmdline(pid) and not is_zombie(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (from /proc/<pid>/status), None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kib(pid: int) -> int | None:
    """Proportional set size of ``pid`` in KiB (shared pages divided among their users), from
    /proc/<pid>/smaps_rollup; falls back to RSS where that file is missing."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return rss_kib(pid)
    return rss_kib(pid)


def rss_tree_kib(pid: int) -> int | None:
    """Memory of ``pid`` and all its descendants in KiB (PostgreSQL's backends), as PSS so that
    shared memory (PostgreSQL's shared buffers) is counted once."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(proc.name))
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += pss_kib(current) or 0
        todo.extend(children.get(current, []))
    return total or None


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def port_owner(port: int) -> str:
    """Best-effort "pid N (command)" of the process listening on ``port`` (root sees all)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return "an unknown process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return f"pid {proc.name} ({cmdline(int(proc.name))[:80]})"
        except OSError:
            continue
    return "another process"


def wait_port_open(host: str, port: int) -> bool:
    """True if a TCP connect to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def rotate_log(log_path: Path) -> None:
    """Keep one previous generation (``.1``) once a log passes 64 MiB."""
    if log_path.exists() and log_path.stat().st_size > LOG_ROTATE_BYTES_MAX:
        os.replace(log_path, log_path.with_name(log_path.name + ".1"))


def spawn(argv: Sequence[str], *, log_path: Path, pid_file: Path, cwd: Path,
          env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start ``argv`` detached (own session, stdin closed), stdout+stderr appended to
    ``log_path``, and write its pid to ``pid_file``. The log file is opened here, so the
    child needs no permission on its path (PostgreSQL runs as another user)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    rotate_log(log_path)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=str(cwd), env=dict(env) if env is not None else None, start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def stop_pid(pid: int, *, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> bool:
    """Send ``sig`` and wait up to ``timeout_s`` for the process to exit; SIGKILL after that.
    Returns True if it ended by the first signal."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
            _reap(pid)
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``{{name}}`` placeholders; an unknown placeholder raises KeyError (no silent gaps)."""
    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return str(values[key])
    return _PLACEHOLDER_RE.sub(fill, template)


def render_file(template_path: Path, target: Path, values: Mapping[str, object],
                mode: int = 0o644) -> None:
    """Render ``template_path`` into ``target`` (written atomically)."""
    text = render(template_path.read_text(), values)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, target)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ("" if missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
