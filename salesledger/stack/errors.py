"""The one error the stack raises: which service, what went wrong, where its log is."""

from __future__ import annotations

from pathlib import Path


class StackError(RuntimeError):
    """A stack operation failed.

    Attributes:
        service: the service's name (``postgresql``, ``kafka``, ``connect``, ``prometheus``,
            ``registry``, ``maven``) or ``stack`` for the whole.
        cause: one line a person can act on ("port 19092 on 127.0.0.1 is already in use ...").
        log_path: the log file that tells more (may not exist when nothing was started).
    """

    def __init__(self, service: str, cause: str, log_path: Path | None = None):
        self.service = service
        self.cause = cause
        self.log_path = log_path
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"{service}: {cause}{where}")


class StackAborted(StackError):
    """A service's start was abandoned because another service failed first (not a cause)."""
