"""Pagila: COPY blocks read directly, every rental one invoice, every real payment one payment
(or a dead letter for amount 0), amounts exact and summing to the dump's total."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from salesledger.datasets import pagila as pg

PAGILA_SQL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "pagila" / "pagila-data.sql"


@pytest.fixture(scope="module")
def rows():
    assert PAGILA_SQL.is_file(), PAGILA_SQL
    return pg.read_dump(PAGILA_SQL)


def _copy_rows(prefix: str) -> list[list[str]]:
    """Rows of the COPY blocks whose table starts with ``prefix``, split by tab (no parser)."""
    out, inside = [], False
    for line in PAGILA_SQL.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"COPY public.{prefix}"):
            inside = True
        elif line == "\\.":
            inside = False
        elif inside:
            out.append(line.split("\t"))
    return out


def test_dump_counts(rows):
    assert len(rows["payment"]) == len(_copy_rows("payment_p")) == 16_049
    assert len(rows["rental"]) == len(_copy_rows("rental ")) == 16_044
    assert sum(Decimal(p["amount"]) for p in rows["payment"]) == Decimal("67416.51")


def test_whole_history_plan(rows):
    plan = pg.plan_pagila(rows, pg.activity_days(rows), seed=1)
    assert plan == pg.plan_pagila(rows, pg.activity_days(rows), seed=1)
    zero = sum(1 for p in _copy_rows("payment_p") if Decimal(p[4]) == 0)
    assert plan.counts["documents_from_dataset"] == {"invoice": 16_044, "payment": 16_049 - zero}
    assert plan.counts["dead_letters"] == {"zero_amount_payment": zero} and zero == 24
    inserted = [s.document for s in plan.steps if s.action == "insert"]
    payments = [d for d in inserted if d.kind == "payment"]
    assert sum(d.header["amount"] for d in payments) == Decimal("67416.51")
    assert all(sum(a["amount"] for a in d.lines) in (Decimal(0), d.header["amount"]) for d in payments)
    # an invoice asks what was paid for the rental, or the film's rate when less was paid
    film_rate = {f[0]: Decimal(f[7]) for f in _copy_rows("film ")}
    copy_film = {i[0]: i[1] for i in _copy_rows("inventory ")}
    rate = {r[0]: film_rate[copy_film[r[2]]] for r in _copy_rows("rental ")}
    paid: dict[str, Decimal] = {}
    for p in _copy_rows("payment_p"):
        paid[p[3]] = paid.get(p[3], Decimal(0)) + Decimal(p[4])
    expected = sum(max(paid.get(r, Decimal(0)), rate[r]) for r in rate)
    invoiced = sum(l["qty"] * l["unit_price"] for d in inserted if d.kind == "invoice" for l in d.lines)
    assert invoiced == expected
    assert {p.kind for p in plan.products} == {"service"} and not plan.opening_stock
    assert {b for b, _ in plan.extra_branches} == {"PG-S1", "PG-S2"}
