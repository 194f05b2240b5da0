"""Posting rules: small pure functions from figures to journal-line "legs", selected by chart.

A *leg* is a role, a normal side (``D``/``C``) and a signed amount. :func:`emit` turns legs into
journal lines for a chart: a negative amount moves to the other side (``swap`` charts, az-nas)
or stays on its side with a negative amount (red storno, ru-1c); advance legs always swap.

Rules (golden README, "Charts of accounts used" and "Conventions"):

- ``sale_net_vat`` (az-nas): Dr receivable gross / Cr revenue net / Cr vat_payable VAT; with
  ``discounts: separate_account`` revenue takes the undiscounted net and discounts_granted is
  debited with the discount. A decrease (return, downward adjustment) debits sales_returns
  (``return_via_sales_returns``).
- ``sale_gross_then_vat`` (ru-1c, 1C:Accounting 3.0): Dr 62.01 / Cr 90.01.1 gross, then
  Dr 90.03 / Cr 68.02 VAT; discounts netted; a decrease is the same legs with negative amounts
  (``return_red_storno``).
- cost of sales: Dr cost_of_sales / Cr inventory; a return or decrease is the same negated.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from salesledger.ledger.charts import Chart
from salesledger.ledger.model import ZERO, InvoiceLine, JournalLine
from salesledger.ledger.settings import LedgerSettings


class Leg(NamedTuple):
    """One line a rule wants: ``amount`` (signed) on ``side`` of the ``role``'s account
    (a named tuple: immutable and cheap, rules build many)."""

    role: str
    side: str  # "D" | "C"
    amount: Decimal
    sku: str | None = None
    open_item: str | None = None
    advance: str | None = None
    natural: bool = False  # True: a negative amount always moves to the other side


@dataclass(frozen=True, slots=True)
class LineFigures:
    """Money of one invoice line (or a signed change of it), functional currency:
    ``net`` (discounted, excl. VAT), ``vat``, ``discount`` (undiscounted net − net)."""

    line_no: int
    sku: str
    qty: Decimal
    net: Decimal
    vat: Decimal
    discount: Decimal

    @property
    def gross(self) -> Decimal:
        """net + vat."""
        return self.net + self.vat


def line_figures(
    line: InvoiceLine, prices_include_vat: bool, settings: LedgerSettings, rate: Decimal | None
) -> LineFigures:
    """Figures of an invoice line (golden README "Conventions" and "Fine points").

    gross-before-discount ``g = round(qty × unit_price)``; discount ``round(g × pct / 100)``;
    VAT on top: ``vat = round(net × rate / 100)``; VAT included: ``vat = round(gross × rate /
    (100 + rate))``, ``net = gross − vat``, the undiscounted net extracted from ``g`` likewise.
    Computed in the document currency, then each figure converted with ``rate`` (rounded).
    """
    r = settings.round
    g = r(line.qty * line.unit_price)
    disc = r(g * line.discount_percent / 100)
    discounted = g - disc
    if prices_include_vat:
        vat = r(discounted * line.vat_rate / (100 + line.vat_rate))
        net = discounted - vat
        undiscounted_net = g - r(g * line.vat_rate / (100 + line.vat_rate))
    else:
        net = discounted
        vat = r(net * line.vat_rate / 100)
        undiscounted_net = g
    discount = undiscounted_net - net
    if rate is not None:
        net, vat, discount = r(net * rate), r(vat * rate), r(discount * rate)
    return LineFigures(line_no=line.line_no, sku=line.sku, qty=line.qty, net=net, vat=vat, discount=discount)


def money_legs(
    figures: list[LineFigures],
    receivable: Decimal,
    advance: Decimal,
    open_item: str,
    chart: Chart,
    settings: LedgerSettings,
    advance_ref: str | None = None,
) -> list[Leg]:
    """Legs of the money side of a sale (positive figures), a return or downward adjustment
    (negative figures), or a mixed adjustment. ``receivable`` (signed) goes to the open item,
    ``advance`` (>= 0, only on decreases beyond the open amount) to customer_advances."""
    legs = [Leg("receivable", "D", receivable, open_item=open_item)]
    gross_shape = chart.rule("sale") == "sale_gross_then_vat"
    storno = chart.rule("return") == "return_red_storno"
    separate = settings.discounts == "separate_account"
    for f in figures:
        if gross_shape:
            legs.append(Leg("revenue", "C", f.gross, sku=f.sku))
            legs.append(Leg("vat_on_sales", "D", f.vat, sku=f.sku))
        else:
            revenue = f.net + f.discount if separate else f.net
            if revenue < 0 and not storno:
                legs.append(Leg("sales_returns", "D", -revenue, sku=f.sku))
            else:
                legs.append(Leg("revenue", "C", revenue, sku=f.sku))
            if separate:
                legs.append(Leg("discounts_granted", "D", f.discount, sku=f.sku))
        legs.append(Leg("vat_payable", "C", f.vat, sku=f.sku))
    if advance:
        legs.append(Leg("customer_advances", "C", advance, advance=advance_ref, natural=True))
    return legs


def cogs_legs(costs: list[tuple[str, Decimal]]) -> list[Leg]:
    """Dr cost_of_sales / Cr inventory per (sku, cost); negative costs (returns, decreases)
    swap sides or go red storno by chart."""
    legs: list[Leg] = []
    for sku, cost in costs:
        legs.append(Leg("cost_of_sales", "D", cost, sku=sku))
        legs.append(Leg("inventory", "C", cost, sku=sku))
    return legs


def emit(
    legs: list[Leg],
    chart: Chart,
    currency: str,
    *,
    storno: bool,
    rule: str,
    document: str,
    dims: dict[str, str | None],
) -> tuple[JournalLine, ...]:
    """Journal lines for ``legs`` in ``chart`` (``storno``: negative amounts stay on their
    side). Zero legs are dropped. Raises ``UnknownRole`` naming ``document`` and ``rule``."""
    out: list[JournalLine] = []
    for leg in legs:
        if leg.amount == 0:
            continue
        side, amount = leg.side, leg.amount
        if amount < 0 and (leg.natural or not storno):
            side, amount = ("C" if side == "D" else "D"), -amount
        account = chart.account(leg.role, rule=rule, document=document)
        out.append(
            JournalLine(
                account=account,
                debit=amount if side == "D" else ZERO,
                credit=amount if side == "C" else ZERO,
                currency=currency,
                sku=leg.sku,
                open_item=leg.open_item,
                advance=leg.advance,
                **dims,
            )
        )
    return tuple(out)


def reversal_lines(lines: tuple[JournalLine, ...], storno: bool) -> tuple[JournalLine, ...]:
    """Lines cancelling ``lines``: debit and credit swapped, or (red storno) the same sides with
    the amounts negated."""
    from dataclasses import replace

    if storno:
        return tuple(replace(l, debit=-l.debit, credit=-l.credit) for l in lines)
    return tuple(replace(l, debit=l.credit, credit=l.debit) for l in lines)
