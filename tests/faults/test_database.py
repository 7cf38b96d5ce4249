"""PostgreSQL taken away and given back (issue 12): the API keeps serving known keys, and no audit row is lost.

The test makes a PostgreSQL database of its own (the machine's server, 127.0.0.1:5432),
runs a gateway on it, and takes only that database away: ``ALTER DATABASE ...
ALLOW_CONNECTIONS false`` and ``pg_terminate_backend`` on that database's connections.
It counts what it sent, what was answered and what was recorded once the database is back.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.servers import ROOT, Gateway, MockUpstream

SERVER = "postgres://postgres@127.0.0.1:5432"


def admin(sql: str, *params: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
        connection.execute(sql, params)  # type: ignore[arg-type]


def count_rows(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute("SELECT request_id FROM upstreams_requestlog")]


def manage(url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "DATABASE_URL": url})
    return done.stdout.strip()


@pytest.fixture
def own_database() -> Iterator[tuple[str, str]]:
    name = f"fault_{secrets.token_hex(4)}"
    admin(f'CREATE DATABASE "{name}"')
    url = f"{SERVER}/{name}"
    try:
        manage(url, "migrate", "-v", "0")
        yield name, url
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", name)
        admin(f'DROP DATABASE "{name}"')


def take_away(name: str) -> None:
    admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", name)


def test_known_keys_are_served_through_an_outage_and_every_row_is_written_once_it_ends(
        own_database: tuple[str, str], mock: MockUpstream) -> None:
    name, url = own_database
    mock.use("scripted")
    mock.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    manage(url, "shell", "-c", "from upstreams.models import Upstream; "
           f"Upstream.objects.create(name='mock', base_url='{mock.base_url}')")
    known, unseen = manage(url, "createapikey", "known"), manage(url, "createapikey", "unseen")
    gateway = Gateway(url, {"GATEWAY_ROUTING_TTL": "0.2"})
    try:
        def ask(key: str) -> httpx.Response:
            return httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {key}"},
                              json={"model": "m", "input": "hi", "store": False}, timeout=30)

        answers = [ask(known) for _ in range(5)]
        take_away(name)
        during = []
        ends = time.monotonic() + 1.0  # five routing TTLs: the copy is due again and again
        while time.monotonic() < ends:
            during.append(ask(known))
        refused = ask(unseen)
        ready = httpx.get(f"{gateway.url}/readyz", timeout=30)
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

        assert [a.status_code for a in answers] == [200] * 5
        assert [a.status_code for a in during] == [200] * len(during) and len(during) >= 5
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "database_unavailable"
        assert ready.status_code == 503 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["routing"].startswith("degraded")
        sent = [*answers, *during, refused]
        ids = {a.headers["x-request-id"] for a in sent}
        deadline = time.monotonic() + 30
        while len(rows := count_rows(url)) < len(sent):
            assert time.monotonic() < deadline, f"{len(sent) - len(rows)} of {len(sent)} audit rows lost"
            time.sleep(0.1)
        assert sorted(rows) == sorted(ids)  # each exactly once
    finally:
        gateway.stop()
