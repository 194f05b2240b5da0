"""The golden-case runner: any directory of case files in the golden format
(``../shared/golden/README.md``) run through the posting engine and compared with ``then``.

:func:`run_paths` returns one :class:`CaseOutcome` per file × run (``cases:`` item) × variant.
Comparison rules (README "How to compare"): entries by (kind, document) as a multiset, each
compared by per-account sums of debit and credit, and the accounting date when listed;
``journal: []`` means no entry at all; receivables (open, due, bucket, days_past_due as of a
date), advances, stock, held and after_release as listed.

Beyond the step kinds of the README the runner accepts ``write_off`` (a document like a goods
receipt without costs) and ``rate: {currency, date, rate}`` (an exchange rate; also as
``given.rates``), and any document may carry ``currency`` (default: the functional one). The
``at`` of an ``edit``/``cancel``/``delete`` becomes the version's source commit time.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable

import yaml

from salesledger.ledger import engine
from salesledger.ledger.charts import load_chart
from salesledger.ledger.errors import LedgerError
from salesledger.ledger.model import (
    ZERO,
    Allocation,
    Deletion,
    ExchangeRate,
    GoodsReceipt,
    Invoice,
    InvoiceLine,
    JournalEntry,
    OpeningBalance,
    OpeningStockLine,
    Payment,
    PeriodLock,
    ReceiptLine,
    Release,
    ReturnLine,
    SalesReturn,
    SourcePosition,
    WriteOff,
    WriteOffLine,
)
from salesledger.ledger.receivables import age_item
from salesledger.ledger.settings import LedgerSettings
from salesledger.ledger.state import LedgerState

STEPS_MAX = 10_000


class CaseFormatError(ValueError):
    """A case file does not follow the golden format."""


@dataclass
class CaseOutcome:
    """One file × run × variant: ``status`` ``pass`` | ``fail`` and readable ``diffs``."""

    file: str
    id: str
    run: str
    status: str
    diffs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of one outcome."""
        return {"file": self.file, "id": self.id, "run": self.run, "status": self.status, "diffs": self.diffs}


# --------------------------------------------------------------------------- loading


