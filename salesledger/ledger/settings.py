"""Ledger settings: the accounting options of one ledger, validated once at start-up.

Defaults are the conventions of the golden cases (``../shared/golden/README.md``): AZN, amounts
rounded to 0.01 ROUND_HALF_UP, FIFO, discounts netted into revenue, documents dated in a locked
period held, late corrections posted as adjustments.
"""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ALL_DOCUMENT_KINDS = ("invoice", "payment", "return", "goods_receipt", "write_off", "opening_balance")

ROUNDING_MODES = (
    "ROUND_HALF_UP",
    "ROUND_HALF_EVEN",
    "ROUND_HALF_DOWN",
    "ROUND_UP",
    "ROUND_DOWN",
    "ROUND_CEILING",
    "ROUND_FLOOR",
)


class LedgerSettings(BaseModel):
    """The options of the posting engine (frozen; unknown keys refused).

    - ``functional_currency`` (alias ``currency``): ISO 4217 code of the ledger's currency.
    - ``valuation``: ``fifo`` | ``moving_average`` (cost of issues).
    - ``discounts``: ``net`` (revenue credited with the discounted net) | ``separate_account``
      (revenue gross of discount, the discount debited to ``discounts_granted``).
    - ``rounding_quantum`` / ``rounding_mode``: every computed amount is quantised to this
      (0.01, ROUND_HALF_UP).
    - ``business_time_zone``: zone of business dates (Asia/Baku).
    - ``locked_period_policy``: ``hold`` (held queue until released) | ``shift`` (post on the
      first open day).
    - ``late_corrections``: ``adjustment`` (post the difference) | ``reverse_and_replace``, for
      changes of documents whose period is locked.
    - ``negative_stock``: ``hold`` (an issue beyond stock waits) | ``allow`` (cost at the last
      known unit cost; the next receipt posts the difference as ``cost_adjustment``).
    - ``document_kinds``: document types the engine posts (switch kinds on one by one when rolling
      out); a document of another kind is refused with reason ``kind_disabled`` (a dead letter
      in the pipeline, never dropped silently).
    - ``golive_date``: go-live cut-off (None: none). A document dated on or before it is refused
      with reason ``before_golive`` (a dead letter: counted, never posted); its balances come in
      the ``opening_balance`` document that ``salesledger golive`` posts, which is exempt.
    - ``rate_max_age_days``: how old the latest exchange rate may be (days) for a document date.
    - ``card_role``: the account role a ``card`` payment debits: ``bank`` (default: card acquiring
      settles to the bank account, net of fees booked by the bank statement) | ``cash`` |
      ``vat_deposit``; a chart may name any of its roles (e.g. a card-settlements account).

    Raises ``pydantic.ValidationError`` on a bad or contradictory option.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    functional_currency: str = Field(default="AZN", alias="currency")
    valuation: Literal["fifo", "moving_average"] = "fifo"
    discounts: Literal["net", "separate_account"] = "net"
    rounding_quantum: Decimal = Decimal("0.01")
    rounding_mode: Literal[ROUNDING_MODES] = "ROUND_HALF_UP"  # type: ignore[valid-type]
    business_time_zone: str = "Asia/Baku"
    locked_period_policy: Literal["hold", "shift"] = "hold"
    late_corrections: Literal["adjustment", "reverse_and_replace"] = "adjustment"
    negative_stock: Literal["allow", "hold"] = "hold"
    document_kinds: frozenset[str] = frozenset(ALL_DOCUMENT_KINDS)
    rate_max_age_days: int = Field(default=7, ge=0, le=366)
    card_role: str = Field(default="bank", pattern=r"^[a-z][a-z0-9_]*$")
    golive_date: dt.date | None = None

    @field_validator("functional_currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha() or not value.isupper():
            raise ValueError(f"functional currency must be an ISO 4217 code, got {value!r}")
        return value

    @field_validator("rounding_quantum", mode="before")
    @classmethod
    def _no_float_quantum(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError("rounding_quantum must be a decimal string, not a float")
        return value

    @field_validator("rounding_quantum")
    @classmethod
    def _power_of_ten(cls, value: Decimal) -> Decimal:
        if value <= 0 or value.normalize().as_tuple().digits != (1,):
            raise ValueError(f"rounding_quantum must be a positive power of ten, got {value}")
        return value

    @field_validator("business_time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "LedgerSettings":
        unknown = set(self.document_kinds) - set(ALL_DOCUMENT_KINDS)
        if unknown:
            raise ValueError(f"unknown document kinds {sorted(unknown)}")
        if "return" in self.document_kinds and "invoice" not in self.document_kinds:
            raise ValueError("returns are switched on but invoices are not: a return needs its invoice")
        return self

    def round(self, amount: Decimal) -> Decimal:
        """``amount`` quantised to ``rounding_quantum`` with ``rounding_mode``."""
        return amount.quantize(self.rounding_quantum, rounding=_MODES[self.rounding_mode])

    def business_date(self, moment: dt.datetime) -> dt.date:
        """The business date of a timezone-aware instant (commit time, ``entered_at``) in
        ``business_time_zone``; a naive datetime is refused (ValueError)."""
        if moment.tzinfo is None:
            raise ValueError(f"naive datetime {moment!r}: a time zone is required")
        return moment.astimezone(ZoneInfo(self.business_time_zone)).date()


_MODES = {mode: getattr(decimal, mode) for mode in ROUNDING_MODES}
