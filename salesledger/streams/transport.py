"""Faust's aiokafka transport with a short fetch wait (the consumer side of both stages).

Why: Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` (hard-coded in
``faust.transport.drivers.aiokafka``), and aiokafka keeps ONE fetch request in flight per broker.
A partition whose fetched records are still being processed is left out of the next fetch; that
fetch then names only idle partitions (assembly reads ~20 CDC topics, most of them idle) and the
broker holds it for up to 1.5 s. The busy partition cannot be fetched again before it returns,
so a backlog was read in bursts of one fetch (~1 MiB) per up to 1.5 s: the assembly worker sat
idle while thousands of CDC records waited. With :data:`FETCH_WAIT_MS_MAX` the stall is at most
that long; an idle worker sends a few more (empty) fetch requests per second.

Use: ``app.transport = Transport(app.conf.broker_consumer, app)`` right after creating the
app (:func:`salesledger.streams.app.create_app`); the producer transport is Faust's own.

Two more departures from Faust, both so that no record is lost silently:

- :func:`declare_contiguous`: Faust's consumer takes a jump in a partition's offsets for a hole
  (transaction markers, compaction) and commits over it once a later offset is acknowledged.
  On a topic without holes a jump means records Faust did not hand to the agent (seen after a
  rebalance); committing over them loses them. Declared topics never get such a "gap".
- :class:`FatalSendErrors`: a produce request the broker refuses (e.g. a table changelog value
  above its message size: ``MessageSizeTooLargeError``) only sets the exception of a future
  nobody awaits ("FutureMessage exception was never retrieved") and processing goes on, past a
  state write or an output that is not durable. The sensor ends the process instead
  (:data:`SEND_FAILED_EXIT_CODE`); the supervisor restarts it from the last commit.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NoReturn

import faust
from faust.sensors import Sensor
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

#: Longest time (ms) the broker holds a fetch that finds no new record.
FETCH_WAIT_MS_MAX = 100
#: Exit code of a worker whose produce request failed (the watchdog uses 3-5).
SEND_FAILED_EXIT_CODE = 6


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):  # noqa: ANN001, ANN202
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts (AIOKafkaConsumer.start builds its Fetcher from it).
        assert hasattr(consumer, "_fetch_max_wait_ms"), "aiokafka renamed its fetch wait"
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS_MAX  # noqa: SLF001
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:  # noqa: ANN001
        if tp.topic in getattr(self.transport, "contiguous_topics", ()):
            log.warning("%s: offsets %d-%d not handed to the agent; not committed over (the "
                        "topic has no holes)", tp, offset_from, offset_to)
            return
        await super()._add_gap(tp, offset_from, offset_to)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport whose group consumer waits at most :data:`FETCH_WAIT_MS_MAX`
    for an empty fetch (module docstring)."""

    Consumer = _Consumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contiguous_topics: set[str] = set()


def declare_contiguous(app: faust.App, topic: str) -> None:
    """Declare that ``topic``'s offsets have no holes (no transactional producer, no
    compaction): Faust never commits over offsets it did not deliver (module docstring)."""
    assert isinstance(app.transport, Transport), "create_app installs the Transport"
    app.transport.contiguous_topics.add(topic)


def exit_on_send_error(error: BaseException) -> NoReturn:
    """End the process at once: no commit, no flush (a graceful stop would commit offsets past
    the write that failed). The supervisor restarts the worker from the last commit."""
    log.critical("produce request failed, exiting for a restart (a state write or output that "
                 "is not durable must not be followed by more processing): %s: %s",
                 type(error).__name__, error)
    logging.shutdown()
    os._exit(SEND_FAILED_EXIT_CODE)


class FatalSendErrors(Sensor):
    """Faust sensor: any failed produce request (table changelogs, outputs) ends the worker
    (module docstring). Add with ``app.sensors.add(FatalSendErrors())``."""

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        exit_on_send_error(exc)


__all__ = ["FETCH_WAIT_MS_MAX", "SEND_FAILED_EXIT_CODE", "FatalSendErrors", "Transport",
           "declare_contiguous", "exit_on_send_error"]