def case_files(paths: Iterable[str | Path]) -> list[Path]:
    """The case files under ``paths`` (directories: every ``*.yaml``/``*.yml``, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise CaseFormatError(f"no such case file or directory: {p}")
    return out


def _dec(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise CaseFormatError(f"{what}: expected a decimal, got {value!r}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise CaseFormatError(f"{what}: not a decimal: {value!r}") from None


def _date(value: Any, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CaseFormatError(f"{what}: not a date: {value!r}") from None


def _ts(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


# --------------------------------------------------------------------------- documents


class _Builder:
    """Turns steps into engine inputs, keeping each document's last version."""

    def __init__(self, currency: str):
        self.currency = currency
        self.last: dict[str, Any] = {}  # number -> last document version

    def _common(self, s: dict) -> dict:
        return dict(
            id=str(s.get("id", s["number"])), number=str(s["number"]), date=_date(s["date"], "date"),
            currency=str(s.get("currency", self.currency)), branch=s.get("branch"), entered_at=_ts(s.get("entered_at")),
        )

    def build(self, kind: str, s: dict) -> Any:
        """The engine input for one step of kind ``kind`` with body ``s``."""
        if kind in ("invoice", "payment", "return", "goods_receipt", "write_off"):
            doc = getattr(self, f"_{kind}")(s)
            self.last[doc.number] = doc
            return doc
        if kind == "edit":
            old = self._last(s)
            fields = {k: v for k, v in s.items() if k not in ("document", "at")}
            doc = replace(self._rebuild(old, fields), source=_source(s))
            self.last[doc.number] = doc
            return doc
        if kind == "cancel":
            old = self._last(s)
            doc = replace(old, status="cancelled", version=old.version + 1, source=_source(s))
            self.last[doc.number] = doc
            return doc
        if kind == "delete":
            old = self._last(s)
            self.last[old.number] = replace(old, status="deleted", version=old.version + 1)
            return Deletion(doc_type=old.doc_type, number=old.number, version=old.version + 1, at=_ts(s.get("at")), source=_source(s))
        if kind == "lock":
            return PeriodLock(through=_date(s["through"], "lock.through"), at=_ts(s.get("at")))
        if kind == "release":
            number = str(s["document"])
            old = self.last.get(number)
            key = old.key if old is not None else f"invoice:{number}"
            return Release(document_key=key, at=_ts(s.get("at")))
        if kind == "rate":
            return ExchangeRate(currency=s["currency"], date=_date(s["date"], "rate.date"), rate=_dec(s["rate"], "rate"))
        raise CaseFormatError(f"unknown step kind {kind!r}")

    def _last(self, s: dict) -> Any:
        number = str(s["document"])
        if number not in self.last:
            raise CaseFormatError(f"step refers to unknown document {number!r}")
        return self.last[number]

    def _rebuild(self, old: Any, fields: dict) -> Any:
        data = {"number": old.number, "id": old.id, "date": old.date, "currency": old.currency}
        for name in ("customer", "warehouse", "payment_terms_days", "prices_include_vat", "method", "amount",
                     "supplier", "against", "reason"):
            if hasattr(old, name):
                data[name] = getattr(old, name)
        if hasattr(old, "allocations"):
            data["allocations"] = [{"document": a.document, "amount": a.amount} for a in old.allocations]
        data.update(fields)
        if "lines" not in fields and hasattr(old, "lines"):
            return replace(self.build(old.doc_type, {**data, "lines": []}), lines=old.lines, version=old.version + 1)
        doc = self.build(old.doc_type, data)
        return replace(doc, version=old.version + 1)

    def _invoice(self, s: dict) -> Invoice:
        lines = tuple(
            InvoiceLine(
                line_no=int(l.get("line", i)), sku=str(l["sku"]), qty=_dec(l["qty"], "qty"),
                unit_price=_dec(l["unit_price"], "unit_price") if l.get("unit_price") is not None else None,
                vat_rate=_dec(l.get("vat_rate", 0), "vat_rate"), discount_percent=_dec(l.get("discount_percent", 0), "discount_percent"),
            )
            for i, l in enumerate(s.get("lines", []), start=1)
        )
        return Invoice(**self._common(s), customer=str(s["customer"]), warehouse=str(s["warehouse"]), lines=lines,
                       payment_terms_days=int(s.get("payment_terms_days", 0)), prices_include_vat=bool(s.get("prices_include_vat", False)))

    def _payment(self, s: dict) -> Payment:
        allocs = tuple(Allocation(document=str(a["document"]), amount=_dec(a["amount"], "allocation")) for a in s.get("allocations") or [])
        return Payment(**self._common(s), customer=str(s["customer"]), method=s.get("method", "bank"), amount=_dec(s["amount"], "amount"), allocations=allocs)

    def _return(self, s: dict) -> SalesReturn:
        lines = tuple(ReturnLine(sku=str(l["sku"]), qty=_dec(l["qty"], "qty"), line=l.get("line")) for l in s.get("lines", []))
        return SalesReturn(**self._common(s), customer=str(s["customer"]), warehouse=str(s["warehouse"]), against=str(s["against"]), lines=lines)

    def _goods_receipt(self, s: dict) -> GoodsReceipt:
        lines = tuple(ReceiptLine(sku=str(l["sku"]), qty=_dec(l["qty"], "qty"), unit_cost=_dec(l["unit_cost"], "unit_cost"), vat_rate=_dec(l.get("vat_rate", 0), "vat_rate")) for l in s.get("lines", []))
        return GoodsReceipt(**self._common(s), supplier=str(s.get("supplier", "")), warehouse=str(s["warehouse"]), lines=lines)

    def _write_off(self, s: dict) -> WriteOff:
        lines = tuple(WriteOffLine(sku=str(l["sku"]), qty=_dec(l["qty"], "qty")) for l in s.get("lines", []))
        return WriteOff(**self._common(s), warehouse=str(s["warehouse"]), lines=lines, reason=str(s.get("reason", "")))


def _source(step: dict) -> SourcePosition | None:
    at = _ts(step.get("at"))
    return SourcePosition(commit_time=at) if at is not None else None


