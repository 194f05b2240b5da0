"""Every golden case passes through the real engine; the CLI prints the promised JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from salesledger.ledger.golden import run_case_file

from .conftest import GOLDEN_DIR, golden_files


def test_golden_directory_present() -> None:
    assert len(golden_files()) >= 15


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.stem)
def test_golden_case(path) -> None:
    outcomes = run_case_file(path)
    assert outcomes
    failures = [(o.run, o.diffs) for o in outcomes if o.status != "pass"]
    assert not failures, failures


def test_cli_json_output_and_exit_code(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "salesledger", "golden", "run", str(GOLDEN_DIR), "--format", "json"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["failed"] == 0 and doc["passed"] == len(doc["cases"]) >= 19
    assert set(doc["cases"][0]) >= {"file", "id", "run", "status", "diffs"}
    bad = tmp_path / "bad.yaml"
    bad.write_text((GOLDEN_DIR / "G01-sale-vat-on-top.yaml").read_text().replace('"59.00"', '"59.01"'))
    proc = subprocess.run(
        [sys.executable, "-m", "salesledger", "golden", "run", str(bad), "--format", "json"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["failed"] == 1 and doc["cases"][0]["status"] == "fail" and doc["cases"][0]["diffs"]


CASES_DIR = __import__("pathlib").Path(__file__).resolve().parent / "cases"


@pytest.mark.parametrize("path", sorted(CASES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_own_cases_in_the_golden_format(path) -> None:
    """Cases of this repository (lock steps, release steps, foreign currency, late edits):
    the runner takes any directory in the golden format."""
    outcomes = run_case_file(path)
    assert outcomes and all(o.status == "pass" for o in outcomes), [(o.run, o.diffs) for o in outcomes]


def test_own_cases_directory_is_not_empty() -> None:
    assert len(list(CASES_DIR.glob("*.yaml"))) >= 3
