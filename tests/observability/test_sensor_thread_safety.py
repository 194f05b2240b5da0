"""The per-partition sensor's scrape-time refresh runs in the HTTP server's thread: it must never
create Faust's consumer there (a consumer made off the worker's event loop binds its thread to
another loop and the worker dies at start-up with "Future attached to a different loop")."""

from __future__ import annotations

from salesledger import metrics


class _AppBeforeStart:
    """A Faust app whose consumer the worker's loop has not created yet."""

    _consumer = None
    created_consumer = False

    @property
    def consumer(self):  # Faust's lazy property: reading it creates the consumer
        self.created_consumer = True
        raise RuntimeError("consumer created outside the worker's loop")


def test_scrape_before_start_does_not_create_the_consumer() -> None:
    app = _AppBeforeStart()
    metrics.faust_sensor(app, "test-stage")
    list(metrics.PARTITIONS.collect())  # runs every refresher, as a scrape does
    assert not app.created_consumer


def test_scrape_after_start_reads_the_existing_consumer() -> None:
    from faust.types import TP

    class _Consumer:
        def assignment(self):
            return {TP("t", 0)}

        def highwater(self, tp):
            return 10

    class _App:
        _consumer = _Consumer()

        @property
        def consumer(self):
            return self._consumer

    sensor = metrics.faust_sensor(_App(), "test-stage-2")
    sensor.on_message_in(TP("t", 0), 3, None)
    families = {f.name: f for f in metrics.PARTITIONS.collect()}
    lag = [s for s in families["salesledger_consumer_lag_records"].samples
           if s.labels.get("stage") == "test-stage-2"]
    assert [(s.labels["topic"], s.labels["partition"], s.value) for s in lag] == [("t", "0", 6.0)]