def _step(step: Any) -> tuple[str, dict]:
    if not isinstance(step, dict) or len(step) != 1:
        raise CaseFormatError(f"a step is a mapping with one key, got {step!r}")
    (kind, body), = step.items()
    return kind, dict(body or {})


# --------------------------------------------------------------------------- running


@dataclass
class RunOutput:
    """What a run produced: the final state and every entry posted, in order."""

    state: LedgerState
    entries: list[JournalEntry]
    documents: set[str]
    settings: LedgerSettings
    chart: Any
    builder: _Builder


def make_settings(raw: dict | None) -> LedgerSettings:
    """Golden ``settings:`` (``currency`` = functional currency) -> :class:`LedgerSettings`."""
    raw = dict(raw or {})
    for key in ("rounding_quantum",):
        if key in raw:
            raw[key] = Decimal(str(raw[key]))
    return LedgerSettings(**raw)


def run_steps(given: dict, steps: list, settings: LedgerSettings, chart: Any) -> RunOutput:
    """Run ``given`` and ``steps`` through the engine from an empty state."""
    engine.check_settings(settings, chart)
    builder = _Builder(settings.functional_currency)
    state = LedgerState()
    entries: list[JournalEntry] = []
    inputs = [builder.build(*_step(s)) for s in steps[:STEPS_MAX]]
    documents = {i.number for i in inputs if hasattr(i, "number")}
    stock = given.get("stock") or []
    if stock:
        first = min((i.date for i in inputs if hasattr(i, "date")), default=dt.date.today())
        ob = OpeningBalance(
            id="opening", number="OPENING", date=first - dt.timedelta(days=1), currency=settings.functional_currency,
            stock=tuple(OpeningStockLine(sku=str(s["sku"]), warehouse=str(s["warehouse"]), qty=_dec(s["qty"], "qty"), unit_cost=_dec(s["unit_cost"], "unit_cost")) for s in stock),
        )
        state, res = engine.post(state, ob, settings, chart)
        entries += res.entries
    for rate in given.get("rates") or []:
        state, _ = engine.set_rate(state, ExchangeRate(currency=rate["currency"], date=_date(rate["date"], "rate"), rate=_dec(rate["rate"], "rate")), settings, chart)
    if given.get("locked_through") is not None:
        state, _ = engine.lock_period(state, PeriodLock(through=_date(given["locked_through"], "locked_through")))
    for item in inputs:
        state, res = engine.apply(state, item, settings, chart)
        entries += _all_entries(res)
    return RunOutput(state, entries, documents, settings, chart, builder)


def _all_entries(res: Any) -> list[JournalEntry]:
    out = list(res.entries)
    for sub in res.also:
        out += _all_entries(sub)
    return out


def release_all(out: RunOutput) -> None:
    """Release every held document (the ``after_release`` check)."""
    for key in list(out.state.held):
        out.state, res = engine.release(out.state, Release(document_key=key), out.settings, out.chart)
        out.entries += _all_entries(res)


# --------------------------------------------------------------------------- comparing


def _account_sums(lines: Iterable[tuple[str, Decimal, Decimal]]) -> dict[str, tuple[Decimal, Decimal]]:
    sums: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for account, debit, credit in lines:
        sums[account][0] += debit
        sums[account][1] += credit
    return {a: (d, c) for a, (d, c) in sums.items() if d != 0 or c != 0}


def _fmt_sums(sums: dict[str, tuple[Decimal, Decimal]]) -> str:
    return ", ".join(
        f"{a} " + " ".join(x for x in (f"Dr {d}" if d else "", f"Cr {c}" if c else "") if x) for a, (d, c) in sorted(sums.items())
    )


def _expected_entry(e: dict) -> tuple[dt.date | None, dict | None]:
    day = _date(e["date"], "journal.date") if e.get("date") is not None else None
    if "lines" not in e:
        return day, None
    lines = [(str(l["account"]), _dec(l.get("debit", 0), "debit"), _dec(l.get("credit", 0), "credit")) for l in e["lines"]]
    return day, _account_sums(lines)


