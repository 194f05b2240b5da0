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
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

#: Longest time (ms) the broker holds a fetch that finds no new record.
FETCH_WAIT_MS_MAX = 100


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


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport whose group consumer waits at most :data:`FETCH_WAIT_MS_MAX`
    for an empty fetch (module docstring)."""

    Consumer = _Consumer


__all__ = ["FETCH_WAIT_MS_MAX", "Transport"]
