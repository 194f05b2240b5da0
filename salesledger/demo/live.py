"""The demo's live view: what every stage of the pipeline has done, read from where it lands.

Sources (no private hooks into the workers; everything an operator could query):

- **source** — the replay's own progress (documents inserted into the sales database);
- **capture** — Debezium: end offsets of the document header CDC topics (one record per
  captured change of an invoice, payment, return, goods receipt or write-off header);
- **assembly** — end offset of ``<prefix>.documents`` (whole document versions); its lag = end
  offsets of the CDC topics it reads − the assembly group's committed offsets;
- **posting** — the posting group's committed offset on the documents topic;
- **store** — journal entries in the accounting store, and the sink's stored consumer offsets
  (its lag = end offsets of its topics − the offsets stored with its last batch);
- business figures from the store with the report queries (:mod:`salesledger.reports.store`):
  revenue, COGS and gross margin so far, receivables by ageing bucket, dead letters by reason,
  documents in the held queue; freshness = source commit -> store commit of the latest entries.

Rates are differences of those counters over the last few seconds (documents per second).
Amounts are the ledger's functional currency, exact ``Decimal`` sums shown with 2 decimals.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql
from rich.console import Group
from rich.table import Table
from rich.text import Text

from salesledger.config import Settings
from salesledger.reports import assemble
from salesledger.reports import store as report_store
from salesledger.reports.accounts import report_accounts
from salesledger.sinks.settings import SinkSettings
from salesledger.streams.assembly import DOCUMENT_TABLES

#: CDC topics of document headers: one record per captured change of a document.
HEADER_TABLES = ("invoices", "payments", "returns", "goods_receipts", "stock_write_offs")
RATE_WINDOW_S = 5.0
_TIMEOUT_S = 10.0
ZERO = Decimal(0)


@dataclass
class Progress:
    """The replay's progress, written by the simulation thread: steps applied of ``total``,
    documents inserted, the simulated clock, and whether it has ``finished``."""

    total: int = 0
    steps: int = 0
    inserted: int = 0
    clock: dt.datetime | None = None
    finished: bool = False
    error: str | None = None


@dataclass
class Snapshot:
    """One reading of every stage (counters) and of the store's business figures."""

    at: float
    counters: dict[str, int]
    posting_lag: int | None
    sink_lag: int | None
    assembly_lag: int | None = None
    #: per stage (assembly, posting, sink): Σ committed / stored offsets (moves while it works)
    consumed: dict[str, int] = field(default_factory=dict)
    freshness_p50_s: float | None = None
    freshness_max_s: float | None = None
    revenue: Decimal = ZERO
    returns: Decimal = ZERO
    cogs: Decimal = ZERO
    margin: Decimal = ZERO
    buckets: dict[str, str] = field(default_factory=dict)
    receivables: str = "0.00"
    dead_letters: dict[str, int] = field(default_factory=dict)
    dataset_dead_letters: dict[str, int] = field(default_factory=dict)
    held: int = 0
    documents_posted: int = 0


