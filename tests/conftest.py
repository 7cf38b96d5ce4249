"""Fixtures: real daphne servers (gateway, mock upstream) and persona data (keys, upstreams)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from logs.models import RequestLog
from plumbing import dbthread
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream

# tests/real/ runs against a llama.cpp server that `make test-real` builds (about 20 minutes, once):
# collected only there, never by `make test`.
collect_ignore = [] if os.environ.get("GATEWAY_TEST_REAL") else ["real"]

DB_FIXTURES = {"db", "transactional_db", "django_db_setup", "gateway", "start_gateway"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that touches the database, so `-m database` reruns them on PostgreSQL."""
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("django_db"):
            item.add_marker(pytest.mark.database)


def database_url() -> str:
    """Return the URL of the test database, for servers started in other processes."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test database, with the database threads' kept connections closed before it is dropped.

    In-process tests of the routing copy and the audit writer use those threads; an
    open connection would stop PostgreSQL from dropping the database.
    """
    yield
    dbthread.close_connections()


@pytest.fixture(scope="session")
def mock() -> Iterator[MockUpstream]:
    server = MockUpstream("scripted")
    yield server
    server.stop()


@pytest.fixture
def scripted(mock: MockUpstream) -> MockUpstream:
    """The mock upstream, reset: each test scripts its own answers."""
    mock.use("scripted")
    return mock


@pytest.fixture(scope="session")
def session_gateway(django_db_setup: None, django_db_blocker: Any) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        url = database_url()
    server = Gateway(url)
    yield server
    server.stop()


@pytest.fixture
def gateway(session_gateway: Gateway, transactional_db: None) -> Iterator[Gateway]:
    """The gateway under daphne, shared by the session; settled after each test, before the database is flushed."""
    yield session_gateway
    session_gateway.settle()


@pytest.fixture
def start_gateway(transactional_db: None, django_db_blocker: Any) -> Iterator[Callable[..., Gateway]]:
    """Start another gateway process with its own environment (stopped after the test)."""
    started: list[Gateway] = []

    def start(**env: str) -> Gateway:
        with django_db_blocker.unblock():
            url = database_url()
        started.append(Gateway(url, env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def active_key(transactional_db: None) -> str:
    """Alice's client key, as the raw secret a client sends."""
    _, secret = ClientKey.objects.create_key("alice")
    return secret


@pytest.fixture
def revoked_key(transactional_db: None) -> str:
    _, secret = ClientKey.objects.create_key("mallory", active=False)
    return secret


@pytest.fixture
def chat_upstream(transactional_db: None, scripted: MockUpstream) -> Upstream:
    """A Chat-Completions-only catch-all upstream, served by the scripted mock."""
    return Upstream.objects.create(name="chat-mock", base_url=scripted.base_url, api_key="sk-upstream-SECRET-123")


@pytest.fixture
def responses_upstream(transactional_db: None, scripted: MockUpstream) -> Upstream:
    return Upstream.objects.create(name="responses-mock", base_url=scripted.url, supports_responses=True,
                                   api_key="sk-upstream-SECRET-456")


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def pair(start_gateway: Callable[..., Gateway], tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateway processes on the machine's Redis (cache, channel layer) and one metrics directory."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {"REDIS_URL": REDIS_URL, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    yield start_gateway(**env), start_gateway(**env)
    redis.Redis.from_url(REDIS_URL).flushdb()


def wait_for_log(request_id: str, timeout: float = 10.0) -> RequestLog:
    """Return the audit row of a request; rows are written just after the response ends."""
    deadline = time.monotonic() + timeout
    while True:
        row = RequestLog.objects.filter(request_id=request_id).first()
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"no audit row for {request_id}"
            return row
        time.sleep(0.02)


def wait_for_logs(count: int, timeout: float = 10.0) -> list[RequestLog]:
    """Return the audit rows once there are ``count`` of them, oldest first."""
    deadline = time.monotonic() + timeout
    while RequestLog.objects.count() < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(RequestLog.objects.order_by("started"))
