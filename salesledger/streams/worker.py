"""One worker process: ``python -m salesledger.streams.worker assembly|posting|sink``.

Started by :mod:`salesledger.supervisor` (``salesledger run``); reads the process settings
(``SALESLEDGER_*``, ``SALESLEDGER_PIPELINE_*``, ``SALESLEDGER_SINK_*``). A Faust stage runs a
Faust worker (SIGTERM / SIGINT stop it gracefully: offsets committed, producer flushed); the
sink stage runs :func:`salesledger.sinks.worker.run_sink`.
"""

from __future__ import annotations

import logging
import sys

STAGES = ("assembly", "posting", "sink")


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
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: the stage name is the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STAGES:
        print(f"usage: python -m salesledger.streams.worker {{{'|'.join(STAGES)}}}", file=sys.stderr)
        return 2
    return run_stage(args[0])


if __name__ == "__main__":
    sys.exit(main())
