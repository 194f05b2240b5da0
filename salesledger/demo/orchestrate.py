"""``salesledger demo``: one command from an empty stack to books that keep themselves.

Steps (each idempotent, so a second run continues where the first stopped):

1. ``stack up`` (PostgreSQL, Kafka, Connect + Debezium, registry, Prometheus);
   with ``fresh``: wipe this profile's data first (:func:`reset_data`);
2. migrate the sales database (schema ``sales``) and the accounting store (schema ``ledger``);
3. load the dataset's master data and opening stock (``salesledger load``'s code); a rerun
   reuses the recorded load's date shift, so nothing is dated twice;
4. register the Debezium connector (snapshot of the master data, then streaming);
5. start ``salesledger run --workers N`` (assembly, posting, sink workers under the supervisor)
   with the demo's chart and ledger settings; post the opening balance (opening stock at cost,
   Dr inventory / Cr 000) onto the documents topic before the first document;
6. replay the slice as live traffic (``salesledger simulate``'s code, in a thread) at the speed
   that makes it last ``within_s`` seconds, with the live view (:mod:`salesledger.demo.live`);
7. wait until the pipeline has drained (posting and sink lag 0, nothing new captured or
   assembled for ``quiet_s`` seconds; deadline ``drain_deadline_s``), print the reports
   (``ledger check``, trial balance, AR ageing, stock, ``reconcile``) and where to look next.

The workers' output goes to ``<stack_dir>/logs/`` (``demo-<prefix>-run.log`` and the
supervisor's per-worker logs). Without ``follow`` the workers are stopped at the end; the stack
keeps running.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg
from rich.console import Console
from rich.live import Live

from salesledger.config import Settings
from salesledger.demo.live import Probe, Progress, Snapshot, render
from salesledger.demo.settings import DemoSettings, record_pipeline_settings

Reporter = Callable[[str], None]
#: The live store schema the demo's sink writes (the sink's default).
STORE_SCHEMA = "ledger"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where to look."""


@dataclass
class Prepared:
    """What steps 1-4 produced: the plan to replay, its date shift and the speed."""

    plan: object
    shift_days: int
    speed: float
    as_of: dt.date

    @property
    def last_day(self) -> dt.date:
        """The slice's last day after the shift (the reports' as-of date)."""
        return self.plan.days[-1] + dt.timedelta(days=self.shift_days)


def sink_group(settings: Settings) -> str:
    """The sink workers' consumer group for this topic prefix (``<prefix>-sink``), so two
    profiles' sinks never share a group and a profile reset deletes it."""
    return f"{settings.topic_prefix}-sink"


# ---- steps 1-4 ----------------------------------------------------------------------------------


def reset_data(settings: Settings, report: Reporter) -> None:
    """Wipe this profile's data: its connectors and slots, its two databases (recreated empty),
    its topics and consumer groups (topics recreated), the demo's records. Other profiles and
    the stack's own health-check topics are untouched.

    Raises:
        DemoError: this profile's pipeline is running (stop it first).
    """
    from confluent_kafka.admin import AdminClient

    from salesledger.stack import manager
    from salesledger.stack.postgres import PostgresService
    from salesledger.stack.topics import apply_topics

    running = _running_supervisor(settings)
    if running:
        raise DemoError(f"the pipeline of prefix {settings.topic_prefix} is running (supervisor "
                        f"pid {running}); stop it before --fresh")
    prefix = settings.topic_prefix
    databases = [settings.sales_db, settings.accounting_db]
    manager._reset_connectors(settings, prefix, databases, report)  # noqa: SLF001
    pg = PostgresService(settings)
    manager._reset_databases(pg, databases, report)  # noqa: SLF001
    pg.converge()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=60).valid
              if manager.belongs_to_prefix(g.group_id, prefix)]
    for future in (admin.delete_consumer_groups(groups, request_timeout=60).values()
                   if groups else ()):
        future.result(timeout=60)
    topics = [t for t in admin.list_topics(timeout=60).topics
              if manager.belongs_to_prefix(t, prefix)]
    for future in (admin.delete_topics(topics, operation_timeout=60).values() if topics else ()):
        future.result(timeout=60)
    deadline = time.monotonic() + 180
    while set(topics) & set(admin.list_topics(timeout=60).topics):
        if time.monotonic() > deadline:
            raise DemoError(f"topics of {prefix} not deleted within 180 s")
        time.sleep(0.5)
    apply_topics(settings)
    report(f"profile {settings.profile} (prefix {prefix}, databases {', '.join(databases)}): "
           f"reset; {len(topics)} topics and {len(groups)} consumer groups deleted")


