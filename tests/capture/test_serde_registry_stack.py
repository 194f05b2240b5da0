"""Confluent framing against the running schema registry (Apicurio, /apis/ccompat/v7): encode
registers the writer schema and frames 0x00 + id; a fresh reader resolves the id, finds the
catalog version by fingerprint and reads with the newest version (CDC-22)."""

from __future__ import annotations

import dataclasses
import struct
import urllib.request
import uuid
from decimal import Decimal

import pytest

from salesledger.streams.serde import AvroSerde, HttpRegistryClient, SchemaCatalog, UnknownSchema
from tests.capture.test_serde import _evolved_catalog, entry

pytestmark = pytest.mark.stack


@pytest.fixture
def registry(settings):
    """The registry client and a subject prefix of this test; its subjects deleted after."""
    prefix = f"sltest-{uuid.uuid4().hex[:8]}-"
    yield HttpRegistryClient(settings.registry_url), prefix
    with urllib.request.urlopen(f"{settings.registry_url}/subjects", timeout=30) as reply:
        import json

        subjects = [s for s in json.loads(reply.read()) if s.startswith(prefix)]
    for subject in subjects:
        for permanent in ("false", "true"):
            request = urllib.request.Request(
                f"{settings.registry_url}/subjects/{subject}?permanent={permanent}", method="DELETE")
            urllib.request.urlopen(request, timeout=30).read()


def test_CDC_22_confluent_framing_through_the_real_registry(settings, registry, tmp_path):
    client, prefix = registry
    serde = AvroSerde(SchemaCatalog.from_directory(), registry=client, subject_prefix=prefix)
    data = serde.encode("journal_entry", dataclasses.asdict(entry(debit=Decimal("0.10"),
                                                                  vat=Decimal("0.02"))))
    assert data[0] == 0
    schema_id = struct.unpack(">I", data[1:5])[0]
    assert serde.encode("journal_entry", dataclasses.asdict(entry()))[1:5] == data[1:5]  # same id

    fresh = AvroSerde(SchemaCatalog.from_directory(),
                      registry=HttpRegistryClient(settings.registry_url))  # empty cache
    writer, start = fresh.writer_of(data)
    assert (writer.subject, writer.version, start) == ("journal_entry", 1, 5)  # by fingerprint
    assert [ln["debit"] for ln in fresh.decode(data)["lines"]] == [
        Decimal("0.10"), Decimal("0.00"), Decimal("0.00")]

    # an older writer version registered, read with the newer reader: defaults apply
    evolved = _evolved_catalog(tmp_path)
    old_writer = AvroSerde(evolved, registry=client, subject_prefix=prefix + "evolved-")
    old_bytes = old_writer.encode_with(evolved.versions("journal_entry")[0],
                                       dataclasses.asdict(entry()))
    reader = AvroSerde(evolved, registry=HttpRegistryClient(settings.registry_url))
    decoded = reader.decode(old_bytes, "journal_entry")
    assert decoded["memo"] == "" and decoded["fx_gain"] == Decimal("0.00")
    assert decoded["lines"][0]["debit"] == Decimal("11.80")

    with pytest.raises(UnknownSchema):
        fresh.decode(b"\x00" + struct.pack(">I", schema_id + 100_000) + data[5:])


def test_for_settings_registers_every_subject_and_frames_with_the_registry_ids(settings):
    from salesledger.config import Settings
    from salesledger.streams.serde import fingerprint64

    serde = AvroSerde.for_settings(Settings(profile="test", serde="registry"))
    assert serde.framing == "confluent"
    import json

    with urllib.request.urlopen(f"{settings.registry_url}/subjects", timeout=30) as reply:
        subjects = set(json.loads(reply.read()))
    catalog = serde.catalog
    assert {catalog.latest(s).full_name for s in catalog.subjects} <= subjects  # record names
    data = serde.encode("journal_entry", dataclasses.asdict(entry()))
    (schema_id,) = struct.unpack(">I", data[1:5])
    assert data[0] == 0
    with urllib.request.urlopen(f"{settings.registry_url}/schemas/ids/{schema_id}",
                                timeout=30) as reply:
        stored = json.loads(json.loads(reply.read())["schema"])
    assert fingerprint64(stored) == catalog.latest("journal_entry").fingerprint

    # an id the registry lacks: UnknownSchema (dead letter), asked once, then remembered
    missing = schema_id + 100_000
    for _ in range(3):
        with pytest.raises(UnknownSchema, match=f"unknown schema id {missing}"):
            serde.decode(b"\x00" + struct.pack(">I", missing) + data[5:])
    assert missing in serde.registry._missing  # noqa: SLF001 (negative cache)


def test_a_worker_with_serde_registry_fails_loudly_when_the_registry_is_down():
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        env = {**os.environ, "SALESLEDGER_PROFILE": "test", "SALESLEDGER_SERDE": "registry",
               "SALESLEDGER_REGISTRY_PORT": str(port)}
        done = subprocess.run([sys.executable, "-m", "salesledger.streams.worker", "posting"],
                              env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert "SALESLEDGER_SERDE=registry but the schema registry is unreachable" in done.stderr