class Probe:
    """Reads :class:`Snapshot` s for one topic prefix and store ``schema``.

    ``sink_group``: the sink's consumer group (offsets stored in the store); ``as_of``: the
    ageing date; ``dataset``: whose source dead letters to count (sales database).
    """

    def __init__(self, settings: Settings, *, schema: str, sink_group: str, chart: str,
                 currency: str, as_of: dt.date, dataset: str) -> None:
        self.settings = settings
        self.schema = schema
        self.sink_group = sink_group
        self.accounts = report_accounts(chart)
        self.currency = currency
        self.as_of = as_of
        self.dataset = dataset
        self.history: deque[Snapshot] = deque(maxlen=64)
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                   "group.id": f"{settings.topic_prefix}-posting",
                                   "enable.auto.commit": False})
        self._assembly = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                   "group.id": f"{settings.topic_prefix}-assembly",
                                   "enable.auto.commit": False})
        cdc = f"{settings.topic_prefix}.cdc"
        self._assembly_topics = [f"{cdc}.{t}" for t in sorted(DOCUMENT_TABLES)] + \
            [f"{cdc}.transaction"]
        self._watch = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                "group.id": f"{settings.topic_prefix}-demo-{uuid.uuid4().hex[:6]}",
                                "enable.auto.commit": False})
        self._sink_topics = [settings.topic(t) for t in SinkSettings().topics]
        self._partitions: dict[str, list[int]] = {}

    def close(self) -> None:
        """Close the Kafka clients."""
        self._consumer.close()
        self._assembly.close()
        self._watch.close()

    # ---- Kafka ---------------------------------------------------------------------------------

    def _parts(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            meta = self._watch.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
            parts = sorted(meta.partitions) if meta is not None and meta.error is None else []
            if not parts:
                return []
            self._partitions[topic] = parts
        return self._partitions[topic]

    def _high(self, topic: str) -> dict[int, int]:
        return {p: self._watch.get_watermark_offsets(TopicPartition(topic, p),
                                                     timeout=_TIMEOUT_S, cached=False)[1]
                for p in self._parts(topic)}

    def _assembly_lag(self) -> tuple[int, int]:
        """(Σ (end offset − the assembly group's committed offset) over the CDC topics it reads,
        Σ committed offsets); nothing committed yet counts as offset 0 (these topics keep
        everything)."""
        lag = consumed = 0
        for topic in self._assembly_topics:
            ends = self._high(topic)
            if not ends or not any(ends.values()):
                continue
            parts = [TopicPartition(topic, p) for p in ends]
            for tp in self._assembly.committed(parts, timeout=_TIMEOUT_S):
                offset = max(tp.offset, 0)
                consumed += offset
                lag += max(0, ends[tp.partition] - offset)
        return lag, consumed

    def _posting_committed(self) -> int | None:
        tp = TopicPartition(self.settings.topic("documents"), 0)
        offset = self._consumer.committed([tp], timeout=_TIMEOUT_S)[0].offset
        return offset if offset >= 0 else None

    # ---- reading -------------------------------------------------------------------------------

    def read(self, progress: Progress | None = None) -> Snapshot:
        """Read every stage now (Kafka offsets, the store, the sales database)."""
        prefix = self.settings.topic_prefix
        captured = sum(sum(self._high(f"{prefix}.cdc.sales.{t}").values()) for t in HEADER_TABLES)
        assembled = sum(self._high(self.settings.topic("documents")).values())
        committed = self._posting_committed()
        ends = {t: self._high(t) for t in self._sink_topics}
        counters = {"source": progress.inserted if progress else 0, "capture": captured,
                    "assembly": assembled, "posting": committed or 0}
        assembly_lag, assembly_consumed = self._assembly_lag()
        snap = Snapshot(at=time.monotonic(), counters=counters,
                        posting_lag=assembled - (committed or 0),
                        sink_lag=None, assembly_lag=assembly_lag,
                        consumed={"assembly": assembly_consumed, "posting": committed or 0})
        with psycopg.connect(**self.settings.conninfo("accounting", "reporting"), autocommit=True,
                             connect_timeout=_TIMEOUT_S) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            if report_store.has_ledger(conn):
                self._read_store(conn, snap, ends)
        with psycopg.connect(**self.settings.conninfo("sales", "reporting"), autocommit=True,
                             connect_timeout=_TIMEOUT_S) as conn:
            snap.dataset_dead_letters = _dataset_dead_letters(conn, self.dataset)
        self.history.append(snap)
        return snap

    def _read_store(self, conn: psycopg.Connection, snap: Snapshot,
                    ends: dict[str, dict[int, int]]) -> None:
        entries, documents = conn.execute(
            "SELECT count(*), count(DISTINCT (document_type, document_number)) "
            "FROM journal_entries").fetchone()
        snap.counters["store"] = entries
        snap.documents_posted = documents
        stored = {(t, p): o for t, p, o in conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer_group = %s",
            (self.sink_group,)).fetchall()}
        snap.sink_lag = sum(max(0, high - stored.get((t, p), 0))
                            for t, parts in ends.items() for p, high in parts.items())
        snap.consumed["sink"] = sum(stored.values())
        p50, worst = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), max(lag) FROM ("
            " SELECT extract(epoch FROM ingested_at - source_commit_at) AS lag"
            " FROM journal_entries WHERE source_commit_at IS NOT NULL"
            " ORDER BY ingested_at DESC LIMIT 200) recent").fetchone()
        snap.freshness_p50_s = float(p50) if p50 is not None else None
        snap.freshness_max_s = float(worst) if worst is not None else None
        totals = assemble.pnl(report_store.pnl_rows(conn, self.accounts, date_from=dt.date.min,
                                                    date_to=self.as_of),
                              date_from=dt.date.min, date_to=self.as_of, by=())["totals"]
        snap.revenue, snap.returns = Decimal(totals["revenue"]), Decimal(totals["returns"])
        snap.cogs, snap.margin = Decimal(totals["cogs"]), Decimal(totals["gross_margin"])
        ageing = assemble.ar_aging(report_store.open_item_rows(conn, as_of=self.as_of),
                                   report_store.advance_rows(conn, as_of=self.as_of),
                                   as_of=self.as_of)
        snap.buckets, snap.receivables = ageing["buckets"], ageing["total"]
        snap.dead_letters = dict(conn.execute(
            "SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason").fetchall())
        snap.held = conn.execute("SELECT count(*) FROM held_queue").fetchone()[0]

    def rates(self) -> dict[str, float | None]:
        """Per stage: counter increase per second over the last :data:`RATE_WINDOW_S`."""
        if len(self.history) < 2:
            return {}
        now = self.history[-1]
        then = next((s for s in self.history if now.at - s.at <= RATE_WINDOW_S), self.history[0])
        if then is now:
            then = self.history[-2]
        span = now.at - then.at
        return {k: (v - then.counters.get(k, 0)) / span if span > 0 else None
                for k, v in now.counters.items()}


