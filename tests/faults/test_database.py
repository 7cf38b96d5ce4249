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
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import waiting
from tests.servers import ROOT, Gateway, MockUpstream

SERVER = "postgres://postgres@127.0.0.1:5432"


def admin(sql: str, *params: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
        connection.execute(sql, params)  # type: ignore[arg-type]


def count_rows(url: str) -> list[str]:
    """The request ids of the audit rows, in the order they were written."""
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute("SELECT request_id FROM upstreams_requestlog ORDER BY id")]


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


def seed(url: str, mock: MockUpstream) -> tuple[str, str]:
    """An upstream on the mock and two keys: one the gateway will have seen, one it will not."""
    mock.use("scripted")
    mock.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    manage(url, "shell", "-c", "from upstreams.models import Upstream; "
           f"Upstream.objects.create(name='mock', base_url='{mock.base_url}')")
    return manage(url, "createapikey", "known"), manage(url, "createapikey", "unseen")


def wait_for_rows(url: str, count: int, timeout: float = 30.0) -> list[str]:
    def rows() -> list[str] | None:
        found = count_rows(url)
        return found if len(found) >= count else None

    return waiting.until(rows, f"{count} audit rows", timeout, interval=0.1)


def test_known_keys_are_served_through_an_outage_and_every_row_is_written_once_it_ends(
        own_database: tuple[str, str], mock: MockUpstream) -> None:
    name, url = own_database
    known, unseen = seed(url, mock)
    # Ten rows in memory at most: the rest of the outage's rows wait in the journal only.
    gateway = Gateway(url, {"GATEWAY_ROUTING_TTL": "0.2", "GATEWAY_AUDIT_MEMORY_ROWS": "10"})
    try:
        def ask(key: str) -> httpx.Response:
            return httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {key}"},
                              json={"model": "m", "input": "hi", "store": False}, timeout=30)

        answers = [ask(known) for _ in range(5)]
        take_away(name)
        during = []
        ends = time.monotonic() + 1.0  # five routing TTLs: the copy is due again and again
        # And more rows than the ten kept in memory, however slow a busy machine answers.
        while time.monotonic() < ends or len(during) <= 10:
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
        rows = wait_for_rows(url, len(sent))
        assert len(during) > 10  # some were read back from the journal
        assert sorted(rows) == sorted(ids)  # each exactly once
        assert rows == [a.headers["x-request-id"] for a in sent]  # in order
    finally:
        gateway.stop()


def test_rows_of_a_process_killed_during_an_outage_are_written_by_the_next_one_once(
        own_database: tuple[str, str], mock: MockUpstream, tmp_path: Path) -> None:
    """Finished, answered, not yet written when SIGKILL came: the next process writes them from the journal."""
    name, url = own_database
    known, _ = seed(url, mock)
    env = {"GATEWAY_ROUTING_TTL": "60", "GATEWAY_JOURNAL_DIR": str(tmp_path / "journal")}
    first = Gateway(url, env)
    second = None
    try:
        def ask(gateway: Gateway) -> httpx.Response:
            return httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {known}"},
                              json={"model": "m", "input": "hi", "store": False}, timeout=30)

        before = [ask(first) for _ in range(5)]
        wait_for_rows(url, 5)
        take_away(name)
        during = [ask(first) for _ in range(40)]
        first.process.kill()  # SIGKILL: its 40 rows were only in memory and in its journal
        first.process.wait(10)
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert len(count_rows(url)) == 5
        second = Gateway(url, env)
        sent = [*before, *during]
        assert [a.status_code for a in sent] == [200] * len(sent)
        rows = wait_for_rows(url, len(sent))
        second.settle()  # nothing left to write: a second recovery would have been
        assert sorted(count_rows(url)) == sorted(a.headers["x-request-id"] for a in sent)  # each exactly once
        assert "40 finished, 0 interrupted" in second.log()
        assert len(rows) == 45
    finally:
        first.stop()
        if second is not None:
            second.stop()
