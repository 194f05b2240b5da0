"""Reports over the accounting store and the reconciliation with the sales database.

Layout (data flows top to bottom; only ``store`` and ``reconcile`` talk to PostgreSQL):

- ``accounts``  — the account codes a report needs, by role, from the chart of accounts.
- ``assemble``  — pure functions: rows read from the store -> the JSON contracts of issue 8
  (trial balance, AR ageing, stock, P&L, journal); amounts are ``Decimal`` in, decimal strings out.
- ``store``     — read-only SQL over the accounting store (schema ``ledger`` by default), as the
  reporting role; ``--as-of`` counts only rows with an accounting date on or before it.
- ``render``    — one report as a rich table, JSON, CSV or XLSX (openpyxl).
- ``reconcile`` — the source side by SQL over the sales database (never the posting engine),
  the ledger side from the store, the ledger's own invariants, and their differences.

Money: the ledger's functional currency (AZN by default); sums are exact NUMERIC / ``Decimal``,
never float. Amounts are shown with at least two decimals (no rounding: the store keeps at most
four).
"""