def stack_up(settings: Settings, report: Reporter) -> None:
    """Bring the stack up (idempotent).

    Raises:
        DemoError: a service did not come up (service, cause, log file).
    """
    from salesledger.stack import manager
    from salesledger.stack.errors import StackError

    try:
        manager.up(settings, report)
    except StackError as exc:
        where = f" (log {exc.log_path})" if exc.log_path else ""
        raise DemoError(f"stack up failed: {exc.service}: {exc.cause}{where}") from exc


def migrate(settings: Settings, report: Reporter) -> None:
    """Migrate the sales database and the accounting store of this profile."""
    from salesledger.cli.salesdb import identifiers
    from salesledger.salesdb.migrations import migrate as migrate_sales
    from salesledger.sinks.migrate import migrate_store

    sales = migrate_sales(settings.dsn("sales", "owner"), identifiers(settings))
    store = migrate_store(settings, STORE_SCHEMA)
    report(f"migrations: {settings.sales_db} +{len(sales)}, "
           f"{settings.accounting_db}.{STORE_SCHEMA} +{len(store)} (up to date)")


def load(settings: Settings, demo: DemoSettings, report: Reporter) -> Prepared:
    """Plan the slice and load its master data and opening stock (idempotent).

    A recorded load of the same slice and seed keeps its date shift (a rerun on a later day
    does not re-date what is already posted; ``--fresh`` re-dates to today).

    Raises:
        DemoError: the dataset file cannot be read or the slice is empty.
    """
    from salesledger.cli.load import build_plan, dataset_file, shift_to_today
    from salesledger.cli.simulate import speed_for
    from salesledger.datasets import store
    from salesledger.datasets.online_retail import DatasetError

    try:
        path = demo.path or dataset_file(demo.dataset)
        plan = build_plan(path, demo.days, None, demo.seed, dataset=demo.dataset)
    except (DatasetError, ValueError, LookupError, FileNotFoundError) as exc:
        raise DemoError(f"dataset {demo.dataset}: {exc}") from exc
    dsn = settings.dsn("sales", "owner")
    with psycopg.connect(dsn) as conn:
        previous = store.latest_load(conn, plan.dataset)
    same_slice = previous is not None and (previous.first_day, previous.last_day, previous.seed) \
        == (plan.days[0], plan.days[-1], demo.seed)
    if same_slice:
        shift_days = previous.shift_days
    else:
        shift_days = shift_to_today(plan.days[-1]) if demo.shift_to_today else 0
    with psycopg.connect(dsn) as conn:
        tables = store.load_plan(conn, plan, shift_days, settings.reporting_role)
    speed = demo.speed if demo.speed else speed_for(plan, demo.within_s)
    opening = tables["opening_stock"]
    counts = plan.counts
    report(f"loaded {plan.dataset} {plan.days[0]} … {plan.days[-1]} ({len(plan.days)} trading days, "
           f"seed {demo.seed}, dates shifted {shift_days} days): "
           f"{tables['customers']['rows']} customers, {tables['products']['rows']} products, "
           f"opening stock {opening['rows']} SKUs worth {opening['value']} {opening['currency']}; "
           f"{counts['source_documents']} source documents -> {sum(counts['documents'].values())} "
           f"documents to replay")
    return Prepared(plan=plan, shift_days=shift_days, speed=speed,
                    as_of=opening["as_of"] if isinstance(opening["as_of"], dt.date)
                    else dt.date.fromisoformat(str(opening["as_of"])))


def register_connector(settings: Settings, report: Reporter) -> None:
    """Create (or keep) the profile's Debezium connector and wait until it runs.

    Raises:
        DemoError: Connect refused it or it failed.
    """
    from salesledger import connect

    try:
        state = connect.register(settings)
    except Exception as exc:  # ConnectError, ConnectorFailed, TimeoutError: all stop the demo
        raise DemoError(f"connector registration failed: {exc}") from exc
    report(f"connector {connect.connector_name(settings.topic_prefix)}: {state.state}")


# ---- step 5: the pipeline -----------------------------------------------------------------------


def _running_supervisor(settings: Settings) -> int | None:
    from salesledger.supervisor import read_state

    state = read_state(settings)
    pid = (state or {}).get("supervisor_pid")
    if not pid:
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


