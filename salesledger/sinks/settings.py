"""Settings of the sink worker (``SALESLEDGER_SINK_*``), next to the stack's
:class:`salesledger.config.Settings` (which gives DSNs, roles, Kafka and topic prefix)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SinkSettings(BaseSettings):
    """Frozen sink settings.

    ``batch_rows_max``: rows (journal entry + its lines, or one row per other fact) gathered
    before a store transaction; ``batch_linger_ms``: longest wait (ms) from a batch's first
    record to its commit, so a quiet stream is still written promptly. ``topics``: topic
    suffixes after the profile prefix (``deploy/topics.yaml``). ``dead_letter_topic``: suffix of
    the dead-letter topic. ``schema``: the accounting store's schema. ``store_retry_ms_max``:
    longest pause between attempts while the store is unavailable (the worker never gives up
    and never acknowledges meanwhile). ``session_timeout_ms``: how long Kafka waits before
    handing a silent (killed) worker's partitions to another.
    """

    model_config = SettingsConfigDict(env_prefix="SALESLEDGER_SINK_", frozen=True, extra="ignore",
                                      populate_by_name=True)

    consumer_group: str = "salesledger-sink"
    topics: tuple[str, ...] = (
        "ledger.journal-entries", "ledger.stock-movements", "ledger.receivable-updates",
        "held", "control", "dlq",
    )
    dead_letter_topic: str = "dlq"
    schema_name: str = Field(default="ledger", alias="SALESLEDGER_SINK_SCHEMA")
    batch_rows_max: int = Field(default=2000, ge=1, le=50_000)
    batch_linger_ms: int = Field(default=200, ge=1, le=60_000)
    poll_ms: int = Field(default=100, ge=1, le=5_000)
    store_retry_ms_max: int = Field(default=5_000, ge=10, le=60_000)
    metrics_port: int | None = None
    #: Kafka static membership: a restarted worker with the same id takes its partitions back
    #: at once instead of after a session timeout. None: ``SALESLEDGER_WORKER_NAME`` (set by
    #: the supervisor, ``sink-0``...), else dynamic membership.
    group_instance_id: str | None = None
    session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)

    @model_validator(mode="after")
    def _check(self) -> "SinkSettings":
        if self.poll_ms > self.batch_linger_ms:
            raise ValueError("poll_ms must not exceed batch_linger_ms")
        if not self.topics:
            raise ValueError("the sink needs at least one topic")
        return self
