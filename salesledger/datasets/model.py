"""The seeded generative model: what Online Retail lacks (costs, stock, receipts, payments).

Every draw comes from :func:`rng_for`, a ``random.Random`` seeded with SHA-256 of the seed and
the draw's purpose and key (``("margin", sku)``), so a value depends only on (seed, purpose, key),
never on iteration order: same seed, same data. Probabilities are floats; **amounts never are**
(drawn as integers and turned into ``Decimal``). Currency GBP; money rounded to 0.01 with
ROUND_HALF_UP, unit costs to 0.0001 rounded down (so a cost never exceeds its bound).

The model (stated defaults, :class:`ModelParameters`):

- **Unit cost** (net of VAT) of a goods SKU = its lowest positive net selling price in the whole
  file × (1 − margin), margin uniform in [25%, 60%] in whole basis points, per SKU. The lowest
  net price is the lowest gross price / 1.20. So every cost is below every price the SKU is sold
  at. A SKU never sold at a price costs :attr:`ModelParameters.fallback_unit_cost` (0.50).
- **Opening stock** of a goods SKU = ceil(f × the quantity the slice issues), f uniform in
  [0.30, 0.70] in whole percent; quantity at least 1 when the slice issues any.
- **Goods receipts**: each morning at 06:00, for every goods SKU whose stock would go negative
  during the day (sales, duplicate entries and write-offs issue; returns come back), a receipt
  of the shortfall rounded up to the SKU's pack size (6, 12, 24 or 48, uniform), one receipt per
  supplier per day, at the SKU's unit cost, VAT 20%. Each SKU has one supplier of
  :attr:`ModelParameters.suppliers` (uniform). So stock never goes negative.
- **Payers**: each registered customer is ``on_time`` 60%, ``late`` 25%, ``partial`` 10%,
  ``never`` 5%; payment terms 0 / 7 / 14 / 30 days with shares 20 / 30 / 30 / 20%. Per invoice:
  on_time pays the gross in full on a day uniform in [0, terms] after the invoice date; late pays
  in full 1-45 days after the due date; partial pays 30-80% (whole percent) of the gross 0-20
  days after the due date and never the rest; never pays nothing. Payment time of day uniform
  09:00-17:59, at least 30 minutes after the invoice is posted. One bank payment per invoice
  with one explicit allocation to it. The walk-in customer pays every sale in cash, in full,
  one minute after it is posted. Payments dated after the slice's last day are not emitted.
- **Corrections** (registered customers only, invoices that no return refers to): 3% of invoices
  with two or more lines are first posted without their last line and edited 5-25 minutes later
  to add it (``missing_line``); 1% of invoices are entered twice by mistake: the duplicate
  ``<number>-DUP`` is posted 1-10 minutes after the original and cancelled 10-120 minutes later.
- **Draft time**: a document is inserted as a draft 1-4 minutes before it is posted; the
  dataset's timestamp is the posting time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
COST_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class ModelParameters:
    """The model's stated parameters (see the module docstring); shares sum to 1."""

    margin_bp_min: int = 2500
    margin_bp_max: int = 6000
    fallback_unit_cost: Decimal = Decimal("0.50")
    opening_pct_min: int = 30
    opening_pct_max: int = 70
    pack_sizes: tuple[int, ...] = (6, 12, 24, 48)
    suppliers: int = 8
    payer_shares: tuple[tuple[str, float], ...] = (("on_time", 0.60), ("late", 0.25),
                                                   ("partial", 0.10), ("never", 0.05))
    terms_shares: tuple[tuple[int, float], ...] = ((0, 0.20), (7, 0.30), (14, 0.30), (30, 0.20))
    late_days_max: int = 45
    partial_pct_min: int = 30
    partial_pct_max: int = 80
    partial_days_max: int = 20
    missing_line_share: float = 0.03
    duplicate_share: float = 0.01
    receipt_time: dt.time = dt.time(6, 0)


DEFAULT_PARAMETERS = ModelParameters()


def rng_for(seed: int, *key: object) -> random.Random:
    """A ``random.Random`` determined by ``seed`` and ``key`` alone (SHA-256 of their text)."""
    text = "\x1f".join([str(seed), *map(str, key)]).encode("utf-8")
    return random.Random(int.from_bytes(hashlib.sha256(text).digest()[:16], "big"))


def _pick(rng: random.Random, shares: tuple[tuple[object, float], ...]):
    draw, total = rng.random(), 0.0
    for value, share in shares:
        total += share
        if draw < total:
            return value
    return shares[-1][0]


def unit_cost(seed: int, sku: str, min_price_gross: Decimal | None,
              params: ModelParameters = DEFAULT_PARAMETERS,
              vat_rate_percent: Decimal = Decimal(20)) -> Decimal:
    """Net unit cost (document currency, 4 decimals, rounded down) of a goods SKU, strictly below
    its lowest net selling price ``min_price_gross / (1 + vat_rate_percent/100)`` (a net price
    when the rate is 0); never zero."""
    if min_price_gross is None or min_price_gross <= 0:
        return params.fallback_unit_cost
    margin_bp = rng_for(seed, "margin", sku).randint(params.margin_bp_min, params.margin_bp_max)
    net = min_price_gross / (1 + vat_rate_percent / 100)
    cost = (net * (10000 - margin_bp) / 10000).quantize(COST_QUANTUM, rounding=ROUND_DOWN)
    return max(cost, COST_QUANTUM)


