"""The CI check on the Avro contracts in schemas/: each version backward compatible with the
previous one, decimals with explicit precision and scale, the contracts mirror the model."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest

from salesledger.ledger import model as m
from salesledger.resources import resource_path
from salesledger.streams.serde import SchemaCatalog, SchemaVersion, compatibility_problems

SCHEMAS = resource_path("schemas")
CATALOG = SchemaCatalog.from_directory(SCHEMAS)


def test_catalog_holds_every_contract():
    assert {"dead_letter", "journal_entry", "metric_aggregate", "receivable_update",
            "sales_document", "stock_movement"} <= set(CATALOG.subjects)
    for subject in CATALOG.subjects:
        latest = CATALOG.latest(subject)
        assert latest.full_name.startswith("salesledger.")
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", latest.full_name.split(".")[1]).lower()
        assert snake.startswith(subject.split("_")[0]), (subject, latest.full_name)


@pytest.mark.parametrize("subject", CATALOG.subjects)
def test_each_version_reads_data_of_the_previous(subject):
    versions = CATALOG.versions(subject)
    assert versions[0].version == 1
    for old, new in zip(versions, versions[1:]):
        assert compatibility_problems(old, new) == [], f"{subject} v{old.version}->v{new.version}"
    # every version can at least read its own samples (the check's empirical half runs)
    assert compatibility_problems(versions[-1], versions[-1], samples=5) == []


def _decimals(schema, path="$"):
    if isinstance(schema, list):
        for branch in schema:
            yield from _decimals(branch, path)
    elif isinstance(schema, dict):
        if schema.get("logicalType") == "decimal":
            yield path, schema
        for field in schema.get("fields", ()):
            yield from _decimals(field["type"], f"{path}.{field['name']}")
        for key in ("items", "values"):
            if key in schema:
                yield from _decimals(schema[key], f"{path}[]")
        if isinstance(schema.get("type"), dict | list):
            yield from _decimals(schema["type"], path)


_EXPECTED_SCALE = {  # conventions stated in serde's module doc and each schema's doc
    "qty": 4, "unit_price": 4, "unit_cost": 4, "vat_rate": 4, "discount_percent": 4,
    "exchange_rate": 6, "rate": 6,  # rate: exchange_rate.v1's (the engine's ExchangeRate.rate)
}


def test_every_decimal_has_explicit_precision_and_scale():
    seen = 0
    for path in sorted(SCHEMAS.glob("*.avsc")):
        for where, dec in _decimals(json.loads(path.read_text())):
            seen += 1
            assert dec["type"] == "bytes" and "precision" in dec and "scale" in dec, where
            name = where.rsplit(".", 1)[-1].rstrip("[]")
            assert dec["scale"] == _EXPECTED_SCALE.get(name, 2), f"{path.name} {where}"
            assert dec["precision"] == (7 if name in ("vat_rate", "discount_percent") else 18)
    assert seen >= 15


def _field_names(version: SchemaVersion, *path: str) -> set[str]:
    schema = version.schema
    for step in path:
        field = next(f for f in schema["fields"] if f["name"] == step)
        schema = field["type"]
        if isinstance(schema, list):
            schema = next(b for b in schema if isinstance(b, dict))
        if schema.get("type") == "array":
            schema = schema["items"]
    return {f["name"] for f in schema["fields"]}


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_output_contracts_mirror_the_model():
    je = CATALOG.latest("journal_entry")
    assert _field_names(je) == _names(m.JournalEntry)
    assert _field_names(je, "lines") == _names(m.JournalLine)
    assert _field_names(je, "document") == _names(m.DocumentRef)
    assert _field_names(je, "document", "source") == _names(m.SourcePosition)
    assert _field_names(CATALOG.latest("stock_movement")) == _names(m.StockMovement)
    assert _field_names(CATALOG.latest("receivable_update")) == _names(m.ReceivableUpdate)


def test_sales_document_contract_mirrors_the_model():
    doc = CATALOG.latest("sales_document")
    body = next(f for f in doc.schema["fields"] if f["name"] == "body")["type"]
    bodies = {b["name"]: b for b in body if isinstance(b, dict)}
    common = _names(m.Document) - {"id", "version", "source"}
    assert common <= _field_names(doc)
    for record, cls in [("InvoiceBody", m.Invoice), ("PaymentBody", m.Payment),
                        ("ReturnBody", m.SalesReturn), ("GoodsReceiptBody", m.GoodsReceipt),
                        ("WriteOffBody", m.WriteOff), ("OpeningBalanceBody", m.OpeningBalance)]:
        assert {f["name"] for f in bodies[record]["fields"]} == _names(cls) - _names(m.Document)
    enum = next(f for f in doc.schema["fields"] if f["name"] == "document_type")["type"]
    assert set(enum["symbols"]) == set(m.DOCUMENT_CLASSES)
    line = next(f for f in bodies["InvoiceBody"]["fields"] if f["name"] == "lines")["type"]["items"]
    assert {f["name"] for f in line["fields"]} == _names(m.InvoiceLine)
    ref = next(f for f in bodies["OpeningBalanceBody"]["fields"] if f["name"] == "invoices")["type"]["items"]
    assert {f["name"] for f in ref["fields"]} == _names(m.OpeningInvoice)
    ref_line = next(f for f in ref["fields"] if f["name"] == "lines")["type"]["items"]
    assert {f["name"] for f in ref_line["fields"]} == _names(m.OpeningInvoiceLine)


# ----------------------------------------------------------- the check itself can fail
def _pair(tmp_path: Path, change) -> tuple[SchemaVersion, SchemaVersion]:
    v1 = json.loads((SCHEMAS / "journal_entry.v1.avsc").read_text())
    v2 = copy.deepcopy(v1)
    change(v2)
    return (SchemaVersion.from_schema("journal_entry", 1, v1),
            SchemaVersion.from_schema("journal_entry", 2, v2))


def _line(schema):
    return next(f for f in schema["fields"] if f["name"] == "lines")["type"]["items"]


@pytest.mark.parametrize("change, expected", [
    (lambda s: s["fields"].append({"name": "memo", "type": "string"}), "added without a default"),
    (lambda s: _line(s)["fields"][1]["type"].update(scale=3), "scale changed 2 -> 3"),
    (lambda s: _line(s)["fields"][1]["type"].update(precision=12), "precision lowered"),
    (lambda s: s["fields"][0].update(type="int"), "unreadable"),
    (lambda s: s.update(name="Entry"), "renamed"),
])
def test_compatibility_check_catches_breaking_changes(tmp_path, change, expected):
    old, new = _pair(tmp_path, change)
    problems = compatibility_problems(old, new, samples=10)
    assert any(expected in p for p in problems), problems


def test_compatibility_check_accepts_defaults_and_removals(tmp_path):
    def evolve(s):
        s["fields"].append({"name": "memo", "type": "string", "default": ""})
        s["fields"] = [f for f in s["fields"] if f["name"] != "original_currency"]
        _line(s)["fields"][1]["type"].update(precision=20)  # widen: amounts unchanged
    old, new = _pair(tmp_path, evolve)
    assert compatibility_problems(old, new, samples=20) == []


def test_schemas_check_command_exit_codes(tmp_path):
    from typer.testing import CliRunner

    from salesledger.cli.schemas import app

    runner = CliRunner()
    assert runner.invoke(app, ["check", "--samples", "5"]).exit_code == 0
    v1 = json.loads((SCHEMAS / "journal_entry.v1.avsc").read_text())
    (tmp_path / "journal_entry.v1.avsc").write_text(json.dumps(v1))
    v1["fields"].append({"name": "memo", "type": "string"})
    (tmp_path / "journal_entry.v2.avsc").write_text(json.dumps(v1))
    result = runner.invoke(app, ["check", "--dir", str(tmp_path), "--samples", "5"])
    assert result.exit_code == 1 and "memo: added without a default" in result.output
    listing = runner.invoke(app, ["list", "--dir", str(tmp_path)])
    assert listing.exit_code == 0 and listing.output.count("salesledger.JournalEntry") == 2
