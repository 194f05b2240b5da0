"""The golden runner is not a rubber stamp: every golden file, mutated (an amount, an account,
a date, a missing entry, an open amount, a stock value), must fail."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal

import pytest
import yaml

from salesledger.ledger.golden import run_case_file

from .conftest import golden_files


def _journals(case: dict) -> list[list]:
    lists = [(case.get("then") or {}).get("journal")]
    lists += [(c.get("expect") or {}).get("journal") for c in case.get("cases") or []]
    return [j for j in lists if j]


def _first_entry_with_lines(case: dict) -> dict:
    for journal in _journals(case):
        for entry in journal:
            if entry.get("lines"):
                return entry
    raise AssertionError("case has no entry with lines")


def _bump(value: str) -> str:
    return str(Decimal(str(value)) + Decimal("0.01"))


def mutate_amount(case: dict) -> None:
    line = _first_entry_with_lines(case)["lines"][0]
    side = "debit" if "debit" in line else "credit"
    line[side] = _bump(line[side])


def mutate_account(case: dict) -> None:
    _first_entry_with_lines(case)["lines"][0]["account"] = "999.99"


def mutate_date(case: dict) -> None:
    for journal in _journals(case):
        for entry in journal:
            if entry.get("date") is not None:
                entry["date"] = entry["date"] + dt.timedelta(days=1)
                return
    _first_entry_with_lines(case)["date"] = dt.date(1999, 12, 31)


def mutate_missing_entry(case: dict) -> None:
    """The engine misses an entry the case expects: one expected entry listed twice."""
    journal = _journals(case)[0]
    journal.append(copy.deepcopy(journal[0]))


MUTATIONS = {
    "amount": mutate_amount,
    "account": mutate_account,
    "date": mutate_date,
    "missing_entry": mutate_missing_entry,
}


def _write(tmp_path, name: str, case: dict):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(case, allow_unicode=True, sort_keys=False))
    return path


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.stem)
def test_mutated_golden_file_fails(path, mutation, tmp_path) -> None:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert all(o.status == "pass" for o in run_case_file(path)), "the unmutated case must pass first"
    MUTATIONS[mutation](case)
    outcomes = run_case_file(_write(tmp_path, path.name, case))
    assert any(o.status == "fail" and o.diffs for o in outcomes), f"{mutation} mutation of {path.name} passed"


def _with_receivables(case: dict) -> list:
    lists = [(case.get("then") or {}).get("receivables")]
    lists += [(c.get("expect") or {}).get("receivables") for c in case.get("cases") or []]
    return [r for l in lists if l for r in l]


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.stem)
def test_mutated_open_amount_and_stock_fail(path, tmp_path) -> None:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    receivables = _with_receivables(case)
    stock = (case.get("then") or {}).get("stock") or [s for c in case.get("cases") or [] for s in (c.get("expect") or {}).get("stock") or []]
    if not receivables and not stock:
        # Nothing of the kind to mutate in this case: the check is that such files exist.
        assert path.stem.startswith(("G07", "G10")), f"{path.name} lists neither receivables nor stock"
        return
    if receivables:
        mutated = copy.deepcopy(case)
        _with_receivables(mutated)[0]["open"] = _bump(receivables[0]["open"])
        assert any(o.status == "fail" for o in run_case_file(_write(tmp_path, "r-" + path.name, mutated)))
    if stock:
        mutated = copy.deepcopy(case)
        target = (mutated.get("then") or {}).get("stock") or [s for c in mutated["cases"] for s in (c.get("expect") or {}).get("stock") or []]
        target[0]["value"] = _bump(target[0]["value"])
        assert any(o.status == "fail" for o in run_case_file(_write(tmp_path, "s-" + path.name, mutated)))


def test_extra_unexpected_entry_under_empty_journal_fails(tmp_path) -> None:
    """``journal: []`` means no entry at all: a case expecting nothing from a posted sale fails."""
    case = yaml.safe_load((golden_files()[0]).read_text(encoding="utf-8"))
    case["then"] = {"journal": []}
    assert run_case_file(_write(tmp_path, "empty.yaml", case))[0].status == "fail"
