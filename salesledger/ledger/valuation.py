"""Inventory valuation: FIFO cost layers and moving average, as pure functions over a
:class:`~salesledger.ledger.state.StockPosition`.

Rules (golden README, "Conventions"): FIFO consumes layers oldest first; taking part of a layer
costs ``round(qty × layer_value / layer_qty)`` and the layer keeps the exact remainder. Moving
average keeps one merged layer; an issue costs ``round(qty × on_hand_value / on_hand_qty)``.
A reversal of an issue puts the pieces back **at the front** (FIFO) in their original order;
a return comes back as a new layer **at the end**. Stock issued beyond what is on hand (only
with ``negative_stock: allow``) is costed at the last known unit cost as a negative layer; the
next receipt covers it and reports the difference (actual − provisional cost) for a
``cost_adjustment`` entry. All values in the functional currency, rounded by ``settings.round``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal

from salesledger.ledger.model import ZERO, CostLayer
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import StockPosition

UNIT_COST_PLACES = Decimal("0.000001")


class InsufficientStock(Exception):
    """An issue needs more than is on hand and negative stock is not allowed (or no cost is
    known for the shortfall). ``short_qty`` units are missing."""

    def __init__(self, sku: str, warehouse: str, short_qty: Decimal, reason: str = ""):
        self.sku, self.warehouse, self.short_qty = sku, warehouse, short_qty
        super().__init__(f"{sku}@{warehouse}: {short_qty} short {reason}".strip())


@dataclass(frozen=True, slots=True)
class CostCorrection:
    """A receipt covered ``qty`` units issued on negative stock: they were costed at
    ``provisional`` and really cost ``actual`` (so COGS rises by ``actual − provisional``)."""

    qty: Decimal
    provisional: Decimal
    actual: Decimal


def _share(qty: Decimal, of_qty: Decimal, of_value: Decimal, settings: LedgerSettings) -> Decimal:
    """``of_value`` for ``qty`` of ``of_qty`` units: exact when all, else rounded pro rata."""
    return of_value if qty == of_qty else settings.round(qty * of_value / of_qty)


def issue(
    pos: StockPosition, qty: Decimal, settings: LedgerSettings
) -> tuple[StockPosition, Decimal, tuple[CostLayer, ...]]:
    """Take ``qty`` (> 0) out of ``pos``: (new position, cost, pieces taken in order).

    Raises :class:`InsufficientStock` when ``qty`` exceeds what is on hand and
    ``negative_stock`` is ``hold`` or no unit cost is known.
    """
    assert qty > 0, qty
    layers = list(pos.layers)
    pieces: list[CostLayer] = []
    remaining = qty
    last_cost = pos.last_unit_cost
    while remaining > 0 and layers and layers[0].qty > 0:
        layer = layers[0]
        take = min(remaining, layer.qty)
        part = _share(take, layer.qty, layer.value, settings)
        pieces.append(CostLayer(qty=take, value=part, origin=layer.origin, received=layer.received))
        last_cost = (layer.value / layer.qty).quantize(UNIT_COST_PLACES)
        if take == layer.qty:
            layers.pop(0)
        else:
            layers[0] = replace(layer, qty=layer.qty - take, value=layer.value - part)
        remaining -= take
    if remaining > 0:
        if settings.negative_stock != "allow" or last_cost is None:
            raise InsufficientStock(pos.sku, pos.warehouse, remaining)
        part = settings.round(remaining * last_cost)
        received = layers[0].received if layers else dt.date.min
        neg = layers[0] if layers else CostLayer(qty=ZERO, value=ZERO, origin="negative", received=received)
        layers = [replace(neg, qty=neg.qty - remaining, value=neg.value - part, origin="negative")]
        pieces.append(CostLayer(qty=remaining, value=part, origin="negative", received=received))
    cost = sum((p.value for p in pieces), ZERO)
    new = replace(pos, layers=tuple(layers), last_unit_cost=last_cost)
    assert new.value == pos.value - cost, "issue must lower the value by exactly its cost"
    return new, cost, tuple(pieces)


def receive(
    pos: StockPosition,
    qty: Decimal,
    value: Decimal,
    origin: str,
    received: dt.date,
    settings: LedgerSettings,
) -> tuple[StockPosition, tuple[CostCorrection, ...]]:
    """Add ``qty`` units worth ``value`` at the end of the queue (moving average: merged in).

    A negative layer is covered first; the corrections returned say what those units really
    cost. The position's value rises by ``value`` − Σ(actual − provisional).
    """
    assert qty > 0 and value >= 0, (qty, value)
    layers = list(pos.layers)
    corrections: list[CostCorrection] = []
    unit = (value / qty).quantize(UNIT_COST_PLACES)
    if layers and layers[0].qty < 0:
        neg = layers[0]
        covered = min(qty, -neg.qty)
        actual = _share(covered, qty, value, settings)
        provisional = _share(covered, -neg.qty, -neg.value, settings)
        corrections.append(CostCorrection(qty=covered, provisional=provisional, actual=actual))
        if covered == -neg.qty:
            layers.pop(0)
        else:
            layers[0] = replace(neg, qty=neg.qty + covered, value=neg.value + provisional)
        qty, value = qty - covered, value - actual
    if qty > 0:
        layer = CostLayer(qty=qty, value=value, origin=origin, received=received)
        if settings.valuation == "moving_average" and layers:
            merged = layers[0]
            layers = [replace(merged, qty=merged.qty + qty, value=merged.value + value)]
        else:
            layers.append(layer)
    return replace(pos, layers=tuple(layers), last_unit_cost=unit), tuple(corrections)


def restore_front(
    pos: StockPosition, pieces: tuple[CostLayer, ...], settings: LedgerSettings
) -> tuple[StockPosition, tuple[CostCorrection, ...]]:
    """Put issued ``pieces`` back (a reversal: the goods never left): each at the front of the
    FIFO queue as its own layer, in original order, with the exact value it left with. Moving
    average merges them in. If the position is negative meanwhile, the pieces first cover it,
    as a receipt would, and the corrections say what those units really cost."""
    layers = list(pos.layers)
    front: list[CostLayer] = []
    corrections: list[CostCorrection] = []
    for piece in pieces:
        if layers and layers[0].qty < 0 and piece.qty > 0:
            neg = layers[0]
            covered = min(piece.qty, -neg.qty)
            actual = _share(covered, piece.qty, piece.value, settings)
            provisional = _share(covered, -neg.qty, -neg.value, settings)
            corrections.append(CostCorrection(qty=covered, provisional=provisional, actual=actual))
            if covered == -neg.qty:
                layers.pop(0)
            else:
                layers[0] = replace(neg, qty=neg.qty + covered, value=neg.value + provisional)
            piece = replace(piece, qty=piece.qty - covered, value=piece.value - actual)
        if piece.qty > 0:
            front.append(replace(piece, origin=f"restored:{piece.origin}"))
    if settings.valuation == "moving_average" and (front or layers):
        merged = front + layers
        layers = [replace(merged[-1], qty=sum((l.qty for l in merged), ZERO), value=sum((l.value for l in merged), ZERO))]
        layers = [l for l in layers if l.qty != 0 or l.value != 0]
        return replace(pos, layers=tuple(layers)), tuple(corrections)
    return replace(pos, layers=tuple(front + layers)), tuple(corrections)


def remove_exact(
    pos: StockPosition, qty: Decimal, value: Decimal, origin: str, settings: LedgerSettings
) -> tuple[StockPosition, Decimal]:
    """Take back ``qty`` units that came in as ``origin`` with ``value`` (reversal of a receipt
    or return): (new position, value actually removed). From the ``origin`` layer while it holds
    them (exact value), the rest by :func:`issue`; the caller posts any difference to value as a
    ``cost_adjustment``."""
    layers = list(pos.layers)
    for i, layer in enumerate(layers):
        if layer.origin == origin and layer.qty >= qty and settings.valuation == "fifo":
            part = value if layer.qty == qty and layer.value == value else min(value, layer.value)
            if layer.qty == qty:
                layers.pop(i)
            else:
                layers[i] = replace(layer, qty=layer.qty - qty, value=layer.value - part)
            return replace(pos, layers=tuple(layers)), part
    new, cost, _ = issue(pos, qty, settings)
    return new, cost
