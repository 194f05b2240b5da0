"""Charts of accounts as data: a chart maps account **roles** (what a posting rule needs) to
account codes, and names the posting rules whose shape differs between charts.

Two presets ship (:data:`PRESETS`): ``az-nas`` and ``ru-1c``; any chart can be written in YAML
without code::

    name: my-chart
    base: az-nas                 # optional: start from a preset
    reversal: swap               # swap | red_storno
    rules: {sale: sale_net_vat, return: return_via_sales_returns}
    roles:
      bank: {code: "224", name: "Bank (USD)"}

and single accounts overridden (``overrides={"bank": "224"}``). A role name the engine does not
know is refused (:class:`ChartError`); a rule asking a chart for a role it lacks raises
:class:`UnknownRole` naming the document and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from salesledger.ledger.errors import ChartError, UnknownRole

#: Every account role a posting rule may ask for, with what it holds.
KNOWN_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "inventory": "goods for resale at cost",
        "receivable": "amounts customers owe (open items)",
        "cash": "cash on hand",
        "bank": "bank settlement account",
        "vat_deposit": "VAT deposit account receiving a VAT payer's VAT part (az)",
        "vat_recoverable": "input VAT on goods received",
        "vat_payable": "output VAT owed",
        "payable": "amounts owed to suppliers",
        "customer_advances": "advances received from customers",
        "revenue": "sales revenue",
        "sales_returns": "returns and allowances (contra-revenue)",
        "discounts_granted": "discounts granted (contra-revenue)",
        "cost_of_sales": "cost of goods sold",
        "vat_on_sales": "VAT charged out of gross revenue (ru: 90.03)",
        "inventory_losses": "shortages and goods written off",
        "opening_balance": "technical opening-balance account",
    }
)

REVERSAL_STYLES = ("swap", "red_storno")
#: Rule slots a chart chooses and the names each slot accepts (registered in ``rules.py``).
RULE_CHOICES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "sale": ("sale_net_vat", "sale_gross_then_vat"),
        "return": ("return_via_sales_returns", "return_red_storno"),
    }
)


@dataclass(frozen=True, slots=True)
class Account:
    """An account of a chart: ``code`` (as posted), ``name``, and where the code comes from."""

    code: str
    name: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart of accounts: ``roles`` (role -> :class:`Account`), the ``reversal`` style
    (``swap``: debit and credit exchanged; ``red_storno``: same sides, negative amounts) and the
    ``rules`` chosen per slot (``sale``, ``return``)."""

    name: str
    roles: Mapping[str, Account]
    reversal: str = "swap"
    rules: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def account(self, role: str, *, rule: str | None = None, document: str | None = None) -> str:
        """The account code of ``role``; raises :class:`UnknownRole` if the chart lacks it."""
        try:
            return self.roles[role].code
        except KeyError:
            raise UnknownRole(
                f"chart {self.name!r} has no account for role {role!r}",
                document=document,
                rule=rule,
            ) from None

    def has(self, role: str) -> bool:
        """True when the chart defines ``role``."""
        return role in self.roles

    def rule(self, slot: str) -> str:
        """The rule name the chart chose for ``slot`` (``sale``, ``return``)."""
        return self.rules.get(slot, RULE_CHOICES[slot][0])


_AZ_SRC = "muhasibat.az, chart for commercial organisations (NAS), section 'Qısamüddətli aktivlər'"
_AZ_LIAB = "muhasibat.az, NAS chart, section 'Qısamüddətli öhdəliklər'"
_AZ_INC = "muhasibat.az, NAS chart, section 'Gəlirlər'"
_AZ_EXP = "NAS chart, expenses section (cost of sales); to confirm against the MinFin text"
_RU_SRC = "Order of the Ministry of Finance of Russia No. 94n (31.10.2000), sub-accounts as in 1C:Accounting 3.0"

AZ_NAS: Mapping[str, Any] = {
    "name": "az-nas",
    "source": "Chart of accounts for commercial organisations, National Accounting Standards of "
    "Azerbaijan (Ministry of Finance); codes as reproduced by muhasibat.az and e-muhasib.az",
    "reversal": "swap",
    "rules": {"sale": "sale_net_vat", "return": "return_via_sales_returns"},
    "roles": {
        "inventory": {"code": "205", "name": "Mallar", "source": _AZ_SRC},
        "receivable": {"code": "211", "name": "Alıcıların və sifarişçilərin qısamüddətli debitor borcları", "source": _AZ_SRC},
        "cash": {"code": "221", "name": "Kassa", "source": _AZ_SRC},
        "bank": {"code": "223", "name": "Bank hesablaşma hesabları", "source": _AZ_SRC},
        "vat_deposit": {"code": "226", "name": "ƏDV sub-uçot hesabı", "source": _AZ_SRC},
        "vat_recoverable": {"code": "241", "name": "Əvəzləşdirilən ƏDV", "source": _AZ_SRC},
        "vat_payable": {"code": "521", "name": "Vergi öhdəlikləri", "source": _AZ_LIAB},
        "payable": {"code": "531", "name": "Malsatan və podratçılara qısamüddətli kreditor borcları", "source": _AZ_LIAB},
        "customer_advances": {"code": "543", "name": "Alınmış qısamüddətli avanslar", "source": "e-muhasib.az, account 543"},
        "revenue": {"code": "601", "name": "Satış", "source": _AZ_INC},
        "sales_returns": {"code": "602", "name": "Satılmış malların qaytarılması və ucuzlaşdırılması", "source": _AZ_INC},
        "discounts_granted": {"code": "603", "name": "Verilmiş güzəştlər", "source": _AZ_INC},
        "cost_of_sales": {"code": "701", "name": "Satışın maya dəyəri", "source": _AZ_EXP},
        "inventory_losses": {"code": "731", "name": "Digər əməliyyat xərcləri", "source": "NAS chart, expenses section (other operating expenses); to confirm against the MinFin text"},
        "opening_balance": {"code": "000", "name": "Technical opening-balance account", "source": "salesledger convention (not part of the NAS chart)"},
    },
}

