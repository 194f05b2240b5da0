"""The seeded generative model and the replay plan: determinism, stated shares, costs below prices,
stock never negative, and the order of a document's steps."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from salesledger.datasets import model
from salesledger.datasets import online_retail as orr
from salesledger.datasets.plan import plan_online_retail

TINY_SLICE = [dt.date(2011, 1, 4), dt.date(2011, 1, 5)]


@pytest.fixture(scope="module")
def shared_days(shared_lines):
    return orr.select_days(orr.trading_days(shared_lines), 3)


@pytest.fixture(scope="module")
def shared_plan(shared_lines, shared_days):
    return plan_online_retail(shared_lines, shared_days, seed=42)


def test_same_seed_same_plan_different_seed_different(shared_lines, shared_days, shared_plan):
    again = plan_online_retail(shared_lines, shared_days, seed=42)
    assert again == shared_plan
    other = plan_online_retail(shared_lines, shared_days, seed=7)
    assert other.steps != shared_plan.steps
    assert {p.sku: p.unit_cost for p in other.products} != {p.sku: p.unit_cost for p in shared_plan.products}
    # the dataset's own documents do not depend on the seed
    assert other.counts["documents_from_dataset"] == shared_plan.counts["documents_from_dataset"]


def test_draws_do_not_depend_on_order():
    a = [model.unit_cost(1, s, Decimal("2.00")) for s in ("A", "B", "C")]
    b = [model.unit_cost(1, s, Decimal("2.00")) for s in ("C", "B", "A")][::-1]
    assert a == b


def test_unit_costs_are_below_every_selling_price(shared_lines, shared_plan):
    lowest: dict[str, Decimal] = {}
    for line in shared_lines:
        if line.unit_price > 0:
            lowest[line.sku] = min(lowest.get(line.sku, line.unit_price), line.unit_price)
    goods = [p for p in shared_plan.products if p.kind == "goods"]
    assert goods
    for product in goods:
        assert type(product.unit_cost) is Decimal and product.unit_cost > 0
        if product.sku in lowest:
            assert product.unit_cost < lowest[product.sku] / Decimal("1.20"), product.sku
    assert all(p.unit_cost is None for p in shared_plan.products if p.kind == "service")


def test_margins_stay_in_the_stated_range():
    price = Decimal("12.00")  # net 10.00
    costs = [model.unit_cost(3, f"SKU{i}", price) for i in range(2000)]
    margins = [1 - c / Decimal("10.00") for c in costs]
    assert min(margins) >= Decimal("0.25") and max(margins) <= Decimal("0.6001")
    assert Decimal("0.40") < sum(margins) / len(margins) < Decimal("0.45")  # uniform mean 0.425


def test_payer_and_terms_shares_within_tolerance():
    n = 6000
    payers = [model.payer_of(11, f"C{i}", False) for i in range(n)]
    kinds = Counter(p.kind for p in payers)
    terms = Counter(p.terms_days for p in payers)
    for kind, share in model.DEFAULT_PARAMETERS.payer_shares:
        assert abs(kinds[kind] / n - share) < 0.03, (kind, kinds[kind] / n)
    for days, share in model.DEFAULT_PARAMETERS.terms_shares:
        assert abs(terms[days] / n - share) < 0.03, (days, terms[days] / n)
    assert model.payer_of(11, orr.WALK_IN, True) == model.Payer("cash", 0)


def test_payment_model_amounts():
    posted = dt.datetime(2011, 1, 4, 10, 0)
    gross = Decimal("123.45")
    cash = model.payment_for(1, "1", model.Payer("cash", 0), posted, gross)
    assert cash.amount == gross and cash.method == "cash" and cash.at == posted + dt.timedelta(minutes=1)
    assert model.payment_for(1, "1", model.Payer("never", 30), posted, gross) is None
    for i in range(200):
        on_time = model.payment_for(1, str(i), model.Payer("on_time", 14), posted, gross)
        assert on_time.amount == gross and on_time.at >= posted + dt.timedelta(minutes=30)
        assert on_time.at.date() <= posted.date() + dt.timedelta(days=14)
        late = model.payment_for(1, str(i), model.Payer("late", 14), posted, gross)
        assert late.at.date() > posted.date() + dt.timedelta(days=14)
        partial = model.payment_for(1, str(i), model.Payer("partial", 7), posted, gross)
        assert Decimal("0.30") * gross - Decimal("0.01") <= partial.amount <= Decimal("0.80") * gross + Decimal("0.01")
        assert partial.amount == partial.amount.quantize(Decimal("0.01"))


def _replay_stock(plan):
    """Apply the plan's steps to a stock book; returns the lowest on-hand seen per goods SKU."""
    goods = {p.sku for p in plan.products if p.kind == "goods"}
    on_hand: dict[str, Decimal] = defaultdict(Decimal)
    for s in plan.opening_stock:
        on_hand[s.sku] += s.qty
    docs, low = {}, {}
    sign = {"invoice": -1, "return": 1, "write_off": -1, "goods_receipt": 1, "payment": 0}

    def move(sku, qty):
        if sku in goods:
            on_hand[sku] += qty
            low[sku] = min(low.get(sku, on_hand[sku]), on_hand[sku])

    for step in plan.steps:
        key = (step.kind, step.number)
        if step.action == "insert":
            docs[key] = list(step.document.lines)
        elif step.action == "post" and step.kind != "payment":
            for line in docs[key]:
                move(line["sku"], sign[step.kind] * line["qty"])
        elif step.action == "edit_add_line":
            docs[key].append(step.line)
            move(step.line["sku"], -step.line["qty"])
        elif step.action == "cancel":
            for line in docs[key]:
                move(line["sku"], line["qty"])
    return low, on_hand


