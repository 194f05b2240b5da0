"""The Faust applications of salesledger, built from settings (one per stage).

Two stages, two Faust apps (each its own consumer group and, for posting, its changelog):

- ``assembly`` (:mod:`salesledger.streams.assembly_agent`): the document tables' CDC topics and
  the transaction topic -> ``{prefix}.documents``;
- ``posting`` (:mod:`salesledger.streams.posting_agent`): ``{prefix}.documents`` -> the ledger
  topics, the held topic, the control topic (audit of period actions), the metrics topic, the
  dead-letter topic.

App id ``<topic prefix>-<stage>`` (``sl-posting`` / ``sltest-posting``), so profiles never share
a consumer group or a changelog. Broker: the stack's Kafka (:attr:`Settings.kafka_bootstrap`).
Topic names come from ``deploy/topics.yaml`` with the profile prefix (:func:`topic_names`).
Those topics are created by ``stack up``; the broker's auto-create is off. Faust may declare
(create, via the admin API) only what it owns: its table changelog topics and its assignor's
leader topic (``topic_allow_declare``; Faust declares only ``internal`` topics, which our
``app.topic()`` calls are not).

The posting stage's table lives in RocksDB on local disk (``store="rocksdb://"``, the rocksdict
driver), so the worker's memory does not grow with the ledger's history (field case CDC-20;
:mod:`salesledger.streams.state_store` reads keys through). The local database is a cache of the
table's changelog topic, **wiped on every start** and rebuilt from the changelog: a worker killed
with ``kill -9`` can leave local writes the broker never acknowledged, and a state ahead of its
changelog would diverge from what a standby (or a restart elsewhere) recovers. RocksDB's own
memory is capped by :data:`ROCKSDB_OPTIONS`. The assembly stage has no table.

Pipeline options are :class:`PipelineSettings` (``SALESLEDGER_PIPELINE_*``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import faust
import yaml
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from salesledger.config import Settings
from salesledger.ledger.charts import Chart, load_chart
from salesledger.ledger.settings import LedgerSettings
from salesledger.streams.transport import FatalSendErrors, Transport

Stage = Literal["assembly", "posting"]
#: Bytes per producer batch (one partition, one request); see :func:`create_app`.
PRODUCER_BATCH_BYTES_MAX = 512 * 1024
STAGES: tuple[Stage, ...] = ("assembly", "posting")
#: RocksDB options of the posting table (Faust's ``RocksDBOptions``; bytes): Faust's defaults
#: (3 x 64 MiB write buffers, a 2 GiB block cache, 500 MiB compressed cache) would let the
#: worker's RSS climb by gigabytes as the table grows; these cap RocksDB at about 2 x 16 MiB of
#: memtables plus a 32 MiB block cache.
ROCKSDB_OPTIONS = {
    "driver": "rocksdict",
    "write_buffer_size": 16 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 32 * 1024 * 1024,
    "block_cache_size": 32 * 1024 * 1024,
    "block_cache_compressed_size": 8 * 1024 * 1024,
}


class PipelineSettings(BaseSettings):
    """Options of the stream workers (frozen; ``SALESLEDGER_PIPELINE_<FIELD>``).

    - ``chart``: chart preset (``az-nas``, ``ru-1c``) or a YAML chart file.
    - ``ledger_settings_file``: YAML of :class:`LedgerSettings` (None: the defaults — AZN,
      FIFO, 0.01 ROUND_HALF_UP, locked periods held).
    - ``web_port``: Faust's web server port (None: disabled, so several workers run side by side).
    - ``metrics_port``: Prometheus exposition port of this worker (None: none).
    - ``commit_interval_s``: how often Faust commits offsets (s); smaller = less re-delivery.
    - ``metrics_window_s``: width of the business-metrics windows (s).
    - ``metrics_flush_s``: how often closed windows are produced (s).
    - ``session_timeout_s``: Kafka consumer-group session timeout (s), see below.
    """

    model_config = SettingsConfigDict(env_prefix="SALESLEDGER_PIPELINE_", frozen=True,
                                      extra="ignore")

    chart: str = "az-nas"
    ledger_settings_file: Path | None = None
    web_port: int | None = None
    metrics_port: int | None = None
    commit_interval_s: float = Field(default=1.0, gt=0, le=60)
    metrics_window_s: int = Field(default=60, ge=1, le=3600)
    metrics_flush_s: float = Field(default=5.0, gt=0, le=600)
    # A worker killed with SIGKILL (OOM, kill -9) never leaves its consumer group: its
    # replacement (restarted by the supervisor within seconds) cannot get the partitions until
    # the dead member's session expires. With Faust's default of 60 s every such restart stalled
    # its stage for ~58 s (measured in tests/pipeline/test_pipeline_crash.py); 10 s makes it
    # ~10 s. Trade-off: aiokafka heartbeats from the event loop (every 3 s), so a loop blocked
    # for more than 10 s (a huge document, swapping) drops the worker from the group: one extra
    # rebalance and re-delivery of uncommitted records (the state's dedup absorbs those). Once,
    # in the crash test's two-worker run, a rebalance made Faust commit past 75 documents it
    # never handed to the agent; the posting agent now seeks back to the offset its state needs
    # (posting_agent). The broker's floor is group.min.session.timeout.ms (6 s by default).
    session_timeout_s: float = Field(default=10.0, ge=6, le=90)

    @model_validator(mode="after")
    def _check(self) -> "PipelineSettings":
        if self.web_port is not None and self.web_port == self.metrics_port:
            raise ValueError("web_port and metrics_port must differ")
        return self

    def ledger_settings(self) -> LedgerSettings:
        """The engine's settings (file or defaults)."""
        if self.ledger_settings_file is None:
            return LedgerSettings()
        return LedgerSettings(**(yaml.safe_load(self.ledger_settings_file.read_text()) or {}))

    def load_chart(self) -> Chart:
        """The chart of accounts."""
        return load_chart(self.chart)


