"""Fixtures: real daphne servers (gateway, mock upstream) and persona data (keys, upstreams); the test kinds.

Every test is one of three kinds, marked at collection: ``pure`` (no database, no other
process), ``in_process`` (the database, on this process's event loops and threads) and
``processes`` (it starts servers or programs). ``make test-fast`` runs the first two; a
test that starts a process without being marked so fails there (``_no_processes``).
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from logs.models import RequestLog
from plumbing import dbthread
from tests import waiting
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream

# tests/real/ runs against a llama.cpp server that `make test-real` builds (about 20 minutes, once):
# collected only there, never by `make test`.
collect_ignore = [] if os.environ.get("GATEWAY_TEST_REAL") else ["real"]

DB_FIXTURES = {"db", "transactional_db", "django_db_setup", "gateway", "start_gateway"}
# Fixtures that start another process: a gateway, the mock upstream, a redis-server of a test's own,
# `manage.py serve` (tests/upstreams/test_serve.py), a demo mock of a module's own, llama-server.
PROCESS_FIXTURES = {"mock", "session_gateway", "start_gateway", "private_redis", "served", "demo", "demo_mock",
                    "llama"}
KINDS = ("pure", "in_process", "processes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its kind, and the ones that touch the database (rerun on PostgreSQL with `-m database`).

    A test that starts a process without one of PROCESS_FIXTURES says so itself
    (``pytest.mark.processes`` on it or its module).
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        database = bool(DB_FIXTURES & fixtures) or item.get_closest_marker("django_db") is not None
        if database:
            item.add_marker(pytest.mark.database)
        if PROCESS_FIXTURES & fixtures or item.get_closest_marker("processes"):
            kind = "processes"
        else:
            kind = "in_process" if database else "pure"
        item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(autouse=True)
def _no_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test of the fast kinds that starts a process: it belongs with the ``processes`` tests."""
    if request.node.get_closest_marker("processes"):
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process: mark it pytest.mark.processes")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


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
    return Upstream.objects.create(name="responses-mock", base_url=scripted.url, api="responses",
                                   api_key="sk-upstream-SECRET-456")


def _redis_url() -> str:
    """The machine's Redis for the tests (TEST_REDIS_URL), one database per xdist worker: they flush their own."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base, _, number = url.rpartition("/")
    return f"{base}/{(int(number or 0) - int(worker.removeprefix('gw'))) % 16}"


REDIS_URL = _redis_url()


@pytest.fixture
def pair(start_gateway: Callable[..., Gateway], tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateway processes on the machine's Redis (cache, channel layer) and one metrics directory."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {"REDIS_URL": REDIS_URL, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    yield start_gateway(**env), start_gateway(**env)
    redis.Redis.from_url(REDIS_URL).flushdb()


def wait_for_log(request_id: str, timeout: float = 10.0) -> RequestLog:
    """Return the audit row of a request; rows are written just after the response ends."""
    return waiting.until(lambda: RequestLog.objects.filter(request_id=request_id).first(),
                         f"the audit row of {request_id}", timeout)


def wait_for_logs(count: int, timeout: float = 10.0) -> list[RequestLog]:
    """Return the audit rows once there are ``count`` of them, oldest first (all there are, after ``timeout``)."""
    try:
        waiting.until(lambda: RequestLog.objects.count() >= count, f"{count} audit rows", timeout)
    except waiting.WaitTimeout:
        pass  # the caller's assertions say what is missing
    return list(RequestLog.objects.order_by("started"))
