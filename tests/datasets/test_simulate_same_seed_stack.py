"""``simulate`` of two days of Online Retail, twice with the same seed, each run through its own
real capture (Debezium connector + slot, CDC topics -> document assembly): every document is
emitted once per operation, in the order the replay committed it, and the two runs emit
identical documents — same keys, operations, order and content; only what the database assigns
(row ids, entry times) and where the change was read (LSN, transaction, commit time) differ."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from tests.capture.conftest import start_capture, stop_capture

from .test_load_simulate_stack import _clean
from .test_replay_capture_stack import CONSUME_DEADLINE_S, DOCUMENT_TABLES

SINCE = "2011-01-16"  # with the next trading day: invoices, walk-in cash, returns, edits, duplicates
DAYS = 2
SEED = 8  # its model cancels a duplicate and edits invoices in these days
_ASSIGNED = {"id": "", "version": 0, "source": None, "entered_at": None}


def _content(event) -> tuple:
    """The event without what the database or the capture assigns."""
    return event.key, event.operation, dataclasses.replace(event.document, **_ASSIGNED)


def _one_run(settings, dsn, shared_csv, keys: set[str], expected_n: int, label: str):
    from typer.testing import CliRunner

    from salesledger.cli import app
    from salesledger.streams.assembly import DocumentAssembler, DocumentEvent
    from salesledger.streams.cdc import ChangeEvent, ChangeEventDecoder, TransactionEvent

    capture = start_capture(settings, dsn, label)
    reader = capture.reader(*DOCUMENT_TABLES)
    try:
        args = ["--path", str(shared_csv), "--days", str(DAYS), "--since", SINCE, "--profile", "test"]
        runner = CliRunner()
        for command in (["load", "online-retail", *args, "--seed", str(SEED)],
                        ["simulate", "--dataset", "online-retail", *args, "--seed", str(SEED), "--speed", "max"]):
            result = runner.invoke(app, command)
            assert result.exit_code == 0, (result.output, result.exception)
        decoder, assembler = ChangeEventDecoder(), DocumentAssembler(functional_currency="GBP")
        seen: list[DocumentEvent] = []
        fed = [0]

        def done(records) -> bool:
            for record in records[fed[0]:]:
                event = decoder.decode(record.key_bytes, record.value_bytes)
                out = []
                if isinstance(event, TransactionEvent):
                    out = assembler.on_transaction(event)
                elif isinstance(event, ChangeEvent):
                    out = assembler.on_change(event)
                seen.extend(e for e in out if isinstance(e, DocumentEvent) and e.key in keys)
            fed[0] = len(records)
            return len(seen) >= expected_n

        reader.until(done, deadline_s=CONSUME_DEADLINE_S)
    finally:
        reader.close()
        stop_capture(capture, dsn)
    return seen


@pytest.mark.stack
def test_simulate_twice_same_seed_emits_identical_documents(settings, pg_connect, shared_csv):
    from salesledger.cli.load import build_plan
    from salesledger.cli.salesdb import identifiers
    from salesledger.datasets import store
    from salesledger.salesdb.migrations import migrate

    dsn = settings.dsn("sales", "owner")
    migrate(dsn, identifiers(settings))
    plan = build_plan(shared_csv, DAYS, dt.date.fromisoformat(SINCE), SEED)
    assert len(plan.days) == DAYS
    conn = pg_connect("sales", "owner")
    store.ensure_schema(conn, settings.reporting_role)
    expected = [(f"{s.kind}:{s.number}", {"post": "created", "edit_add_line": "changed",
                                          "cancel": "cancelled"}[s.action])
                for s in plan.steps if s.action in ("post", "edit_add_line", "cancel")]
    keys = {k for k, _ in expected}
    assert {op for _, op in expected} == {"created", "changed", "cancelled"} and len(expected) > 100
    other = build_plan(shared_csv, DAYS, dt.date.fromisoformat(SINCE), SEED + 1)
    assert [s.document for s in other.steps if s.action == "insert"] != \
        [s.document for s in plan.steps if s.action == "insert"]  # the seed matters: the check can fail

    runs = []
    for label in ("datasets-seed-a", "datasets-seed-b"):
        _clean(conn, plan)  # the run before left its documents: the replay writes them anew
        runs.append(_one_run(settings, dsn, shared_csv, keys, len(expected), label))
    _clean(conn, plan)

    for seen in runs:  # each run: every document once per operation, in commit order
        assert [(e.key, e.operation) for e in seen] == expected
        versions = [e.version for e in seen]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
    first, second = ([_content(e) for e in seen] for seen in runs)
    assert first == second
    # what differs is only what the database and the capture assign
    assert [e.version for e in runs[0]] != [e.version for e in runs[1]]