def app_id(settings: Settings, stage: Stage) -> str:
    """Faust app id (= consumer group, changelog topic prefix) of ``stage``: ``sl-posting``."""
    assert stage in STAGES, stage
    return f"{settings.topic_prefix}-{stage}"


def topic_names(settings: Settings) -> list[str]:
    """Every topic of ``deploy/topics.yaml`` with this profile's prefix."""
    from salesledger.stack.topics import load_topics, topics_file

    path = topics_file()
    assert path is not None, "deploy/topics.yaml is shipped with the package"
    return [spec.name for spec in load_topics(path, settings.topic_prefix)]


def declared(settings: Settings, suffix: str) -> str:
    """Full name of the topic ``suffix`` (``documents``), asserting topics.yaml declares it."""
    name = settings.topic(suffix)
    assert name in topic_names(settings), f"{name} is not in deploy/topics.yaml"
    return name


def create_app(settings: Settings, stage: Stage, pipeline: PipelineSettings | None = None
               ) -> faust.App:
    """A Faust app for ``stage`` (see the module docstring); agents are added by the stage's
    module (``assembly_agent.build`` / ``posting_agent.build``)."""
    pipeline = pipeline or PipelineSettings()
    # Faust's data directory, one per worker process; the posting table's RocksDB under it is
    # wiped here, on every start (module docstring: rebuilt from the changelog).
    datadir = settings.stack_dir / "faust" / app_id(settings, stage) / \
        os.environ.get("SALESLEDGER_WORKER_NAME", f"pid-{os.getpid()}")
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id(settings, stage),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="rocksdb://" if stage == "posting" else "memory://",
        topic_replication_factor=1,
        topic_partitions=1,
        topic_allow_declare=True,           # changelog + leader topics only (Faust-internal)
        topic_disable_leader=False,
        web_enabled=pipeline.web_port is not None,
        web_port=pipeline.web_port or 6066,
        web_host=settings.host,
        broker_commit_interval=pipeline.commit_interval_s,
        broker_commit_every=1000,
        broker_session_timeout=pipeline.session_timeout_s,  # see PipelineSettings
        broker_heartbeat_interval=min(3.0, pipeline.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=4_000_000,
        # aiokafka keeps ONE produce request in flight per broker and at most one batch of
        # producer_max_batch_size per partition; a full batch makes send() wait for the round
        # trip (acks=all). At Faust's 16 KiB a posting step (~50 records: movements, changelog)
        # or a few documents filled it, so a stage waited one round trip per 16 KiB.
        # Below the broker's message.max.bytes (1 MiB default).
        producer_max_batch_size=PRODUCER_BATCH_BYTES_MAX,
        table_standby_replicas=1,
        processing_guarantee="at_least_once",  # correctness never depends on exactly_once
        datadir=str(datadir),
    )
    # Consumer with a short fetch wait (salesledger.streams.transport: why).
    app.transport = Transport(app.conf.broker_consumer, app)
    app.sensors.add(FatalSendErrors())  # a refused produce request ends the worker (transport)
    return app


def raw_topic(app: faust.App, *names: str):
    """A Faust topic over ``names`` with raw bytes keys and values (we decode ourselves, so a
    bad record is a dead letter, never a deserialisation crash: CDC-14)."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", acks=True)


__all__ = ["PipelineSettings", "ROCKSDB_OPTIONS", "STAGES", "Stage", "app_id", "create_app", "declared",
           "raw_topic", "topic_names"]
