"""Typed errors of the posting engine.

An operating error (bad input, a chart without a needed role) is a :class:`LedgerError`: it names
the document and the rule, and the stream processors turn it into a dead letter. A broken
invariant (an entry that does not balance) is an :class:`InvariantViolation`: a bug.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of the engine's operating errors.

    ``document``: the document key (``"invoice:INV-1"``) or None; ``rule``: the posting rule
    or check that refused it; ``reason``: a short machine-readable word; ``message``: for people.
    """

    reason = "ledger_error"

    def __init__(self, message: str, *, document: str | None = None, rule: str | None = None):
        self.document = document
        self.rule = rule
        self.message = message
        super().__init__(f"{message} [document={document} rule={rule}]")


class InvalidDocument(LedgerError):
    """The document itself is wrong: no price, negative quantity, allocations above the amount,
    a return above what was sold, an unknown invoice."""

    reason = "invalid_document"


class KindDisabled(InvalidDocument):
    """The document's kind is not in ``LedgerSettings.document_kinds`` (not rolled out yet)."""

    reason = "kind_disabled"


class BeforeGolive(InvalidDocument):
    """The document is dated on or before ``LedgerSettings.golive_date``: its effect is in the
    go-live opening balance, so it is not posted."""

    reason = "before_golive"


class UnknownRole(LedgerError):
    """A posting rule needs an account role the chart does not define."""

    reason = "unknown_role"


class ChartError(LedgerError):
    """A chart file is malformed (unknown role name, missing code, unknown rule name)."""

    reason = "chart_error"


class UnbalancedEntry(LedgerError):
    """A rule produced an entry whose debits and credits differ in some currency."""

    reason = "unbalanced_entry"


class SettingsError(LedgerError):
    """Settings that contradict each other or the chart."""

    reason = "settings_error"


class InvariantViolation(AssertionError):
    """A broken invariant of the engine (a bug): stops the process."""
