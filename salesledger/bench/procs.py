"""CPU seconds and resident memory of processes, read from ``/proc`` (Linux).

CPU of a process tree = its own user+system time, the time of its children already reaped
(``cutime``/``cstime``) and that of its live children. This counts PostgreSQL correctly
(backends come and go under the postmaster) and a JVM (one process, many threads).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2:].split()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except FileNotFoundError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def cpu_s(pid: int, *, tree: bool = True) -> float | None:
    """User + system CPU seconds of ``pid`` (with ``tree``: plus reaped and live descendants);
    None when the process is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17 (1-based)
    own = int(fields[11]) + int(fields[12])
    if not tree:
        return own * _TICK_S
    total = own + int(fields[13]) + int(fields[14])
    seconds = total * _TICK_S
    for child in _children(pid):
        seconds += cpu_s(child, tree=True) or 0.0
    return seconds


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` now, MiB (None when gone)."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[21]) * _PAGE_MB


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size of ``pid`` over its life (``VmHWM``), MiB (None when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds per named process tree (names whose process is gone are left out)."""
    out = {}
    for name, pid in pids.items():
        value = cpu_s(pid)
        if value is not None:
            out[name] = value
    return out
