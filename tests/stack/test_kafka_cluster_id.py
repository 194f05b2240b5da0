"""The KRaft cluster id: a first start formats the storage whatever id the stack dir holds.

Ids are URL-safe base64, so one in 64 started with "-"; passed as ``--cluster-id -Vi...`` the
storage tool read it as an option and the first `stack up` of that stack dir failed ("argument
--cluster-id/-t: expected one argument", seen on 2026-12-08). New ids never start with "-", and
an id that does (an existing stack dir's) is passed as ``--cluster-id=ID``.
"""

from __future__ import annotations

import pytest

from salesledger.config import Settings
from salesledger.stack.kafka import KafkaService, _new_cluster_id

LEADING_DASH_ID = "-ViYbrpcThqE-8ApLaI8FA"  # the id of the failed start


def test_new_cluster_ids_never_start_with_a_dash():
    ids = [_new_cluster_id() for _ in range(5_000)]  # ~78 would start with "-" by chance
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.stack
def test_storage_formats_with_an_id_that_starts_with_a_dash(settings, tmp_path):
    # only the storage tool runs (the shared jars, no broker): prepare() formats on first start
    service = KafkaService(Settings(profile="test", stack_dir=tmp_path / "stack",
                                    jars_dir=settings.lib_dir))
    service.home.mkdir(parents=True)
    (service.home / "cluster.id").write_text(LEADING_DASH_ID + "\n")
    service.prepare()
    meta = (service.data_dir / "meta.properties").read_text()
    assert f"cluster.id={LEADING_DASH_ID}" in meta, meta
