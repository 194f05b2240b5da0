"""Shared fixtures of the posting-engine tests: the golden directory beside the repository."""

from __future__ import annotations

from pathlib import Path

GOLDEN_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "golden").resolve()


def golden_files() -> list[Path]:
    """The golden case files; an absent directory is a failure, never a skip."""
    assert GOLDEN_DIR.is_dir(), f"golden cases not found at {GOLDEN_DIR}"
    files = sorted(GOLDEN_DIR.glob("G*.yaml"))
    assert files, f"no G*.yaml in {GOLDEN_DIR}"
    return files
