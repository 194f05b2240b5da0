"""A stack dir deleted and made again at the same path gets a working PostgreSQL.

As root the cluster lives outside the stack dir (``/var/lib/postgresql/salesledger/<name>-<hash
of the stack dir's path>``), so it outlives a deleted checkout while the passwords in
``<stack_dir>/secrets`` do not. CI clones to the same path every time and on 2026-12-08 found the
previous clone's cluster: "password authentication failed for user sl_admin", red CI. The new
stack dir must set the orphan aside (kept once, as ``<home>.orphaned``) and make its own cluster.
As a normal user the cluster lives inside the stack dir; the same steps must work there too.

Runs PostgreSQL alone (the service class ``stack up`` drives) on its own port and stack dir.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from salesledger.config import Settings
from salesledger.stack import process
from salesledger.stack.postgres import PostgresService, _as_root

PORT_OFFSET = 300
START_TIMEOUT_S = 120.0


def _service(main: Settings, stack_dir: Path) -> PostgresService:
    # A new Settings reads (or, for a new stack dir, generates) <stack_dir>/secrets.
    return PostgresService(Settings(profile="test", stack_dir=stack_dir,
                                    pg_port=main.pg_port + PORT_OFFSET))


def _start(service: PostgresService) -> None:
    service.preflight()
    service.prepare()
    proc = service.start()
    service.wait_healthy(proc, START_TIMEOUT_S, check=service.ready)


def _marker_tables(service: PostgresService) -> list[str]:
    with service.connect_admin() as conn:
        return [name for name, in conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'orphan_marker%'")]


@pytest.mark.stack
def test_stack_dir_made_again_at_same_path_sets_old_cluster_aside(settings, tmp_path):
    stack_dir = tmp_path / "checkout" / ".stack"
    port = settings.pg_port + PORT_OFFSET
    assert not process.port_in_use(settings.host, port), f"port {port} is in use"
    first = _service(settings, stack_dir)
    homes = {first.cluster_home, first.orphan_home}
    try:
        _start(first)
        with first.connect_admin() as conn:
            conn.execute("CREATE TABLE orphan_marker_1 (v int)")
        first.stop()
        old_password = first.settings.password("admin").get_secret_value()

        for round_no in (2, 3):
            shutil.rmtree(stack_dir)  # the checkout is gone, credentials with it
            again = _service(settings, stack_dir)
            assert again.settings.password("admin").get_secret_value() != old_password
            _start(again)  # before the fix: admin login failed, `stack up` timed out
            assert _marker_tables(again) == [], "the new stack dir must get its own cluster"
            if _as_root():
                assert again.notices and "moved it to" in again.notices[0], again.notices
                assert (again.orphan_home / "data" / "PG_VERSION").exists()
                siblings = sorted(p.name for p in again.cluster_home.parent.iterdir()
                                  if p.name.startswith(again.cluster_home.name))
                assert siblings == [again.cluster_home.name, again.orphan_home.name], siblings
            else:
                assert again.notices == []
            with again.connect_admin() as conn:
                conn.execute(f"CREATE TABLE orphan_marker_{round_no} (v int)")
            again.stop()
            old_password = again.settings.password("admin").get_secret_value()

        # The same stack dir keeps its cluster: no orphan step when the link is there.
        same = _service(settings, stack_dir)
        _start(same)
        assert _marker_tables(same) == ["orphan_marker_3"]
        assert same.notices == []
        same.stop()
    finally:
        # Every round used the same cluster home: stop a server a failed round left running.
        pid = process.read_pid(first.data_dir / "postmaster.pid")
        if pid is not None and str(first.data_dir) in process.cmdline(pid):
            process.stop_pid(pid, timeout_s=60.0)
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