def _dataset_dead_letters(conn: psycopg.Connection, dataset: str) -> dict[str, int]:
    exists = conn.execute("SELECT to_regclass('salesledger_data.dead_letters') IS NOT NULL"
                          ).fetchone()[0]
    if not exists:
        return {}
    return dict(conn.execute("SELECT reason, count(*) FROM salesledger_data.dead_letters "
                             "WHERE dataset = %s GROUP BY reason ORDER BY reason",
                             (dataset,)).fetchall())


# ---- rendering ---------------------------------------------------------------------------------

_STAGES = (("source", "sales DB: documents inserted"), ("capture", "Debezium: header changes"),
           ("assembly", "assembly: document versions"), ("posting", "posting: versions posted"),
           ("store", "store: journal entries"))


def money(value: Decimal | str) -> str:
    """``1234.5`` -> ``"1,234.50"`` (display only; the value is exact)."""
    return f"{Decimal(value):,.2f}"


def render(snap: Snapshot | None, rates: dict[str, float | None], progress: Progress,
           currency: str, title: str, status: str) -> Group:
    """The live view: stages with rates, freshness, business figures, failures."""
    head = Text(f"{title} — {status}", style="bold")
    if progress.total:
        clock = f"{progress.clock:%Y-%m-%d %H:%M}" if progress.clock else "-"
        head.append(f"\nreplay: step {progress.steps}/{progress.total}, "
                    f"simulated clock {clock}", style="dim")
    if snap is None:
        return Group(head, Text("waiting for the first reading…"))
    stages = Table(title="pipeline", title_justify="left", expand=False)
    for column in ("stage", "count", "per second"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for key, label in _STAGES:
        rate = rates.get(key)
        stages.add_row(label, f"{snap.counters.get(key, 0):,}",
                       "-" if rate is None else f"{rate:,.1f}")
    lag = (f"lag: assembly {'-' if snap.assembly_lag is None else snap.assembly_lag}, "
           f"posting {'-' if snap.posting_lag is None else snap.posting_lag}, sink "
           f"{'-' if snap.sink_lag is None else snap.sink_lag} records; freshness (source commit "
           f"-> store) p50 {_seconds(snap.freshness_p50_s)}, max {_seconds(snap.freshness_max_s)} "
           f"of the latest 200 entries")
    books = Table(title=f"the books so far ({currency})", title_justify="left")
    for column in ("revenue (net)", "returns", "COGS", "gross margin", "margin %",
                   "documents posted"):
        books.add_column(column, justify="right")
    pct = f"{(snap.margin / snap.revenue * 100):.1f}" if snap.revenue else "-"
    books.add_row(money(snap.revenue), money(snap.returns), money(snap.cogs), money(snap.margin),
                  pct, f"{snap.documents_posted:,}")
    ageing = Table(title=f"receivables by bucket ({currency}), total {money(snap.receivables)}",
                   title_justify="left")
    for name in assemble.BUCKET_NAMES:
        ageing.add_column(name, justify="right")
    if snap.buckets:
        ageing.add_row(*(money(snap.buckets[name]) for name in assemble.BUCKET_NAMES))
    failures = Text()
    pipeline_dead = ", ".join(f"{r} {n}" for r, n in snap.dead_letters.items()) or "none"
    dataset_dead = ", ".join(f"{r} {n}" for r, n in snap.dataset_dead_letters.items()) or "none"
    failures.append(f"dead letters in the pipeline: {pipeline_dead}\n")
    failures.append(f"source lines that became no document (dataset dead letters): {dataset_dead}\n")
    failures.append(f"held documents: {snap.held}\n")
    return Group(head, stages, Text(lag), books, ageing, failures)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


__all__ = ["Probe", "Progress", "Snapshot", "money", "render"]
