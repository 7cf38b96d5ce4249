"""Key guessing (issue 12): bad keys are throttled per address, retried ones cost no query, known keys still work."""
from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.conftest import wait_for_logs
from tests.servers import Gateway


def test_an_address_that_guesses_keys_is_throttled_and_every_attempt_leaves_its_row(
        start_gateway: Callable[..., Gateway], active_key: str) -> None:
    gateway = start_gateway(GATEWAY_AUTH_FAILURES_PER_MINUTE="5", GATEWAY_ROUTING_TTL="60")

    def models(key: str) -> httpx.Response:
        return httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=30)

    assert models(active_key).status_code == 200  # known to the process from now on
    # The budget is a fixed window of a minute: guesses that straddle its end start a new count.
    if time.time() % 60 > 45:
        time.sleep(60.5 - time.time() % 60)
    guesses = [models(f"sk-cgw-guess-{n:04d}") for n in range(12)]
    assert [g.status_code for g in guesses] == [401] * 5 + [429] * 7
    assert all(int(g.headers["retry-after"]) >= 1 for g in guesses[5:])
    assert all("guess" not in g.text for g in guesses)
    assert models(active_key).status_code == 200  # a key the process knows is still served from there
    rows = wait_for_logs(14)
    assert len(rows) == 14 and [row.status for row in rows].count(429) == 7


def test_a_key_in_the_query_string_reaches_no_log(start_gateway: Callable[..., Gateway], active_key: str) -> None:
    """daphne writes its access log itself, past the redacting filter: the query is cut from its lines."""
    gateway = start_gateway()
    leaked = "sk-cgw-pasted-into-the-url-0123456789"
    answers = [httpx.get(f"{gateway.url}{path}?api_key={leaked}", headers={"authorization": f"Bearer {active_key}"})
               for path in ("/v1/models", "/healthz", "/logs/")]
    assert [a.status_code for a in answers] == [200, 200, 302]
    gateway.stop()  # daphne's stdout is flushed at exit
    log = gateway.log_path.read_text()
    assert '"GET /v1/models?…" 200' in log and '"GET /healthz?…" 200' in log  # the lines are there
    assert leaked not in log and "api_key" not in log
