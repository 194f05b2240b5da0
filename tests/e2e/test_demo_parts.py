"""The demo's pure parts: its settings file and the "drained" rule of the live view."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesledger.demo.live import Snapshot
from salesledger.demo.orchestrate import drained
from salesledger.demo.settings import load_demo_settings


def test_shipped_demo_settings_are_the_documented_ones() -> None:
    demo = load_demo_settings()
    assert (demo.dataset, demo.days, demo.shift_to_today, demo.chart) == \
        ("online-retail", 7, True, "az-nas")
    ledger = demo.ledger_settings()
    assert ledger.functional_currency == "GBP"
    assert ledger.business_time_zone == "Europe/London"
    assert 0 < demo.within_s <= 600, "the replay must end within 10 minutes"
    assert demo.path is None, "the default must be the copy shipped in the package"


def test_demo_settings_refuse_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text("demo:\n  dayz: 3\n")
    with pytest.raises(ValueError, match="dayz"):
        load_demo_settings(path)


def test_demo_settings_overrides_keep_what_is_not_given() -> None:
    demo = load_demo_settings().with_overrides(days=1, dataset=None, within_s=30.0)
    assert (demo.days, demo.dataset, demo.within_s) == (1, "online-retail", 30.0)


def _snap(at: float, *, store: int = 10, assembly: int = 5, lags=(0, 0, 0)) -> Snapshot:
    return Snapshot(at=at, counters={"source": 3, "capture": 7, "assembly": assembly,
                                     "posting": assembly, "store": store},
                    assembly_lag=lags[0], posting_lag=lags[1], sink_lag=lags[2])


def test_drained_needs_zero_lags_and_a_quiet_window() -> None:
    quiet = [_snap(t) for t in range(0, 16, 2)]
    assert drained(quiet, quiet_s=14)
    assert not drained(quiet[:3], quiet_s=14), "too short a window to call it quiet"
    assert not drained(quiet[:-1] + [_snap(14, lags=(0, 1, 0))], quiet_s=14)
    assert not drained(quiet[:-1] + [_snap(14, lags=(2, 0, 0))], quiet_s=14)
    assert not drained(quiet[:-1] + [_snap(14, lags=(0, 0, 1))], quiet_s=14)
    assert not drained(quiet[:-1] + [_snap(14, store=11)], quiet_s=14), "the store still grows"
    assert not drained(quiet[:-1] + [_snap(14, assembly=6)], quiet_s=14)
    assert not drained([], quiet_s=14)


def test_watchdog_restarts_only_a_stage_with_work_and_no_progress(tmp_path: Path) -> None:
    from salesledger.config import Settings
    from salesledger.demo.orchestrate import Watchdog

    settings = Settings(profile="test", stack_dir=tmp_path)  # no supervisor: nothing to kill
    dog = Watchdog(settings, stuck_s=60)

    def snap(at: float, *, posting_lag: int, posting_done: int) -> Snapshot:
        s = _snap(at, lags=(0, posting_lag, 0))
        s.consumed = {"assembly": 5, "posting": posting_done, "sink": 9}
        return s

    assert dog.check(snap(0, posting_lag=3, posting_done=10)) == []
    assert dog.check(snap(59, posting_lag=3, posting_done=10)) == []
    assert dog.check(snap(61, posting_lag=3, posting_done=12)) == [], "it made progress"
    assert dog.check(snap(120, posting_lag=3, posting_done=12)) == []
    done = dog.check(snap(122, posting_lag=3, posting_done=12))
    assert len(done) == 1 and done[0].startswith("posting stage: lag 3")
    assert dog.check(snap(150, posting_lag=3, posting_done=12)) == [], "one restart, then wait"
    quiet = Watchdog(settings, stuck_s=60)
    assert quiet.check(snap(0, posting_lag=0, posting_done=12)) == []
    assert quiet.check(snap(500, posting_lag=0, posting_done=12)) == [], "no work, no restart"