def _matches(exp: tuple[dt.date | None, dict | None], act: JournalEntry) -> bool:
    day, sums = exp
    if day is not None and act.accounting_date != day:
        return False
    return sums is None or sums == _account_sums((l.account, l.debit, l.credit) for l in act.lines)


def _match_all(expected: list, actual: list[JournalEntry]) -> bool:
    """A perfect matching of expected to actual entries (small sets: backtracking)."""
    if len(expected) != len(actual):
        return False
    used = [False] * len(actual)

    def go(i: int) -> bool:
        """Match expected[i:] to unused actual entries."""
        if i == len(expected):
            return True
        for j, act in enumerate(actual):
            if not used[j] and _matches(expected[i], act):
                used[j] = True
                if go(i + 1):
                    return True
                used[j] = False
        return False

    return go(0)


def _describe(entry: JournalEntry) -> str:
    return f"{entry.accounting_date}: {_fmt_sums(_account_sums((l.account, l.debit, l.credit) for l in entry.lines))}"


def compare_journal(expected: list | None, out: RunOutput, prefix: str = "") -> list[str]:
    """Differences between the expected ``journal`` list and the run's entries (by (kind, document) as a multiset; ``[]``: no entry at all); also every entry must balance."""
    diffs: list[str] = []
    for e in out.entries:
        if not e.is_balanced():
            diffs.append(f"{prefix}entry {e.kind} {e.document.number} does not balance: {e.totals()}")
    if expected is None:
        return diffs
    if not expected:
        extra = [e for e in out.entries if e.kind != "opening_balance" and e.document.number in out.documents]
        return diffs + [f"{prefix}journal: expected no entries, got {e.kind} {e.document.number} {_describe(e)}" for e in extra]
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for e in expected:
        groups[(str(e["kind"]), str(e["document"]))].append(_expected_entry(e))
    for (kind, doc), exp in groups.items():
        actual = [e for e in out.entries if e.kind == kind and e.document.number == doc]
        if not _match_all(exp, actual):
            want = "; ".join(f"{d or '(any date)'}: {_fmt_sums(s) if s is not None else '(any lines)'}" for d, s in exp)
            got = "; ".join(_describe(a) for a in actual) or "nothing"
            diffs.append(f"{prefix}journal {kind} {doc}: expected {len(exp)} [{want}] got {len(actual)} [{got}]")
    return diffs


def compare_state(then: dict, out: RunOutput, prefix: str = "") -> list[str]:
    """Differences in receivables (open, due, bucket, days_past_due as of a date), advances, stock and the held queue."""
    diffs: list[str] = []
    state = out.state
    for r in then.get("receivables") or []:
        acc = state.customers.get(str(r["customer"]))
        item = acc.open_items.get(str(r["document"])) if acc else None
        label = f"{prefix}receivable {r['customer']}/{r['document']}" + (f" as of {r['as_of']}" if r.get("as_of") else "")
        if item is None:
            if _dec(r.get("open", 0), "open") != 0 or r.get("due") is not None:
                diffs.append(f"{label}: expected open {r.get('open')}, no open item")
            continue
        as_of = _date(r["as_of"], "as_of") if r.get("as_of") is not None else None
        open_amount = item.open if as_of is None else item.open_as_of(as_of)
        if "open" in r and open_amount != _dec(r["open"], "open"):
            diffs.append(f"{label}: open expected {r['open']} got {open_amount}")
        if r.get("due") is not None and item.due_date != _date(r["due"], "due"):
            diffs.append(f"{label}: due expected {r['due']} got {item.due_date}")
        if as_of is not None:
            row = age_item(item, as_of)
            if "bucket" in r and row.bucket != str(r["bucket"]):
                diffs.append(f"{label}: bucket expected {r['bucket']} got {row.bucket}")
            if "days_past_due" in r and row.days_past_due != int(r["days_past_due"]):
                diffs.append(f"{label}: days_past_due expected {r['days_past_due']} got {row.days_past_due}")
    for a in then.get("advances") or []:
        acc = state.customers.get(str(a["customer"]))
        as_of = _date(a["as_of"], "as_of") if a.get("as_of") is not None else None
        got = sum(((x.open if as_of is None else x.open_as_of(as_of)) for x in (acc.advances if acc else ())), ZERO)
        if got != _dec(a.get("open", 0), "open"):
            diffs.append(f"{prefix}advances {a['customer']}: expected {a.get('open')} got {got}")
    for s in then.get("stock") or []:
        pos = state.stock.get((str(s["sku"]), str(s["warehouse"])))
        qty, value = (pos.qty, pos.value) if pos else (ZERO, ZERO)
        if "qty" in s and qty != _dec(s["qty"], "qty"):
            diffs.append(f"{prefix}stock {s['sku']}@{s['warehouse']}: qty expected {s['qty']} got {qty}")
        if "value" in s and value != _dec(s["value"], "value"):
            diffs.append(f"{prefix}stock {s['sku']}@{s['warehouse']}: value expected {s['value']} got {value}")
    if "held" in then:
        want = sorted((str(h["document"]), str(h.get("reason"))) for h in then.get("held") or [])
        got = sorted((h.document.number, h.reason) for h in state.held.values())
        if want != got:
            diffs.append(f"{prefix}held: expected {want} got {got}")
    return diffs


