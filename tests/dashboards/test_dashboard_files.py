"""The provisioned Grafana files parse and hang together: four dashboards, every panel on a
provisioned datasource with a query, the PostgreSQL datasource as the read-only reporting role,
account-code constants equal to the chart the pipeline posts with, and docker-compose mounting
the files where the provisioning expects them. (Running the queries: the *_stack tests.)"""

from __future__ import annotations

import yaml

from salesledger.config import Settings
from salesledger.ledger.charts import load_chart
from salesledger.reports.accounts import report_accounts
from tests.dashboards.grafana import (GRAFANA_DIR, PG_UID, PROM_UID, dashboards, panels,
                                      variables)

TITLES = {"Sales today", "Receivables", "Stock", "Pipeline health"}
#: Panel types built into Grafana 11 (no plugin to install in the compose service).
CORE_PANELS = {"stat", "timeseries", "barchart", "table", "bargauge", "gauge"}


def test_four_dashboards_with_unique_uids_and_panels_on_provisioned_datasources() -> None:
    boards = dashboards()
    assert {b["title"] for b in boards.values()} == TITLES
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "salesledger.yml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    assert uids == {PROM_UID: "prometheus", PG_UID: "grafana-postgresql-datasource"}
    for name, board in boards.items():
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            assert panel["type"] in CORE_PANELS, (name, panel["title"], panel["type"])
            assert panel["datasource"]["uid"] in uids, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], (name, panel["title"])
                key = "rawSql" if target["datasource"]["uid"] == PG_UID else "expr"
                assert target[key].strip(), (name, panel["title"], target["refId"])
    health = boards["pipeline-health"]
    assert {p["datasource"]["uid"] for p in panels(health)} == {PROM_UID}


def test_accounting_datasource_is_the_read_only_reporting_role() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "salesledger.yml").read_text())
    store = next(d for d in provisioned["datasources"] if d["uid"] == PG_UID)
    defaults = Settings.model_fields
    assert store["user"] == defaults["reporting_role"].default
    assert store["url"] == f"127.0.0.1:{defaults['pg_port'].default}"
    assert store["secureJsonData"]["password"] == "${SALESLEDGER_REPORTING_PASSWORD}"
    dash_files = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "salesledger.yml").read_text())
    assert dash_files["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_account_constants_are_the_pipeline_charts() -> None:
    chart = load_chart("az-nas")
    accounts = report_accounts(chart)
    want = {
        "schema": "ledger",
        "revenue_accounts": ",".join(accounts.revenue + accounts.vat_on_sales),
        "returns_accounts": ",".join(accounts.sales_returns),
        "discount_accounts": ",".join(accounts.discounts_granted),
        "cogs_accounts": ",".join(accounts.cost_of_sales),
        "cash_accounts": ",".join((chart.account("cash"), chart.account("bank"))),
    }
    for name in ("sales-today", "receivables"):
        assert variables(dashboards()[name]) == want, name
    assert variables(dashboards()["stock"]) == {"schema": "ledger"}


def test_docker_compose_provisions_these_files() -> None:
    compose = yaml.safe_load((GRAFANA_DIR.parent / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    assert "SALESLEDGER_REPORTING_PASSWORD" in compose["services"]["grafana"]["environment"]
