"""Session-wide test set-up: profile ``test`` and fixtures for the real local stack.

``SALESLEDGER_PROFILE=test`` is forced for the whole session, so tests use the databases
``sales_test`` / ``accounting_test`` and the topic prefix ``sltest``: `make test` never touches
the demo's data. Every test marked ``@pytest.mark.stack`` first checks that the stack is
healthy and FAILS (never skips) when it is not (`make test` runs `salesledger stack up` first).

Fixtures:

- ``settings`` — the frozen :class:`salesledger.config.Settings` of profile test.
- ``pg_connect(database="sales", role="owner", autocommit=True)`` — a psycopg connection to a
  database kind ("sales" | "accounting" of this profile) or literal name, as a role kind
  (owner | cdc | sink | reporting | admin); closed after the test.
- ``kafka_admin`` — a confluent-kafka ``AdminClient`` on the stack's broker.
- ``fresh_topic(label="t", partitions=1, config=None)`` — creates ``sltest.<label>.<uuid>``,
  returns its name; deleted after the test.
- ``consumer_group(label="g")`` — a unique group id ``sltest-<label>-<uuid>``; deleted after.
- ``stack_healthy`` — session-scoped; the status rows, after asserting every required service
  is healthy.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Callable, Iterator

import pytest

os.environ["SALESLEDGER_PROFILE"] = "test"

from salesledger.config import Settings, get_settings, reset_settings_cache  # noqa: E402

if TYPE_CHECKING:
    import psycopg

_ADMIN_TIMEOUT_S = 30.0


def unique_suffix() -> str:
    """Eight hex characters, unique enough for names within one stack."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def settings() -> Settings:
    reset_settings_cache()
    value = get_settings()
    assert value.profile == "test", "tests must run with the test profile"
    return value


@pytest.fixture(scope="session")
def stack_healthy(settings: Settings):
    from salesledger.cli.stack import status_table
    from salesledger.stack import manager
    from rich.console import Console

    rows = manager.status(settings)
    if not manager.all_healthy(rows):
        console = Console(width=160, record=True)
        console.print(status_table(rows))
        pytest.fail("the local stack is not healthy (run `salesledger stack up`):\n"
                    + console.export_text(), pytrace=False)
    return rows


@pytest.fixture(autouse=True)
def _stack_guard(request: pytest.FixtureRequest) -> None:
    """Tests marked ``stack`` need a healthy stack; a missing service fails them."""
    if request.node.get_closest_marker("stack") is not None:
        request.getfixturevalue("stack_healthy")


@pytest.fixture
def pg_connect(settings: Settings) -> Iterator[Callable[..., "psycopg.Connection"]]:
    import psycopg

    opened: list[psycopg.Connection] = []

    def connect(database: str = "sales", role: str = "owner",
                autocommit: bool = True) -> psycopg.Connection:
        conn = psycopg.connect(**settings.conninfo(database, role), autocommit=autocommit,
                               connect_timeout=10)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture(scope="session")
def kafka_admin(settings: Settings):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


@pytest.fixture
def fresh_topic(settings: Settings, kafka_admin) -> Iterator[Callable[..., str]]:
    from confluent_kafka.admin import NewTopic

    created: list[str] = []

    def make(label: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{settings.topic_prefix}.{label}.{unique_suffix()}"
        future = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1,
                      config=config or {})], operation_timeout=_ADMIN_TIMEOUT_S)[name]
        future.result(timeout=_ADMIN_TIMEOUT_S)
        created.append(name)
        return name

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=_ADMIN_TIMEOUT_S).values():
            try:
                future.result(timeout=_ADMIN_TIMEOUT_S)
            except Exception:  # already gone (a test may delete its own topic)
                pass


@pytest.fixture
def consumer_group(settings: Settings, kafka_admin) -> Iterator[Callable[..., str]]:
    groups: list[str] = []

    def make(label: str = "g") -> str:
        group = f"{settings.topic_prefix}-{label}-{unique_suffix()}"
        groups.append(group)
        return group

    yield make
    if groups:
        for future in kafka_admin.delete_consumer_groups(groups, request_timeout=_ADMIN_TIMEOUT_S).values():
            try:
                future.result(timeout=_ADMIN_TIMEOUT_S)
            except Exception:  # never joined, or still has members
                pass
