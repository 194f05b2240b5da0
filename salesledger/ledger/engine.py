"""The posting engine's API: pure functions from (state, input) to (new state, result).

::

    state = LedgerState()
    state, result = post(state, document, settings, chart)      # a document version
    state, result = lock_period(state, PeriodLock(through=...))
    state, result = release(state, Release(document_key="invoice:INV-10"), settings, chart)
    state, result = set_rate(state, ExchangeRate(...), settings, chart)
    state, result = apply(state, anything_above, settings, chart)  # dispatch on the type

``post`` raises a :class:`~salesledger.ledger.errors.LedgerError` (naming the document and the
rule) on bad input; :func:`try_post` returns it as ``result.errors`` with the state unchanged.
One refusal comes with a new state: a version dated on or before ``golive_date`` of a document
posted after go-live reverses that posting (status ``withdrawn``, the ``before_golive`` error in
``result.errors``; :func:`_before_golive`).
Posting the same document version again changes nothing and returns the same entries
(``status="duplicate"``); an older version is ignored (``status="ignored"``). Every entry is
checked to balance per currency before the new state is returned.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

from salesledger.ledger import postings
from salesledger.ledger.charts import Chart
from salesledger.ledger.errors import BeforeGolive, InvalidDocument, KindDisabled, LedgerError, SettingsError
from salesledger.ledger.model import (
    Deletion,
    DocumentRef,
    ExchangeRate,
    HeldItem,
    OpeningInvoice,
    PeriodLock,
    PostingResult,
    Release,
)
from salesledger.ledger.postings import Hold, Tx
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import DocumentRecord, LedgerState

HELD_RETRY_MAX = 1000  # held items retried after one posting, at most


def check_settings(settings: LedgerSettings, chart: Chart) -> None:
    """Refuse settings that contradict the chart (call once at start-up).

    Raises :class:`SettingsError`: ``discounts: separate_account`` needs a ``discounts_granted``
    account (ru-1c nets discounts into revenue); a chart must have the roles every sale needs.
    """
    if settings.discounts == "separate_account" and not chart.has("discounts_granted"):
        raise SettingsError(
            f"discounts: separate_account needs a discounts_granted account; chart {chart.name!r} nets discounts",
            rule="settings",
        )
    for role in ("inventory", "receivable", "revenue", "vat_payable", "cost_of_sales", "customer_advances"):
        if not chart.has(role):
            raise SettingsError(f"chart {chart.name!r} lacks the {role!r} account", rule="settings")
    if not chart.has(settings.card_role):
        raise SettingsError(f"card_role {settings.card_role!r} is not a role of chart {chart.name!r}", rule="settings")


def post(
    state: LedgerState, document: Any, settings: LedgerSettings, chart: Chart, *, retry_held: bool = True
) -> tuple[LedgerState, PostingResult]:
    """Post one document version (or a :class:`Deletion`).

    Returns the new state and a :class:`PostingResult` with status ``posted`` | ``held`` |
    ``duplicate`` | ``ignored``. Raises :class:`LedgerError` subclasses on bad input.
    With ``retry_held`` (default) documents held for a reason this one may clear (a receipt
    for ``insufficient_stock``, an invoice for ``awaiting_original``) are tried again and their
    results put in ``result.also``; a caller passing a partial state (:func:`needed_keys`)
    sets it to False and retries with :func:`retry_held_documents` on a state that holds them.
    """
    if isinstance(document, Deletion):
        document = _resolve_deletion(state, document)
        if document is None:
            return state, PostingResult(status="ignored")
    if document.doc_type not in settings.document_kinds:
        raise KindDisabled(f"document kind {document.doc_type!r} is switched off", document=document.key, rule="settings.document_kinds")
    if settings.golive_date is not None and document.doc_type != "opening_balance" and document.date <= settings.golive_date:
        withdrawn = _before_golive(state, document, settings, chart)
        if withdrawn is not None:
            return withdrawn
    key = document.key
    rec = state.documents.get(key)
    held = state.held.get(key)
    known_version = max(rec.document.version if rec else 0, held.document.version if held else 0)
    if document.version < known_version:
        return state, PostingResult(status="ignored", document=_ref(document))
    if document.version == known_version:
        if held is not None and held.document.version == known_version:
            return state, PostingResult(status="held", document=_ref(document), held=(held,))
        if rec is not None and rec.last_result is not None:
            return state, replace(rec.last_result, status="duplicate")
    postings.validate(document, settings)
    new_state, result = _post_once(state, document, settings, chart, released=False)
    if not retry_held:
        return new_state, result
    return _retry_held(new_state, result, document, settings, chart)


def _before_golive(state: LedgerState, document: Any, settings: LedgerSettings, chart: Chart
                   ) -> tuple[LedgerState, PostingResult] | None:
    """A version dated on or before ``settings.golive_date`` (go-live rule, module
    :mod:`salesledger.golive`: its effect belongs in the opening balances).

    - A document the engine never posted (or an invoice taken over at go-live): raises
      :class:`BeforeGolive` — a dead letter, nothing changes.
    - A document posted (or held) after go-live and now edited to a date on or before it: the
      edit moves it into the period before go-live, so what it posted is reversed like a
      cancellation (``../shared/golden/README.md``, "Conventions": a cancelled posted document
      gets a reversal, dated at the entries it reverses while that period is open; the
      locked-period policy otherwise), a held version leaves the queue, and the result carries
      the :class:`BeforeGolive` error in ``result.errors`` so the caller dead-letters the new
      version (an operator sees it) while keeping the reversal. The document's record keeps the
      new version (not posted); a later version dated after go-live posts as new.
    - A cancellation or deletion version: returns None (posted as usual: a reversal).
    """
    error = BeforeGolive(f"dated {document.date}, on or before go-live {settings.golive_date}", document=document.key, rule="settings.golive_date")
    rec = state.documents.get(document.key)
    held = state.held.get(document.key)
    live = (rec is not None and rec.posted and not isinstance(rec.document, OpeningInvoice)) or held is not None
    known = max(rec.document.version if rec else 0, held.document.version if held else 0)
    if not live or document.version <= known:
        raise error
    if document.status != "active":
        return None
    if held is not None and (rec is None or not rec.posted):
        state = replace(state, held=state.held.delete(document.key),
                        documents=state.documents.set(document.key, DocumentRecord(key=document.key, document=document)))
        return state, PostingResult(status="withdrawn", document=_ref(document), errors=(error,), touched=("held", f"document:{document.key}"))
    new_state, result = _post_once(state, replace(document, status="cancelled"), settings, chart, released=False)
    record = new_state.documents[document.key]
    new_state = replace(new_state, documents=new_state.documents.set(document.key, replace(record, document=document)))
    if result.status == "posted":
        new_state, result = _retry_reason(new_state, result, "insufficient_stock", settings, chart)
    return new_state, replace(result, status="withdrawn" if result.status == "posted" else result.status, errors=(error,))


def retry_held_documents(state: LedgerState, reason: str, settings: LedgerSettings, chart: Chart) -> tuple[LedgerState, PostingResult]:
    """Try again every document held for ``reason`` (``insufficient_stock``,
    ``awaiting_original``, ``no_exchange_rate``); those that now post are in ``result.also``."""
    return _retry_reason(state, PostingResult(status="retried"), reason, settings, chart)


def needed_keys(document: Any, record: DocumentRecord | None) -> dict[str, set]:
    """The state keys posting ``document`` reads, for a caller that loads a partial state:
    ``{"documents": {key...}, "stock": {(sku, warehouse)...}, "customers": {id...}}``.

    ``record`` is the document's own record (load ``documents[document.key]`` first): a change
    of a posted document also touches what its last version touched. ``held``, the lock and the
    rates are small and always loaded whole.
    """
    keys: dict[str, set] = {"documents": {document.key}, "stock": set(), "customers": set()}
    for doc in (document, record.document if record is not None else None):
        if doc is None or isinstance(doc, Deletion):
            continue
        warehouse = getattr(doc, "warehouse", None)
        for line in getattr(doc, "lines", ()):
            keys["stock"].add((line.sku, warehouse))
        for line in getattr(doc, "stock", ()):
            keys["stock"].add((line.sku, line.warehouse))
        for item in getattr(doc, "receivables", ()) + getattr(doc, "advances", ()):
            keys["customers"].add(item.customer)
        for ref in getattr(doc, "invoices", ()):
            keys["documents"].add(ref.key)
        if getattr(doc, "customer", None) is not None:
            keys["customers"].add(doc.customer)
        if getattr(doc, "against", None) is not None:
            keys["documents"].add(f"invoice:{doc.against}")
    return keys


def try_post(
    state: LedgerState, document: Any, settings: LedgerSettings, chart: Chart, *, retry_held: bool = True
) -> tuple[LedgerState, PostingResult]:
    """:func:`post` with operating errors returned as values: on a :class:`LedgerError` the
    state is unchanged and ``result.status == "error"``, ``result.errors == (error,)``."""
    try:
        return post(state, document, settings, chart, retry_held=retry_held)
    except LedgerError as error:
        ref = _ref(document) if hasattr(document, "doc_type") else None
        return state, PostingResult(status="error", document=ref, errors=(error,))


def lock_period(state: LedgerState, lock: PeriodLock) -> tuple[LedgerState, PostingResult]:
    """Lock every day up to ``lock.through``. A lock never moves back (an earlier date than
    the current lock changes nothing)."""
    if state.locked_through is not None and lock.through <= state.locked_through:
        return state, PostingResult(status="locked")
    return replace(state, locked_through=lock.through), PostingResult(status="locked", touched=("locks",))


def release(state: LedgerState, command: Release, settings: LedgerSettings, chart: Chart) -> tuple[LedgerState, PostingResult]:
    """Release a held document into the first open day (an authorised user's command).

    A document held for another reason than the lock (no exchange rate, no stock) is tried
    again and stays held if the reason persists. Unknown key: ``status="ignored"``.
    """
    held = state.held.get(command.document_key)
    if held is None:
        return state, PostingResult(status="ignored")
    new_state, result = _post_once(state, held.document, settings, chart, released=True)
    if result.status != "posted":
        return new_state, result
    new_state, result = _retry_held(new_state, result, held.document, settings, chart)
    return new_state, replace(result, status="released")


def set_rate(state: LedgerState, rate: ExchangeRate, settings: LedgerSettings, chart: Chart) -> tuple[LedgerState, PostingResult]:
    """Record an exchange rate and post the documents held for want of it."""
    if rate.rate <= 0:
        raise InvalidDocument(f"exchange rate must be positive, got {rate.rate}", rule="set_rate")
    series = list(state.rates.get(rate.currency, ()))
    dates = [d for d, _ in series]
    i = bisect.bisect_left(dates, rate.date)
    if i < len(series) and series[i][0] == rate.date:
        series[i] = (rate.date, rate.rate)
    else:
        series.insert(i, (rate.date, rate.rate))
    state = replace(state, rates=state.rates.set(rate.currency, tuple(series)))
    return _retry_reason(state, PostingResult(status="rate", touched=("rates",)), "no_exchange_rate", settings, chart)


def apply(state: LedgerState, item: Any, settings: LedgerSettings, chart: Chart) -> tuple[LedgerState, PostingResult]:
    """Dispatch on the input's type: a document or :class:`Deletion` -> :func:`post`,
    :class:`PeriodLock`, :class:`Release`, :class:`ExchangeRate`."""
    if isinstance(item, PeriodLock):
        return lock_period(state, item)
    if isinstance(item, Release):
        return release(state, item, settings, chart)
    if isinstance(item, ExchangeRate):
        return set_rate(state, item, settings, chart)
    return post(state, item, settings, chart)


# --------------------------------------------------------------------------- internals


def _ref(doc: Any) -> DocumentRef:
    return DocumentRef(type=doc.doc_type, id=doc.id, number=doc.number, version=doc.version, source=doc.source)


def _resolve_deletion(state: LedgerState, deletion: Deletion) -> Any | None:
    rec = state.documents.get(deletion.key)
    held = state.held.get(deletion.key)
    last = held.document if held is not None else (rec.document if rec is not None else None)
    if last is None:
        return None
    return replace(last, status="deleted", version=deletion.version, source=deletion.source or last.source)


def _post_once(state, document, settings, chart, *, released: bool) -> tuple[LedgerState, PostingResult]:
    tx = Tx(state, settings, chart, document)
    try:
        postings.apply_document(tx, document, released=released)
    except Hold as hold:
        return _hold(state, document, hold)
    return tx.finish(status="posted")


def _hold(state: LedgerState, document: Any, hold: Hold) -> tuple[LedgerState, PostingResult]:
    since = document.source.commit_time if document.source else None
    item = HeldItem(document_key=document.key, document=document, reason=hold.reason, since=since, detail=hold.detail)
    new_state = replace(state, held=state.held.set(document.key, item))
    return new_state, PostingResult(status="held", document=_ref(document), held=(item,), touched=("held",))


_RETRY_AFTER = {
    "invoice": ("awaiting_original",),
    "opening_balance": ("awaiting_original",),  # invoices taken over at go-live
    "goods_receipt": ("insufficient_stock",),
    "return": ("insufficient_stock",),
}


def _retry_held(state, result, document, settings, chart):
    if result.status != "posted" or not state.held:
        return state, result
    reasons = _RETRY_AFTER.get(document.doc_type, ())
    if document.version > 1:
        reasons = reasons + ("insufficient_stock",)
    for reason in reasons:
        state, result = _retry_reason(state, result, reason, settings, chart)
    return state, result


def _queue_order(item: HeldItem) -> tuple:
    """The held queue's order, independent of the map's iteration (``immutables.Map`` iterates
    in hash order, which changes with ``PYTHONHASHSEED``): source commit time, then version
    (the commit LSN in the pipeline), then document date and key. Retrying in this order keeps
    the ledger deterministic across processes."""
    since = item.since
    return (since is None, since.timestamp() if since is not None else 0, item.document.version,
            item.document.date.isoformat(), item.document_key)


def _retry_reason(state, result, reason, settings, chart):
    """Post again the held items held for ``reason``; their results go to ``result.also``."""
    also = list(result.also)
    waiting = sorted((h for h in state.held.values() if h.reason == reason), key=_queue_order)
    for item in waiting[:HELD_RETRY_MAX]:
        new_state, res = _post_once(state, item.document, settings, chart, released=False)
        if res.status == "posted":
            state = new_state
            also.append(res)
    return state, replace(result, also=tuple(also))


__all__ = [
    "apply",
    "check_settings",
    "lock_period",
    "needed_keys",
    "post",
    "release",
    "retry_held_documents",
    "set_rate",
    "try_post",
]