def compare(then: dict, out: RunOutput) -> list[str]:
    """Every difference between ``then`` and the run (empty: the case passes)."""
    diffs = compare_journal(then.get("journal"), out) + compare_state(then, out)
    if "after_release" in then:
        release_all(out)
        after = then["after_release"] or {}
        diffs += compare_journal(after.get("journal"), out, "after release: ") + compare_state(after, out, "after release: ")
    return diffs


# --------------------------------------------------------------------------- files


def _merge_then(top: dict, expect: dict) -> dict:
    merged = copy.deepcopy(top)
    for key, value in (expect or {}).items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_then(merged[key], value)
        else:
            merged[key] = value
    return merged


def runs_of(case: dict) -> list[tuple[str, Any, dict, list, dict]]:
    """(run label, chart name, settings, steps, then) for every run × variant of a case."""
    top_then = case.get("then") or {}
    base_runs = []
    if case.get("cases"):
        for i, run in enumerate(case["cases"], start=1):
            chart = run.get("chart", case.get("chart", "az-nas"))
            settings = run.get("settings", case.get("settings"))
            label = f"cases[{i}] {chart} " + " ".join(f"{k}={v}" for k, v in (settings or {}).items())
            base_runs.append((label.strip(), chart, settings, _merge_then(top_then, run.get("expect") or {})))
    else:
        base_runs.append(("main", case.get("chart", "az-nas"), case.get("settings"), top_then))
    steps = list(case.get("when") or [])
    out = []
    for label, chart, settings, then in base_runs:
        if case.get("variants"):
            for j, variant in enumerate(case["variants"], start=1):
                extra = variant.get("then_do")
                extra = extra if isinstance(extra, list) else [extra]
                kinds = ",".join(next(iter(e)) for e in extra)
                out.append((f"{label} variants[{j}] {kinds}", chart, settings, steps + extra, then))
        else:
            out.append((label, chart, settings, steps, then))
    return out


def run_case_file(path: Path) -> list[CaseOutcome]:
    """Run every run × variant of one case file."""
    try:
        case = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(case, dict):
            raise CaseFormatError("a case file is a mapping")
        runs = runs_of(case)
    except (yaml.YAMLError, CaseFormatError, OSError) as exc:
        return [CaseOutcome(str(path), path.stem, "load", "fail", [f"cannot load case: {exc}"])]
    case_id = str(case.get("id", path.stem))
    outcomes = []
    for label, chart_name, settings, steps, then in runs:
        try:
            out = run_steps(case.get("given") or {}, steps, make_settings(settings), load_chart(chart_name))
            diffs = compare(then, out)
        except (LedgerError, CaseFormatError, ValueError, KeyError, TypeError) as exc:
            diffs = [f"error: {type(exc).__name__}: {exc}"]
        outcomes.append(CaseOutcome(str(path), case_id, label, "fail" if diffs else "pass", diffs))
    return outcomes


def run_paths(paths: Iterable[str | Path]) -> list[CaseOutcome]:
    """Run every case file under ``paths``."""
    return [o for f in case_files(paths) for o in run_case_file(f)]