RU_1C: Mapping[str, Any] = {
    "name": "ru-1c",
    "source": _RU_SRC,
    "reversal": "red_storno",
    "rules": {"sale": "sale_gross_then_vat", "return": "return_red_storno"},
    "roles": {
        "inventory": {"code": "41.01", "name": "Товары на складах", "source": _RU_SRC},
        "vat_recoverable": {"code": "19.03", "name": "НДС по приобретенным МПЗ", "source": _RU_SRC},
        "cash": {"code": "50.01", "name": "Касса организации", "source": _RU_SRC},
        "bank": {"code": "51", "name": "Расчетные счета", "source": _RU_SRC},
        "payable": {"code": "60.01", "name": "Расчеты с поставщиками и подрядчиками", "source": _RU_SRC},
        "receivable": {"code": "62.01", "name": "Расчеты с покупателями и заказчиками", "source": _RU_SRC},
        "customer_advances": {"code": "62.02", "name": "Расчеты по авансам полученным", "source": _RU_SRC},
        "vat_payable": {"code": "68.02", "name": "Налог на добавленную стоимость", "source": _RU_SRC},
        "revenue": {"code": "90.01.1", "name": "Выручка от продаж, не облагаемых ЕНВД", "source": _RU_SRC},
        "cost_of_sales": {"code": "90.02.1", "name": "Себестоимость продаж, не облагаемых ЕНВД", "source": _RU_SRC},
        "vat_on_sales": {"code": "90.03", "name": "Налог на добавленную стоимость", "source": _RU_SRC},
        "inventory_losses": {"code": "94", "name": "Недостачи и потери от порчи ценностей", "source": _RU_SRC},
        "opening_balance": {"code": "000", "name": "Вспомогательный счет (ввод остатков)", "source": "1C:Accounting 3.0 technical account 000"},
    },
}

#: The shipped presets by name (data, not code).
PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({"az-nas": AZ_NAS, "ru-1c": RU_1C})


def chart_from_data(data: Mapping[str, Any], *, origin: str = "<data>") -> Chart:
    """Build a :class:`Chart` from a mapping (a preset or a parsed YAML file).

    Raises :class:`ChartError` on an unknown role, a role without ``code``, an unknown base
    preset, reversal style or rule name.
    """
    if not isinstance(data, Mapping):
        raise ChartError(f"{origin}: a chart is a mapping", rule="chart.load")
    base_name = data.get("base")
    if base_name is not None:
        if base_name not in PRESETS:
            raise ChartError(f"{origin}: unknown base chart {base_name!r}", rule="chart.load")
        base = chart_from_data(PRESETS[base_name], origin=base_name)
    else:
        base = Chart(name="", roles={})
    roles = dict(base.roles)
    for role, spec in (data.get("roles") or {}).items():
        roles[role] = _account(role, spec, origin)
    reversal = data.get("reversal", base.reversal)
    if reversal not in REVERSAL_STYLES:
        raise ChartError(f"{origin}: unknown reversal style {reversal!r}", rule="chart.load")
    rules = dict(base.rules)
    for slot, name in (data.get("rules") or {}).items():
        if slot not in RULE_CHOICES or name not in RULE_CHOICES[slot]:
            raise ChartError(f"{origin}: unknown rule {slot}: {name!r}", rule="chart.load")
        rules[slot] = name
    return Chart(
        name=str(data.get("name") or base.name or origin),
        roles=MappingProxyType(roles),
        reversal=reversal,
        rules=MappingProxyType(rules),
        source=str(data.get("source", base.source)),
    )


def _account(role: str, spec: Any, origin: str) -> Account:
    if role not in KNOWN_ROLES:
        raise ChartError(
            f"{origin}: unknown role {role!r} (known: {', '.join(KNOWN_ROLES)})",
            rule="chart.load",
        )
    if isinstance(spec, (str, int)):
        return Account(code=str(spec), name=role)
    if not isinstance(spec, Mapping) or "code" not in spec:
        raise ChartError(f"{origin}: role {role!r} needs a code", rule="chart.load")
    return Account(code=str(spec["code"]), name=str(spec.get("name", role)), source=str(spec.get("source", "")))


def with_overrides(chart: Chart, overrides: Mapping[str, Any]) -> Chart:
    """``chart`` with some roles' accounts replaced (``{"bank": "224"}`` or full specs)."""
    roles = dict(chart.roles)
    for role, spec in overrides.items():
        roles[role] = _account(role, spec, f"overrides of {chart.name}")
    return replace(chart, roles=MappingProxyType(roles))


def load_chart(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Chart:
    """A preset by name (``az-nas``, ``ru-1c``) or a YAML chart file, with optional overrides."""
    if isinstance(name_or_path, str) and name_or_path in PRESETS:
        chart = chart_from_data(PRESETS[name_or_path], origin=name_or_path)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ChartError(f"no chart preset or file {str(name_or_path)!r}", rule="chart.load")
        chart = chart_from_data(yaml.safe_load(path.read_text(encoding="utf-8")), origin=str(path))
    return with_overrides(chart, overrides) if overrides else chart
