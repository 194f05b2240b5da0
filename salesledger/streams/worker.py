"""One worker process: ``python -m salesledger.streams.worker assembly|posting|sink``.

Started by :mod:`salesledger.supervisor` (``salesledger run``); reads the process settings
(``SALESLEDGER_*``, ``SALESLEDGER_PIPELINE_*``, ``SALESLEDGER_SINK_*``). A Faust stage runs a
Faust worker (SIGTERM / SIGINT stop it gracefully: offsets committed, producer flushed); the
sink stage runs :func:`salesledger.sinks.worker.run_sink`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

STAGES = ("assembly", "posting", "sink")
#: Seconds a Faust worker may take to become ready (changelog recovery included) / may go
#: without an event-loop tick before the watchdog exits the process for a restart.
STARTUP_S_MAX = 240.0
STALL_S_MAX = 120.0
log = logging.getLogger(__name__)


def run_stage(stage: str, loglevel: str = "info") -> int:
    """Run ``stage`` in this process until it is stopped; return the exit code."""
    from salesledger.config import get_settings

    settings = get_settings()
    if stage == "sink":
        from salesledger.sinks.worker import run_sink

        logging.basicConfig(level=loglevel.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        run_sink(settings)
        return 0
    import faust

    from salesledger.metrics import faust_sensor
    from salesledger.streams import assembly_agent, posting_agent, telemetry
    from salesledger.streams.app import PipelineSettings, create_app

    pipeline = PipelineSettings()
    telemetry.serve(pipeline.metrics_port)
    app = create_app(settings, stage, pipeline)  # type: ignore[arg-type]
    app.sensors.add(faust_sensor(app, stage))  # per-partition lag and last-fetch age
    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if stage == "assembly":
        assembly_agent.build(app, settings, pipeline)
    else:
        posting_agent.build(app, settings, pipeline)
    _watchdog(app, progress=_posting_progress(app, settings) if stage == "posting" else None)
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def _posting_progress(app, settings):  # noqa: ANN001, ANN202
    """A check for the watchdog thread: True while the posting agent keeps taking records
    (or none wait, or this worker does not own the documents partition); False when records
    wait on the documents topic and the agent took none for ``STALL_S_MAX`` since it took one
    or since this worker became the partition's owner (seen under load: the agent parked while
    Faust's loop still ticks). A standby (``--workers 2``) takes no record by design: it used
    to be restarted every ``STALL_S_MAX``, each time forcing a rebalance of the group."""
    import faust
    from confluent_kafka import Consumer, TopicPartition

    from salesledger.streams.posting_agent import PROGRESS

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": "salesledger-watchdog", "enable.auto.commit": False})
    tp = TopicPartition(settings.topic("documents"), 0)
    owned = faust.types.TP(settings.topic("documents"), 0)
    active = {"since": None}

    def check() -> bool:
        try:
            owner = owned in app.assignor.assigned_actives()
        except Exception:  # no assignment yet (read from this thread: a racy read is fine)
            owner = False
        if not owner:
            active["since"] = None
            return True
        if active["since"] is None:
            active["since"] = time.monotonic()
        if time.monotonic() - max(PROGRESS["at"], active["since"]) < STALL_S_MAX:
            return True
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
        except Exception:  # broker unreachable: not the agent's fault
            return True
        return high <= PROGRESS["offset"] + 1

    return check


def _watchdog(app, startup_s: float = STARTUP_S_MAX, stall_s: float = STALL_S_MAX,  # noqa: ANN001
              progress=None) -> None:  # noqa: ANN001
    """Exit the process (the supervisor restarts it) when the Faust worker does not become
    ready within ``startup_s`` or its event loop stops ticking for ``stall_s``. Seen on this
    stack: a start-up failure inside Faust/mode ("Future attached to a different loop") after
    which the worker hangs in "Stopping..." forever instead of exiting."""
    beat = {"ready": False, "at": time.monotonic()}

    @app.timer(interval=1.0)
    async def _alive() -> None:
        beat["ready"], beat["at"] = True, time.monotonic()

    def watch() -> None:
        started = time.monotonic()
        while True:
            time.sleep(2.0)
            now = time.monotonic()
            if not beat["ready"] and now - started > startup_s:
                log.error("worker not ready after %.0f s: exiting for a restart", startup_s)
                os._exit(3)
            if beat["ready"] and now - beat["at"] > stall_s:
                log.error("event loop silent for %.0f s: exiting for a restart", stall_s)
                os._exit(4)
            if beat["ready"] and progress is not None and not progress():
                log.error("records wait but the agent took none for %.0f s: exiting for a "
                          "restart (the state table makes a restart safe)", stall_s)
                os._exit(5)

    threading.Thread(target=watch, name="salesledger-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Entry point: the stage name is the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STAGES:
        print(f"usage: python -m salesledger.streams.worker {{{'|'.join(STAGES)}}}", file=sys.stderr)
        return 2
    return run_stage(args[0])


if __name__ == "__main__":
    sys.exit(main())
