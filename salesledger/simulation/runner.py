"""Execute a plan's steps against the sales database, one transaction per step, at X× speed.

Step semantics (tables of ``deploy/sql/sales/002_documents.sql``):

1. ``insert``: the header with ``status = 'draft'`` and its lines (or allocations) in one
   transaction.
2. ``post``: ``UPDATE … SET status = 'posted'`` (the document's first postable version).
3. ``edit_add_line``: a posted invoice gets its missing line (line insert + header
   ``updated_at`` in one transaction) — a change of a posted document.
4. ``cancel``: ``UPDATE … SET status = 'cancelled'``.
5. ``dead_letter``: a row in ``salesledger_data.dead_letters`` (not captured).

Idempotent: a step whose effect is already in the database (document exists, already posted,
line present, already cancelled, dead letter recorded) is skipped and counted as ``skipped``, so
re-running a finished replay writes nothing and an interrupted one resumes.

Pacing: simulated time maps to wall time as ``(at − first step) / speed``; ``speed = inf`` runs
as fast as the database allows. Dates and times are shifted by ``shift_days`` whole days.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg
from psycopg import sql

from salesledger.datasets import store
from salesledger.datasets.plan import Document, Plan, Step

#: kind -> (header table, child table, child's parent column)
TABLES: dict[str, tuple[str, str, str]] = {
    "invoice": ("invoices", "invoice_lines", "invoice_id"),
    "payment": ("payments", "payment_allocations", "payment_id"),
    "return": ("returns", "return_lines", "return_id"),
    "goods_receipt": ("goods_receipts", "goods_receipt_lines", "goods_receipt_id"),
    "write_off": ("stock_write_offs", "stock_write_off_lines", "stock_write_off_id"),
}
SLEEP_SLICE_S_MAX = 0.5


@dataclass
class RunResult:
    """What one run did: ``done`` actions by ``(action, kind)``, ``skipped`` steps already
    applied, wall ``elapsed_s``, and whether it was ``interrupted`` (Ctrl-C)."""

    done: Counter = field(default_factory=Counter)
    skipped: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    last_at: dt.datetime | None = None

    @property
    def documents_inserted(self) -> int:
        """Documents this run inserted (all kinds)."""
        return sum(n for (action, _), n in self.done.items() if action == "insert")

    def summary(self, plan: Plan, shift_days: int, speed: float) -> dict[str, Any]:
        """The run summary (JSON-ready): the plan's counts and what this run executed."""
        executed: dict[str, dict[str, int]] = {}
        for (action, kind), n in sorted(self.done.items()):
            executed.setdefault(action, {})[kind] = n
        rate = self.documents_inserted / self.elapsed_s if self.elapsed_s > 0 else None
        return {
            "dataset": plan.dataset,
            "seed": plan.seed,
            "slice": {"first_day": plan.days[0].isoformat(), "last_day": plan.days[-1].isoformat(),
                      "trading_days": len(plan.days)},
            "shift_days": shift_days,
            "simulated_last_day": (plan.days[-1] + dt.timedelta(days=shift_days)).isoformat(),
            "opening_as_of": (plan.opening_as_of + dt.timedelta(days=shift_days)).isoformat(),
            "speed": "max" if math.isinf(speed) else speed,
            "plan": plan.counts,
            "executed": executed,
            "skipped_already_done": self.skipped,
            "interrupted": self.interrupted,
            "elapsed_s": round(self.elapsed_s, 3),
            "documents_per_s": round(rate, 1) if rate else None,
        }


