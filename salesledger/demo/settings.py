"""The demo's settings file (``deploy/demo.yaml``): dataset slice, pacing, chart, ledger options.

One file holds everything the demo decides: which data (Online Retail, the last 7 trading days
of the shipped subset, shifted so the last day is today), how fast it is replayed (about
``within_s`` seconds of traffic), the chart of accounts and the posting engine's
:class:`~salesledger.ledger.settings.LedgerSettings` (GBP, 20% VAT included in the data's
prices, UK business dates). The pipeline workers receive the chart and the ledger options as
``SALESLEDGER_PIPELINE_CHART`` / ``SALESLEDGER_PIPELINE_LEDGER_SETTINGS_FILE``; the demo also
records them per topic prefix (:func:`record_pipeline_settings`) so ``salesledger replay
--from-documents`` posts with exactly the live run's options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from salesledger.config import Settings
from salesledger.ledger.settings import LedgerSettings
from salesledger.resources import resource_path

DEMO_FILE = "deploy/demo.yaml"


@dataclass(frozen=True)
class DemoSettings:
    """The demo's options (see ``deploy/demo.yaml`` for each one's meaning).

    ``days``: trading days of the slice; ``within_s``: wall seconds the replay should last
    (the speed is computed from the slice's time span); ``speed``: a fixed speed instead
    (simulated seconds per wall second, ``inf`` = as fast as possible); ``ledger``: the
    LedgerSettings keyword arguments; ``drain_deadline_s`` / ``quiet_s``: how long to wait for
    the pipeline to drain and how long nothing new must arrive to call it drained (seconds).
    """

    dataset: str = "online-retail"
    path: Path | None = None
    days: int = 7
    seed: int = 42
    shift_to_today: bool = True
    within_s: float = 420.0
    speed: float | None = None
    workers: int = 1
    drain_deadline_s: float = 900.0
    quiet_s: float = 15.0
    chart: str = "az-nas"
    ledger: dict[str, Any] | None = None

    def ledger_settings(self) -> LedgerSettings:
        """The posting engine's settings (validated; ``ValidationError`` on a bad option)."""
        return LedgerSettings(**(self.ledger or {}))

    def with_overrides(self, **values: Any) -> "DemoSettings":
        """A copy with the non-None ``values`` replaced (command-line options)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def load_demo_settings(path: Path | None = None) -> DemoSettings:
    """Read ``path`` (default: the shipped ``deploy/demo.yaml``).

    Raises:
        FileNotFoundError: the file is missing; ValueError: an unknown key in its ``demo``
        section; pydantic.ValidationError: a bad ledger option.
    """
    path = path or resource_path(DEMO_FILE)
    data = yaml.safe_load(Path(path).read_text()) or {}
    demo = dict(data.get("demo") or {})
    known = set(DemoSettings.__dataclass_fields__) - {"chart", "ledger"}
    unknown = set(demo) - known
    if unknown:
        raise ValueError(f"{path}: unknown demo settings {sorted(unknown)}")
    if demo.get("path"):
        demo["path"] = Path(demo["path"])
    settings = DemoSettings(**demo, chart=data.get("chart", "az-nas"), ledger=data.get("ledger"))
    settings.ledger_settings()  # validate now, not in a worker
    return settings


def pipeline_record_path(settings: Settings) -> Path:
    """``<stack_dir>/run/<prefix>-pipeline.json``: the chart and ledger options the live
    pipeline of this topic prefix was started with (written by the demo)."""
    return settings.stack_dir / "run" / f"{settings.topic_prefix}-pipeline.json"


def record_pipeline_settings(settings: Settings, demo: DemoSettings) -> dict[str, str]:
    """Write the pipeline's ledger settings as YAML and the record of them; return the
    environment variables the workers need (``SALESLEDGER_PIPELINE_CHART``,
    ``SALESLEDGER_PIPELINE_LEDGER_SETTINGS_FILE``)."""
    run_dir = settings.stack_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ledger_file = run_dir / f"{settings.topic_prefix}-ledger-settings.yaml"
    ledger_file.write_text(yaml.safe_dump(demo.ledger or {}, sort_keys=True))
    record = {"chart": demo.chart, "ledger_settings_file": str(ledger_file)}
    pipeline_record_path(settings).write_text(json.dumps(record, indent=1) + "\n")
    return {"SALESLEDGER_PIPELINE_CHART": demo.chart,
            "SALESLEDGER_PIPELINE_LEDGER_SETTINGS_FILE": str(ledger_file)}


def recorded_pipeline_settings(settings: Settings) -> dict[str, str] | None:
    """The record of :func:`record_pipeline_settings` for this prefix (None if none)."""
    path = pipeline_record_path(settings)
    return json.loads(path.read_text()) if path.exists() else None
