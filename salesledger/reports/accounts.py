"""The account codes reports need, by role, taken from the chart of accounts the pipeline posts
with (``SALESLEDGER_PIPELINE_CHART``, default ``az-nas``; see ``salesledger/ledger/charts.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from salesledger.ledger.charts import Chart, load_chart


@dataclass(frozen=True, slots=True)
class ReportAccounts:
    """Account codes per role (a tuple: empty when the chart lacks the role) and the chart's
    account names (``names``: code -> name), for the reports and the reconciliation.

    Roles: ``receivable``, ``customer_advances``, ``inventory``, ``revenue``, ``sales_returns``,
    ``discounts_granted``, ``vat_on_sales`` (ru-1c: VAT taken out of gross revenue),
    ``vat_payable``, ``cost_of_sales``.
    """

    chart: str
    receivable: tuple[str, ...]
    customer_advances: tuple[str, ...]
    inventory: tuple[str, ...]
    revenue: tuple[str, ...]
    sales_returns: tuple[str, ...]
    discounts_granted: tuple[str, ...]
    vat_on_sales: tuple[str, ...]
    vat_payable: tuple[str, ...]
    cost_of_sales: tuple[str, ...]
    names: dict[str, str]

    @property
    def net_sales(self) -> tuple[str, ...]:
        """Accounts whose (credit − debit) sums to the net (excl. VAT) sales of a document:
        revenue, sales_returns, discounts_granted and vat_on_sales (ru-1c books revenue gross
        and takes the VAT out through 90.03)."""
        return self.revenue + self.sales_returns + self.discounts_granted + self.vat_on_sales


_ROLES = ("receivable", "customer_advances", "inventory", "revenue", "sales_returns",
          "discounts_granted", "vat_on_sales", "vat_payable", "cost_of_sales")


def report_accounts(chart: Chart | str) -> ReportAccounts:
    """:class:`ReportAccounts` of ``chart`` (a :class:`Chart`, a preset name or a YAML file).

    Raises ``ChartError`` for an unknown chart.
    """
    chart = load_chart(chart) if isinstance(chart, str) else chart
    codes = {role: ((chart.roles[role].code,) if chart.has(role) else ()) for role in _ROLES}
    names = {account.code: account.name for account in chart.roles.values()}
    return ReportAccounts(chart=chart.name, names=names, **codes)