class Pipeline:
    """``salesledger run --workers N`` as a child process (its own session) with the demo's
    pipeline settings; :meth:`stop` stops it and its workers (SIGTERM, then SIGKILL)."""

    def __init__(self, settings: Settings, demo: DemoSettings) -> None:
        self.settings = settings
        self.demo = demo
        self.process: subprocess.Popen | None = None
        self.log_path = settings.log_dir / f"demo-{settings.topic_prefix}-run.log"

    def start(self, report: Reporter) -> None:
        """Start the supervisor unless one already runs for this prefix.

        Raises:
            DemoError: another supervisor runs this prefix (its settings may differ).
        """
        running = _running_supervisor(self.settings)
        if running:
            raise DemoError(f"a pipeline of prefix {self.settings.topic_prefix} already runs "
                            f"(supervisor pid {running}); stop it (or use its output)")
        env = {**os.environ, **record_pipeline_settings(self.settings, self.demo),
               "SALESLEDGER_PROFILE": self.settings.profile,
               "SALESLEDGER_SINK_CONSUMER_GROUP": sink_group(self.settings),
               "SALESLEDGER_SINK_SCHEMA": STORE_SCHEMA}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "salesledger", "run", "--workers", str(self.demo.workers)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        report(f"pipeline started: salesledger run --workers {self.demo.workers} (pid "
               f"{self.process.pid}, log {self.log_path})")

    def check(self) -> None:
        """Raises DemoError when the supervisor has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise DemoError(f"the pipeline exited with {self.process.returncode}; see "
                            f"{self.log_path} and {self.settings.log_dir}/worker-"
                            f"{self.settings.topic_prefix}-*.log")

    def stop(self, timeout_s: float = 90.0) -> None:
        """SIGTERM the supervisor's process group and wait (SIGKILL after ``timeout_s``)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def post_opening_balance(settings: Settings, dataset: str, as_of: dt.date,
                         report: Reporter) -> None:
    """Produce the opening stock as an ``opening_balance`` document onto the documents topic
    (the sales schema has no such document; :func:`salesledger.datasets.store.
    opening_balance_document`). Version 1 at (LSN 0, event 0): it sorts before every captured
    document, and producing it again is a duplicate the engine ignores (same entries)."""
    from confluent_kafka import Producer

    from salesledger.datasets.store import opening_balance_document
    from salesledger.ledger.model import SourcePosition
    from salesledger.streams.assembly import DocumentEvent
    from salesledger.streams.documents import DOCUMENT_SUBJECT, document_datum
    from salesledger.streams.serde import AvroSerde

    with psycopg.connect(settings.dsn("sales", "owner")) as conn:
        document = opening_balance_document(conn, dataset, as_of)
    if not document.stock:
        report("opening balance: no opening stock to post")
        return
    event = DocumentEvent(key=document.key, operation="created", version=(0, 0),
                          document=document, source=SourcePosition())
    value = AvroSerde.for_settings(settings).encode(DOCUMENT_SUBJECT, document_datum(event))
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True})
    producer.produce(settings.topic("documents"), key=document.key.encode(), value=value)
    if producer.flush(60) != 0:
        raise DemoError("the opening balance could not be produced to the documents topic")
    report(f"opening balance {document.number}: {len(document.stock)} stock lines posted to "
           f"{settings.topic('documents')}")


# ---- step 6: the replay -------------------------------------------------------------------------