class _Executor:
    def __init__(self, conn: psycopg.Connection, plan: Plan, shift_days: int) -> None:
        self.conn, self.plan = conn, plan
        self.shift = dt.timedelta(days=shift_days)

    def _exists(self, kind: str, number: str) -> tuple[Any, str] | None:
        table = TABLES[kind][0]
        pk = TABLES[kind][2]
        return self.conn.execute(
            sql.SQL("SELECT {pk}, status FROM {t} WHERE number = %s").format(
                pk=sql.Identifier(pk), t=sql.Identifier("sales", table)), (number,)).fetchone()

    def apply(self, step: Step) -> bool:
        """Apply one step in its own transaction; False if it was already applied."""
        with self.conn.transaction():
            if step.action == "dead_letter":
                assert step.dead_letter is not None
                return store.record_dead_letter(self.conn, self.plan.dataset, step.dead_letter,
                                                step.at + self.shift)
            row = self._exists(step.kind, step.number)
            if step.action == "insert":
                if row is not None:
                    return False
                assert step.document is not None
                self._insert(step.document)
                return True
            assert row is not None, f"{step.action} of {step.kind} {step.number} before its insert"
            if step.action == "post":
                return self._set_status(step.kind, step.number, row[1], "draft", "posted")
            if step.action == "cancel":
                return self._set_status(step.kind, step.number, row[1], "posted", "cancelled")
            if step.action == "edit_add_line":
                return self._add_line(step, row[0])
            raise AssertionError(f"unknown step action {step.action!r}")

    def _insert(self, doc: Document) -> None:
        table, child, parent = TABLES[doc.kind]
        header = {"number": doc.number, "date": doc.date + self.shift, "status": "draft", **doc.header}
        doc_id = self.conn.execute(
            sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}) RETURNING {pk}").format(
                t=sql.Identifier("sales", table), c=sql.SQL(", ").join(map(sql.Identifier, header)),
                v=sql.SQL(", ").join(sql.Placeholder() * len(header)), pk=sql.Identifier(parent)),
            list(header.values())).fetchone()[0]
        if doc.lines:
            cols = [parent, *doc.lines[0]]
            with self.conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {t} ({c}) VALUES ({v})").format(
                        t=sql.Identifier("sales", child), c=sql.SQL(", ").join(map(sql.Identifier, cols)),
                        v=sql.SQL(", ").join(sql.Placeholder() * len(cols))),
                    [[doc_id, *line.values()] for line in doc.lines])

    def _set_status(self, kind: str, number: str, current: str, old: str, new: str) -> bool:
        if current == new or (new == "posted" and current == "cancelled"):
            return False  # already applied (a re-run: the document went on to be cancelled)
        assert current == old, f"{kind} {number} is {current}, expected {old}"
        self.conn.execute(
            sql.SQL("UPDATE {t} SET status = %s, updated_at = now() WHERE number = %s").format(
                t=sql.Identifier("sales", TABLES[kind][0])), (new, number))
        return True

    def _add_line(self, step: Step, invoice_id: Any) -> bool:
        assert step.line is not None
        present = self.conn.execute(
            "SELECT 1 FROM sales.invoice_lines WHERE invoice_id = %s AND line_no = %s",
            (invoice_id, step.line["line_no"])).fetchone()
        if present:
            return False
        cols = ["invoice_id", *step.line]
        self.conn.execute(
            sql.SQL("INSERT INTO sales.invoice_lines ({c}) VALUES ({v})").format(
                c=sql.SQL(", ").join(map(sql.Identifier, cols)),
                v=sql.SQL(", ").join(sql.Placeholder() * len(cols))),
            [invoice_id, *step.line.values()])
        self.conn.execute("UPDATE sales.invoices SET updated_at = now() WHERE invoice_id = %s",
                          (invoice_id,))
        return True


def run_plan(conninfo: str, plan: Plan, *, speed: float = math.inf, shift_days: int = 0,
             on_step: Callable[[int, Step, RunResult], None] | None = None,
             durable: bool = False) -> RunResult:
    """Replay ``plan`` into the sales database at ``conninfo`` (owner role) and return what was done.

    Unless ``durable``, the session sets ``synchronous_commit = off``: every step still commits
    as its own transaction, in order, and logical decoding sees exactly those commits; only the
    flush to disk is not awaited (a crash may lose the last steps, which a re-run redoes).
    ``on_step(index, step, result)`` is called after every step (progress display). Ctrl-C stops
    after the current step (``interrupted``); the run can be resumed by running it again.

    Raises:
        ValueError: ``speed`` is not positive.
        psycopg.Error: the sales database refused a step (schema missing, constraint).
    """
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    result = RunResult()
    started = time.monotonic()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not durable:
            conn.execute("SET synchronous_commit = off")
        executor = _Executor(conn, plan, shift_days)
        anchor: tuple[float, dt.datetime] | None = None  # (wall, simulated) of the first step applied
        try:
            for index, step in enumerate(plan.steps):
                if anchor is not None:
                    _pace(anchor, step.at, speed)
                applied = executor.apply(step)
                if applied:
                    result.done[(step.action, step.kind)] += 1
                    anchor = anchor or (time.monotonic(), step.at)
                else:
                    result.skipped += 1
                result.last_at = step.at + dt.timedelta(days=shift_days)
                result.elapsed_s = time.monotonic() - started
                if on_step:
                    on_step(index, step, result)
        except KeyboardInterrupt:
            result.interrupted = True
    result.elapsed_s = time.monotonic() - started
    return result


def _pace(anchor: tuple[float, dt.datetime], at: dt.datetime, speed: float) -> None:
    """Sleep until the wall clock is ``(at − anchor's simulated time) / speed`` past the anchor's
    wall time; the first step applied is the anchor, so already-done steps never wait."""
    if math.isinf(speed):
        return
    target = anchor[0] + (at - anchor[1]).total_seconds() / speed
    while (wait := target - time.monotonic()) > 0:
        time.sleep(min(wait, SLEEP_SLICE_S_MAX))
