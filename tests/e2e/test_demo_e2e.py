"""End to end: ``salesledger demo`` on one day of Online Retail, then the audit replays.

The demo runs as a user would run it (the CLI, as a subprocess) in the TEST profile with its
own databases (``sales_e2e`` / ``accounting_e2e``, created by the stack's converge) and its own
topic prefix (``sle2e``), so neither the demo's data (profile run) nor other tests' data in
``sales_test`` is touched, and nothing another test writes reaches this pipeline. ``--fresh``
wipes that namespace first (databases, topics, groups, connector and slot). The working
directory is a temporary one beside which no ``shared`` folder exists: the product reads only
the dataset copy shipped in the package.

Checked afterwards (deadlines are generous; nothing is timed):

- ``ledger check``: balanced, no duplicates;
- ``ledger-hash`` of the live store = ``replay --from-beginning`` = ``replay --from-documents``,
  and a second replay into the same schema keeps the hash;
- documents counted from the CSV by this test: posted documents = the slice's documents −
  those whose lines all are dead letters, nothing held; every cancellation line is on a
  posted return or is a dead letter; every dead letter has a reason;
- ``reconcile``: no difference.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.stack

PREFIX = "sle2e"
DATABASES = {"sales": "sales_e2e", "accounting": "accounting_e2e"}
DEMO_TIMEOUT_S = 1800
COMMAND_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def e2e_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLEDGER_PIPELINE_")}
    env.update({"SALESLEDGER_PROFILE": "test", "SALESLEDGER_TEST_TOPIC_PREFIX": PREFIX,
                "SALESLEDGER_TEST_DATABASES": json.dumps(DATABASES),
                "SALESLEDGER_WORKER_METRICS_PORTS": "[19620, 19626]"})
    return env


@pytest.fixture(scope="module")
def e2e_settings(e2e_env):
    """The namespace's settings; afterwards its connector and replication slot are removed
    (a slot nobody reads retains WAL); its databases and topics stay for inspection until the
    next ``--fresh``."""
    from salesledger import connect
    from salesledger.config import Settings
    from salesledger.salesdb.capture import drop_slot

    settings = Settings(profile="test", test_topic_prefix=PREFIX, test_databases=DATABASES)
    yield settings
    connect.ConnectClient(settings.connect_url).delete(connect.connector_name(PREFIX),
                                                       reset_offsets=True)
    drop_slot(settings.dsn("sales", "cdc"), connect.slot_name(PREFIX), timeout_s=120)


def cli(env: dict[str, str], cwd: Path, *args: str, timeout_s: float = COMMAND_TIMEOUT_S
        ) -> subprocess.CompletedProcess:
    """``salesledger ARGS`` as a user runs it (stdout and stderr captured as text)."""
    return subprocess.run([sys.executable, "-m", "salesledger", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def last_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout.strip().splitlines()[-1]


def slice_from_csv(days: int = 1) -> tuple[dict[str, list[dict]], str]:
    """The last ``days`` trading days of the shipped CSV, read here independently of the
    loader: InvoiceNo -> its rows; and the first day of the slice."""
    from salesledger.datasets import bundled_path

    with gzip.open(bundled_path("online-retail"), "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    trading_days = sorted({r["InvoiceDate"][:10] for r in rows})
    chosen = set(trading_days[-days:])
    documents: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["InvoiceDate"][:10] in chosen:
            documents[row["InvoiceNo"]].append(row)
    return documents, min(chosen)


def test_demo_e2e(e2e_env, e2e_settings, tmp_path) -> None:
    cwd = tmp_path / "user"
    cwd.mkdir()
    assert not (cwd.parent / "shared").exists() and not (cwd / ".." / ".." / "shared").exists()

    demo = cli(e2e_env, cwd, "demo", "--fresh", "--days", "1", "--within", "30",
               timeout_s=DEMO_TIMEOUT_S)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output[-8000:]
    assert "drained" in output and "/shared/" not in output

    # ---- the books balance
    check = cli(e2e_env, cwd, "ledger", "check", "--format", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    figures = json.loads(check.stdout)
    assert figures["unbalanced"] == 0 and figures["duplicates"] == 0 and figures["entries"] > 0
    assert figures["total_debit"] == figures["total_credit"]

    # ---- live hash = replay from the ledger topics = replay from the documents topic
    live = last_line(cli(e2e_env, cwd, "ledger-hash"))
    for schema in ("e2e_from_ledger", "e2e_from_documents"):
        with psycopg.connect(**e2e_settings.conninfo("accounting", "owner"),
                             autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    from_ledger = last_line(cli(e2e_env, cwd, "replay", "--into", "e2e_from_ledger",
                                "--from-beginning"))
    from_documents = last_line(cli(e2e_env, cwd, "replay", "--into", "e2e_from_documents",
                                   "--from-documents"))
    again = last_line(cli(e2e_env, cwd, "replay", "--into", "e2e_from_documents",
                          "--from-documents"))
    assert live == from_ledger == from_documents == again
    assert last_line(cli(e2e_env, cwd, "ledger-hash", "--schema", "e2e_from_ledger")) == live

    # ---- every document of the slice is accounted for
    source, _ = slice_from_csv(days=1)
    with psycopg.connect(**e2e_settings.conninfo("accounting", "owner")) as conn:
        posted = {(t, n) for t, n in conn.execute(
            "SELECT DISTINCT document_type, document_number FROM ledger.journal_entries")}
        held = dict(conn.execute("SELECT document_key, reason FROM ledger.held_queue"))
        pipeline_dead = conn.execute(
            "SELECT reason, message FROM ledger.dead_letters").fetchall()
    with psycopg.connect(**e2e_settings.conninfo("sales", "owner")) as conn:
        dead_rows = conn.execute(
            "SELECT source_document, reason FROM salesledger_data.dead_letters "
            "WHERE dataset = 'online-retail'").fetchall()
        return_lines = conn.execute(
            "SELECT r.number, count(*) FROM sales.returns r JOIN sales.return_lines l "
            "USING (return_id) WHERE r.status = 'posted' GROUP BY r.number").fetchall()
    assert all(reason for _, reason in dead_rows), "a dead letter without a reason"
    assert all(reason and message for reason, message in pipeline_dead)
    assert all(reason for reason in held.values()), "a held document without a reason"
    dead_lines = defaultdict(int)
    for document, _ in dead_rows:
        dead_lines[document] += 1

    sales = {n: rows for n, rows in source.items() if not n.startswith("C")}
    cancellations = {n: rows for n, rows in source.items() if n.startswith("C")}
    in_books = {n for t, n in posted if t in ("invoice", "write_off")}
    all_dead = {n for n, rows in sales.items() if dead_lines.get(n, 0) == len(rows)}
    # posted documents = the slice's documents − those whose lines all are dead letters;
    # nothing waits in the held queue
    assert held == {}, held
    assert all_dead.isdisjoint(in_books)
    assert in_books & set(sales) == set(sales) - all_dead

    returned_lines = sum(n for number, n in return_lines if number.split("-")[0] in cancellations)
    cancel_dead = sum(dead_lines.get(n, 0) for n in cancellations)
    assert returned_lines + cancel_dead == sum(len(rows) for rows in cancellations.values())
    posted_returns = {n for t, n in posted if t == "return"}
    assert {n for n, _ in return_lines} == posted_returns

    # ---- reconcile: the ledger matches the sales database document by document
    reconcile = cli(e2e_env, cwd, "reconcile", "--currency", "GBP", "--format", "json")
    report = json.loads(reconcile.stdout)
    assert report["differences"] == [], report["differences"][:10]
    assert reconcile.returncode == 0
    invoices = {n for t, n in posted if t == "invoice"} & set(sales)
    assert report["checked"]["invoices"] >= len(invoices) > 0
