"""The pure posting engine: document model, charts of accounts, posting rules, valuation,
receivables. Imports nothing of Kafka, Faust or psycopg (``tests/ledger/test_purity.py``).

Layout (data flows top to bottom):

- ``model``       — documents in (Invoice, Payment, SalesReturn, GoodsReceipt, WriteOff,
  OpeningBalance, Deletion, PeriodLock, Release, ExchangeRate) and facts out (JournalEntry,
  JournalLine, StockMovement, ReceivableUpdate, OpenItem, Advance, HeldItem, PostingResult).
- ``settings``    — LedgerSettings (validated at start-up, contradictions refused).
- ``charts``      — charts of accounts as data: presets ``az-nas`` and ``ru-1c``, YAML files,
  overrides; role -> account code.
- ``rules``       — posting rules as small pure functions (sale shapes per chart, cost of sales,
  reversal / red storno).
- ``valuation``   — FIFO cost layers and moving average.
- ``state``       — the engine state as immutable plain data (what the processors keep).
- ``postings``    — how each document type is posted (internal).
- ``engine``      — the API below.
- ``receivables`` — ageing, open-item and advance balances.
- ``golden``      — the golden-case runner (``salesledger golden run``).

API (all pure; ``state`` is never mutated)::

    from salesledger.ledger import LedgerState, LedgerSettings, load_chart, post, apply
    chart = load_chart("az-nas"); settings = LedgerSettings(); check_settings(settings, chart)
    state = LedgerState()
    state, result = post(state, invoice, settings, chart)   # -> (LedgerState, PostingResult)
    result.status            # posted | held | duplicate | ignored  (try_post: also "error")
    result.entries           # tuple[JournalEntry]  (balanced per currency, deterministic ids)
    result.movements         # tuple[StockMovement]
    result.receivable_updates  # tuple[ReceivableUpdate]
    result.held              # tuple[HeldItem]
    result.also              # results of held documents this call let through
    state, result = apply(state, PeriodLock(...) | Release(...) | ExchangeRate(...) | doc, ...)

Errors: ``LedgerError`` subclasses (``InvalidDocument``, ``UnknownRole``, ``ChartError``,
``UnbalancedEntry``, ``SettingsError``) carry ``document`` and ``rule``; the processors turn them
into dead letters.
"""

from salesledger.ledger.charts import Chart, load_chart
from salesledger.ledger.engine import (
    apply,
    check_settings,
    lock_period,
    needed_keys,
    post,
    release,
    retry_held_documents,
    set_rate,
    try_post,
)
from salesledger.ledger.errors import (
    ChartError,
    InvalidDocument,
    InvariantViolation,
    LedgerError,
    SettingsError,
    UnbalancedEntry,
    UnknownRole,
)
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import LedgerState

__all__ = [
    "Chart",
    "ChartError",
    "InvalidDocument",
    "InvariantViolation",
    "LedgerError",
    "LedgerSettings",
    "LedgerState",
    "SettingsError",
    "UnbalancedEntry",
    "UnknownRole",
    "apply",
    "check_settings",
    "load_chart",
    "lock_period",
    "needed_keys",
    "post",
    "release",
    "retry_held_documents",
    "set_rate",
    "try_post",
]