def opening_quantity(seed: int, sku: str, issued_in_slice: Decimal,
                     params: ModelParameters = DEFAULT_PARAMETERS) -> Decimal:
    """Opening stock of ``sku``: ceil(f × ``issued_in_slice``), f in [30%, 70%]; ≥ 1 if any."""
    if issued_in_slice <= 0:
        return Decimal(0)
    pct = rng_for(seed, "opening", sku).randint(params.opening_pct_min, params.opening_pct_max)
    qty = (issued_in_slice * pct / 100).to_integral_value(rounding=ROUND_CEILING)
    return max(qty, Decimal(1))


def pack_size(seed: int, sku: str, params: ModelParameters = DEFAULT_PARAMETERS) -> int:
    """Receipts of ``sku`` come in multiples of this pack size."""
    return rng_for(seed, "pack", sku).choice(params.pack_sizes)


def supplier_of(seed: int, sku: str, params: ModelParameters = DEFAULT_PARAMETERS) -> str:
    """Supplier code (``SUP-01``…) of ``sku``."""
    return supplier_code(rng_for(seed, "supplier", sku).randint(1, params.suppliers))


def supplier_code(index: int) -> str:
    """``SUP-01`` for index 1."""
    return f"SUP-{index:02d}"


def receipt_quantity(shortfall: Decimal, pack: int) -> Decimal:
    """The shortfall (> 0) rounded up to a multiple of ``pack``."""
    assert shortfall > 0 and pack > 0
    packs = (shortfall / pack).to_integral_value(rounding=ROUND_CEILING)
    return packs * pack


@dataclass(frozen=True)
class Payer:
    """A customer's payment behaviour: ``kind`` on_time | late | partial | never | cash, and the
    payment terms in days."""

    kind: str
    terms_days: int


def payer_of(seed: int, customer: str, walk_in: bool,
             params: ModelParameters = DEFAULT_PARAMETERS) -> Payer:
    """The payer class and terms of ``customer`` (walk-in: ``cash``, 0 days)."""
    if walk_in:
        return Payer("cash", 0)
    rng = rng_for(seed, "payer", customer)
    return Payer(_pick(rng, params.payer_shares), _pick(rng, params.terms_shares))


@dataclass(frozen=True)
class PaymentPlan:
    """When and how much a customer pays for one invoice (GBP, 2 decimals)."""

    at: dt.datetime
    amount: Decimal
    method: str


def payment_for(seed: int, invoice: str, payer: Payer, posted_at: dt.datetime, gross: Decimal,
                params: ModelParameters = DEFAULT_PARAMETERS) -> PaymentPlan | None:
    """The payment of one invoice of ``gross`` GBP under ``payer`` (None: never paid / nothing
    to pay)."""
    if gross <= 0 or payer.kind == "never":
        return None
    if payer.kind == "cash":
        return PaymentPlan(posted_at + dt.timedelta(minutes=1), gross, "cash")
    rng = rng_for(seed, "payment", invoice)
    amount = gross
    if payer.kind == "on_time":
        days = rng.randint(0, payer.terms_days)
    elif payer.kind == "late":
        days = payer.terms_days + rng.randint(1, params.late_days_max)
    else:  # partial
        days = payer.terms_days + rng.randint(0, params.partial_days_max)
        pct = rng.randint(params.partial_pct_min, params.partial_pct_max)
        amount = (gross * pct / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    minute = rng.randint(9 * 60, 18 * 60 - 1)
    day = posted_at.date() + dt.timedelta(days=days)
    at = dt.datetime.combine(day, dt.time(minute // 60, minute % 60))
    at = max(at, posted_at + dt.timedelta(minutes=30))
    return PaymentPlan(at, amount, "bank") if amount > 0 else None


def correction_of(seed: int, invoice: str, lines: int,
                  params: ModelParameters = DEFAULT_PARAMETERS) -> tuple[str, int, int] | None:
    """A clerk's mistake on a registered customer's invoice: (``missing_line``, minutes to the
    edit, 0) or (``duplicate``, minutes to the duplicate's posting, minutes more to its
    cancellation), or None."""
    rng = rng_for(seed, "correction", invoice)
    draw = rng.random()
    if lines >= 2 and draw < params.missing_line_share:
        return ("missing_line", rng.randint(5, 25), 0)
    if params.missing_line_share <= draw < params.missing_line_share + params.duplicate_share:
        return ("duplicate", rng.randint(1, 10), rng.randint(10, 120))
    return None


def draft_lead_minutes(seed: int, kind: str, number: str) -> int:
    """Minutes (1-4) between a document's draft insert and its posting."""
    return rng_for(seed, "draft", kind, number).randint(1, 4)


def line_gross(qty: Decimal, unit_price: Decimal) -> Decimal:
    """A line's gross (GBP incl. VAT): round(qty × unit_price, 0.01) ROUND_HALF_UP, as the
    posting engine computes it (golden conventions: gross-before-discount, no discount here)."""
    return (qty * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


def line_total(qty: Decimal, unit_price: Decimal, discount_percent: Decimal, vat_rate: Decimal,
               prices_include_vat: bool) -> Decimal:
    """What the customer owes for one line (document currency, 0.01 ROUND_HALF_UP), by the golden
    conventions: gross-before-discount ``round(qty × price)``, the discount rounded per line;
    with exclusive prices the line's VAT ``round(net × rate / 100)`` is added."""
    before = line_gross(qty, unit_price)
    net = before - (before * discount_percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    if prices_include_vat:
        return net
    return net + (net * vat_rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