class Replay(threading.Thread):
    """Runs the simulation (:func:`salesledger.simulation.run_plan`) and fills ``progress``;
    :meth:`cancel` stops it after the current step (it can be resumed by running again)."""

    def __init__(self, settings: Settings, prepared: Prepared) -> None:
        super().__init__(name="demo-replay", daemon=True)
        self.settings = settings
        self.prepared = prepared
        self.progress = Progress(total=len(prepared.plan.steps))
        self.result = None
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop after the current step."""
        self._cancel.set()

    def run(self) -> None:
        from salesledger.simulation import run_plan

        shift = dt.timedelta(days=self.prepared.shift_days)

        def on_step(index, step, result) -> None:
            self.progress.steps = index + 1
            self.progress.inserted = result.documents_inserted
            self.progress.clock = step.at + shift
            if self._cancel.is_set():
                raise KeyboardInterrupt  # run_plan stops after this step and says "interrupted"

        try:
            self.result = run_plan(self.settings.dsn("sales", "owner"), self.prepared.plan,
                                   speed=self.prepared.speed, shift_days=self.prepared.shift_days,
                                   on_step=on_step)
        except Exception as exc:  # shown in the view and raised by the main loop
            self.progress.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.progress.finished = True


# ---- step 7: drained ----------------------------------------------------------------------------


def drained(history: list[Snapshot], quiet_s: float) -> bool:
    """True when the latest readings show assembly, posting and sink lag 0 and no new captured
    change, document version or journal entry for ``quiet_s`` seconds."""
    if not history:
        return False
    now = history[-1]
    if now.assembly_lag != 0 or now.posting_lag != 0 or now.sink_lag != 0:
        return False
    quiet = [s for s in history if now.at - s.at <= quiet_s]
    if now.at - quiet[0].at < quiet_s * 0.9:
        return False  # not enough readings yet to say "quiet"
    return all(s.counters["capture"] == now.counters["capture"]
               and s.counters["assembly"] == now.counters["assembly"]
               and s.counters.get("store") == now.counters.get("store") for s in quiet)


class Watchdog:
    """Restarts a stage whose workers hold work but make no progress.

    A stage is stuck when its lag stayed above 0 while its consumed offsets did not move for
    ``stuck_s`` seconds (e.g. a worker that hung while starting). Its workers (from the
    supervisor's state file) are killed; the supervisor restarts them and they resume from
    their committed offsets, so nothing is lost or doubled. Every restart is reported."""

    LAGS = {"assembly": "assembly_lag", "posting": "posting_lag", "sink": "sink_lag"}

    def __init__(self, settings: Settings, stuck_s: float = 90.0) -> None:
        self.settings = settings
        self.stuck_s = stuck_s
        self._since: dict[str, tuple[int, float]] = {}
        self.restarts: list[str] = []

    def check(self, snap: Snapshot) -> list[str]:
        """Kill the workers of stuck stages; return what was done (one line each)."""
        from salesledger.supervisor import read_state

        done = []
        for stage, attribute in self.LAGS.items():
            lag = getattr(snap, attribute)
            consumed = snap.consumed.get(stage, 0)
            last = self._since.get(stage)
            if not lag or last is None or last[0] != consumed:
                self._since[stage] = (consumed, snap.at)
                continue
            if snap.at - last[1] < self.stuck_s:
                continue
            state = read_state(self.settings) or {}
            pids = [w["pid"] for w in state.get("workers", []) if w.get("stage") == stage
                    and w.get("pid")]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            line = (f"{stage} stage: lag {lag} without progress for {self.stuck_s:.0f} s; "
                    f"restarted its workers (pids {pids})")
            self.restarts.append(line)
            done.append(line)
            self._since[stage] = (consumed, snap.at)
        return done


def watch(probe: Probe, replay: Replay | None, pipeline: Pipeline, demo: DemoSettings,
          console: Console, title: str, *, follow: bool, refresh_s: float = 2.0) -> Snapshot:
    """Show the live view until the replay finished and the pipeline drained (``follow``: until
    Ctrl-C). Returns the last reading.

    Raises:
        DemoError: the pipeline exited, the replay failed, or it did not drain in time.
        KeyboardInterrupt: Ctrl-C (the caller stops the workers).
    """
    progress = replay.progress if replay else Progress(finished=True)
    snap: Snapshot | None = None
    drain_started: float | None = None
    history: list[Snapshot] = []
    watchdog = Watchdog(pipeline.settings)
    last_line = time.monotonic()  # not a terminal: one progress line a minute (a log stays alive)
    with Live(render(None, {}, progress, "", title, "starting"), console=console,
              refresh_per_second=2, transient=False) as live:
        while True:
            pipeline.check()
            if progress.error:
                raise DemoError(f"the replay failed: {progress.error}")
            try:
                snap = probe.read(progress)
            except (psycopg.OperationalError, Exception) as exc:  # a reading may fail: keep going
                live.update(render(snap, probe.rates(), progress, probe.currency, title,
                                   f"reading failed ({type(exc).__name__}); retrying"))
                time.sleep(refresh_s)
                continue
            history.append(snap)
            history = [s for s in history if snap.at - s.at <= demo.quiet_s * 2]
            for line in watchdog.check(snap):
                live.console.print(f"[yellow]watchdog[/]: {line}")
            if not progress.finished:
                status = "replaying sales as live traffic"
            elif drained(history, demo.quiet_s):
                status = "drained: every captured change is in the books"
                if not follow:
                    live.update(render(snap, probe.rates(), progress, probe.currency, title, status))
                    return snap
                status += " (following; Ctrl-C stops)"
            else:
                drain_started = drain_started or time.monotonic()
                waited = time.monotonic() - drain_started
                if waited > demo.drain_deadline_s:
                    raise DemoError(f"the pipeline did not drain within {demo.drain_deadline_s:.0f}"
                                    f" s (lag: assembly {snap.assembly_lag}, posting "
                                   f"{snap.posting_lag}, sink {snap.sink_lag}); see the workers' "
                                   f"logs in {pipeline.settings.log_dir}")
                status = f"replay done; waiting for the pipeline to drain ({waited:.0f} s)"
            if not console.is_terminal and time.monotonic() - last_line >= 60:
                last_line = time.monotonic()
                live.console.print(f"{dt.datetime.now():%H:%M:%S} {status}: step {progress.steps}/"
                                   f"{progress.total}; lag assembly {snap.assembly_lag}, posting "
                                   f"{snap.posting_lag}, sink {snap.sink_lag}")
            live.update(render(snap, probe.rates(), progress, probe.currency, title, status))
            time.sleep(refresh_s)


def final_reports(settings: Settings, demo: DemoSettings, as_of: dt.date, console: Console,
                  env: dict[str, str]) -> list[str]:
    """Run ``ledger check``, the trial balance, AR ageing and stock value (the CLI itself, so
    the output is what a user gets) and ``reconcile --format json``; return the problems: a
    command that failed, or a reconcile difference that no held document explains (a document
    waiting in the held queue is not in the books yet, by design, and says why)."""
    currency = demo.ledger_settings().functional_currency
    day = as_of.isoformat()
    commands = {
        "ledger check": ["ledger", "check"],
        "trial balance": ["report", "trial-balance", "--as-of", day, "--currency", currency,
                          "--chart", demo.chart],
        "AR ageing": ["report", "ar-aging", "--as-of", day],
        "stock value": ["report", "stock", "--as-of", day],
    }
    problems = []
    for title, args in commands.items():
        console.rule(f"[bold]{title}[/]: salesledger {' '.join(args)}")
        console.file.flush()
        if subprocess.run([sys.executable, "-m", "salesledger", *args], env=env,
                          check=False).returncode != 0:
            problems.append(title)
    args = ["reconcile", "--currency", currency, "--chart", demo.chart, "--format", "json"]
    console.rule(f"[bold]reconcile[/]: salesledger {' '.join(args[:-2])}")
    done = subprocess.run([sys.executable, "-m", "salesledger", *args], env=env, check=False,
                          capture_output=True, text=True)
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        console.print(done.stdout[-4000:] + done.stderr[-4000:], highlight=False)
        return problems + ["reconcile"]
    problems += reconcile_summary(result, console)
    return problems


def reconcile_summary(result: dict, console: Console) -> list[str]:
    """Print what reconcile checked and its differences: those of held documents grouped by
    the hold's reason, the others one by one. Returns ``["reconcile"]`` when a difference is
    not explained by a held document, else ``[]``."""
    checked = ", ".join(f"{k} {v}" for k, v in result.get("checked", {}).items())
    console.print(f"checked: {checked}", highlight=False)
    differences = result.get("differences", [])
    held: dict[str, set[str]] = {}
    other = []
    for diff in differences:
        if diff.get("held"):
            held.setdefault(diff["held"], set()).add(diff["document"])
        else:
            other.append(diff)
    if not differences:
        console.print("[green]reconcile: no differences[/] — the ledger matches the sales "
                      "database document by document, and its invariants hold")
    for reason, documents in sorted(held.items()):
        console.print(f"[yellow]held[/] ({reason}): {len(documents)} documents not in the books "
                      f"yet, e.g. {', '.join(sorted(documents)[:5])} (`salesledger held list`)",
                      highlight=False)
    for diff in other[:20]:
        console.print(f"[red]difference[/] {diff['check']} {diff.get('document') or ''} "
                      f"{diff.get('day') or ''}: source {diff.get('source')} ledger "
                      f"{diff.get('ledger')}", highlight=False)
    if len(other) > 20:
        console.print(f"... and {len(other) - 20} more (`salesledger reconcile`)")
    return ["reconcile"] if other else []


def next_steps(settings: Settings, console: Console, first_day: dt.date,
               last_day: dt.date) -> None:
    """Where to look next, with the demo's own dates."""
    first, last = settings.worker_metrics_ports
    console.rule("[bold]where to look next")
    console.print(
        "- reports: `salesledger report trial-balance | ar-aging | stock | pnl --from D --to D | "
        "journal --document N` (add `--format json|csv|xlsx`), `salesledger reconcile`\n"
        f"- one HTML page with charts: `salesledger report html --from {first_day} --to "
        f"{last_day} --out salesledger-report.html`\n"
        "- audit replay: `salesledger replay --into audit --from-beginning` (or "
        "`--from-documents`), then `salesledger ledger-hash --schema audit` equals "
        "`salesledger ledger-hash`\n"
        "- dead letters and held documents: `salesledger ledger dead-letters list`, "
        "`salesledger held list`\n"
        f"- Prometheus UI: {settings.prometheus_url} (workers' metrics on ports {first}-{last} "
        "while they run; `salesledger demo --follow` keeps them running)\n"
        "- Grafana dashboards: only under docker-compose (`deploy/docker-compose.yml`); the "
        "local stack has none", highlight=False)


def child_env(settings: Settings, demo: DemoSettings) -> dict[str, str]:
    """Environment for the CLI children (reports): this profile, the demo's chart."""
    return {**os.environ, "SALESLEDGER_PROFILE": settings.profile,
            "SALESLEDGER_PIPELINE_CHART": demo.chart}


def run_demo(settings: Settings, demo: DemoSettings, *, fresh: bool, follow: bool,
             console: Console) -> int:
    """The whole demo (module docstring); returns the exit code (0: books balanced and
    reconciled).

    Raises:
        DemoError: a step failed (the message names it).
    """
    started = time.monotonic()

    def report(line: str) -> None:
        console.print(line, highlight=False)

    console.rule(f"[bold]salesledger demo[/] — profile {settings.profile}, prefix "
                 f"{settings.topic_prefix}, {demo.dataset}, {demo.days} trading days")
    stack_up(settings, report)
    if fresh:
        reset_data(settings, report)
    migrate(settings, report)
    prepared = load(settings, demo, report)
    register_connector(settings, report)
    pipeline = Pipeline(settings, demo)
    pipeline.start(report)
    probe = replay = None
    try:
        post_opening_balance(settings, demo.dataset, prepared.as_of, report)
        span = (prepared.plan.steps[-1].at - prepared.plan.steps[0].at).total_seconds() \
            if prepared.plan.steps else 0
        speed_text = "max" if math.isinf(prepared.speed) else f"{prepared.speed:,.0f}x"
        report(f"replaying {len(prepared.plan.steps)} steps spanning {span / 3600:,.1f} simulated "
               f"hours at {speed_text} (about {span / prepared.speed if prepared.speed else 0:,.0f} s)")
        replay = Replay(settings, prepared)
        replay.start()
        currency = demo.ledger_settings().functional_currency
        probe = Probe(settings, schema=STORE_SCHEMA, sink_group=sink_group(settings),
                      chart=demo.chart, currency=currency, as_of=prepared.last_day,
                      dataset=demo.dataset)
        title = (f"{demo.dataset}: {prepared.plan.days[0]} … {prepared.plan.days[-1]} replayed as "
                 f"{prepared.plan.days[0] + dt.timedelta(days=prepared.shift_days)} … "
                 f"{prepared.last_day}")
        watch(probe, replay, pipeline, demo, console, title, follow=False)
        elapsed = time.monotonic() - started
        report(f"drained after {elapsed:,.0f} s wall time")
        failed = final_reports(settings, demo, prepared.last_day, console,
                               child_env(settings, demo))
        next_steps(settings, console,
                   prepared.plan.days[0] + dt.timedelta(days=prepared.shift_days),
                   prepared.last_day)
        if failed:
            console.print(f"[bold red]demo finished with problems[/]: {', '.join(failed)} "
                          "exited non-zero (see above)")
        else:
            console.print(f"[bold green]demo done[/] in {time.monotonic() - started:,.0f} s: the "
                          "books balance; every difference with the sales database (if any) is "
                          "a held document, listed above.")
        if follow:
            console.print("following: the pipeline keeps running; Ctrl-C stops the workers")
            try:
                watch(probe, None, pipeline, demo, console, title, follow=True)
            except KeyboardInterrupt:
                console.print("stopping the workers (the stack keeps running)")
        return 1 if failed else 0
    except KeyboardInterrupt:
        console.print("interrupted: stopping the replay and the workers (run the demo again to "
                      "resume)")
        return 130
    finally:
        if replay is not None and replay.is_alive():
            replay.cancel()
            replay.join(timeout=30)
        if probe is not None:
            probe.close()
        pipeline.stop()


__all__ = ["DemoError", "Pipeline", "drained", "reset_data", "run_demo", "sink_group"]
