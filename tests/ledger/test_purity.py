"""The posting engine is pure: importing it loads nothing of Kafka, Faust or psycopg."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("faust", "mode", "aiokafka", "kafka", "confluent_kafka", "psycopg", "psycopg_pool", "fastavro")
LEDGER = Path(__file__).resolve().parents[2] / "salesledger" / "ledger"


def test_ledger_sources_import_no_plumbing() -> None:
    offenders = []
    for path in LEDGER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [(path.name, n) for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_importing_the_engine_loads_no_plumbing_modules() -> None:
    code = (
        "import sys, salesledger.ledger, salesledger.ledger.engine, salesledger.ledger.golden;"
        f"bad=[m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