def test_stock_never_goes_negative(shared_plan):
    low, _ = _replay_stock(shared_plan)
    assert low and min(low.values()) >= 0
    assert shared_plan.counts["documents"]["goods_receipt"] > 0
    for step in shared_plan.steps:
        if step.action == "insert" and step.kind == "goods_receipt":
            for line in step.document.lines:
                assert line["qty"] % model.pack_size(42, line["sku"]) == 0
                assert line["unit_cost"] < Decimal("1E6")


def test_steps_come_in_a_valid_order(shared_plan):
    posted_at: dict[tuple[str, str], dt.datetime] = {}
    inserted: set[tuple[str, str]] = set()
    gross: dict[str, Decimal] = {}
    previous = None
    for step in shared_plan.steps:
        assert previous is None or (step.at, step.seq) > (previous.at, previous.seq)
        previous = step
        key = (step.kind, step.number)
        if step.action == "insert":
            assert key not in inserted
            inserted.add(key)
            doc = step.document
            if doc.kind == "invoice":
                gross[doc.number] = sum(model.line_gross(l["qty"], l["unit_price"]) for l in doc.lines)
            if doc.kind == "return":
                assert ("invoice", doc.header["against_invoice_number"]) in posted_at
            if doc.kind == "payment":
                allocation = doc.lines[0]
                assert ("invoice", allocation["invoice_number"]) in posted_at
                assert allocation["amount"] == doc.header["amount"] > 0
        elif step.action == "post":
            assert key in inserted and key not in posted_at
            posted_at[key] = step.at
        elif step.action in ("edit_add_line", "cancel"):
            assert key in posted_at and step.at > posted_at[key]
    assert all(key in posted_at for key in inserted)
    cash = [s.document for s in shared_plan.steps if s.action == "insert" and s.number.startswith("CASH-")]
    assert cash
    for payment in cash:
        invoice = payment.lines[0]["invoice_number"]
        assert payment.header["amount"] == gross[invoice]  # walk-in pays the (final) gross


def test_tiny_plan_counts_and_master_data(tiny_csv):
    plan = plan_online_retail(orr.read_csv(tiny_csv), TINY_SLICE, seed=5)
    assert plan.counts["documents_from_dataset"] == {"invoice": 5, "return": 4, "write_off": 1}
    assert plan.counts["dead_letters"] == {"exceeds_sold_quantity": 1, "invoice_before_slice": 1,
                                           "no_earlier_invoice": 1, "positive_stock_adjustment": 1}
    assert plan.counts["source_lines"] == 18 and plan.counts["source_documents"] == 11
    kinds = {p.sku: p.kind for p in plan.products}
    assert kinds["POST"] == kinds["DOT"] == kinds["BANK CHARGES"] == kinds["gift_0001_20"] == "service"
    assert kinds["71053"] == "goods"
    customers = {c.code: c for c in plan.customers}
    assert set(customers) == {"17850", "13047", orr.WALK_IN}
    assert customers[orr.WALK_IN].payment_terms_days == 0 and customers[orr.WALK_IN].payer == "cash"
    assert customers["13047"].country == "France"
    stock = {s.sku: s for s in plan.opening_stock}
    assert "POST" not in stock and stock["71053"].qty >= 1
    assert plan.opening_as_of == dt.date(2011, 1, 3)
    write_off = next(s.document for s in plan.steps if s.action == "insert" and s.kind == "write_off")
    assert write_off.lines == ({"line_no": 1, "sku": "71053", "qty": Decimal(5)},)


def test_shift_to_today():
    from salesledger.cli.load import shift_to_today

    assert shift_to_today(dt.date(2011, 2, 28), today=dt.date(2011, 3, 2)) == 2


def test_speed_options(shared_plan):
    import math

    from salesledger.cli.simulate import parse_speed, speed_for

    assert parse_speed("max") == math.inf and parse_speed("250") == 250.0
    span_s = (shared_plan.steps[-1].at - shared_plan.steps[0].at).total_seconds()
    assert speed_for(shared_plan, 60) == pytest.approx(span_s / 60)
