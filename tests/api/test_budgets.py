"""Token and dollar budgets on keys and teams, through real daphne processes on the database and Redis.

Every request's mock answer reports 200 input and 100 output tokens (300 in all); its body is
about 1,200 bytes and asks for at most 100 output tokens, so each holds about 400 tokens
while it runs (more than it spends: the in-flight bound is then one request's use).
"""
from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from logs.models import RequestLog
from tests import waiting
from tests.api.test_sockets import create, socket
from tests.conftest import wait_for_log, wait_for_logs
from tests.servers import Gateway, MockUpstream, admin_session
from upstreams.models import ClientKey, Price, Team, Upstream

USED = {"prompt_tokens": 200, "completion_tokens": 100, "total_tokens": 300}
ANSWER = {"chunks": [{"text": "hi"}, {"finish": "stop"}, {"usage": USED}]}
PADDING = "x" * 1000


def body(model: str = "m", *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": f"hi {PADDING}"}]}


def post(gateway: Gateway, secret: str, model: str = "m") -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                      json=body(model), timeout=30)


def next_midnight(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def served(transactional_db: None, scripted: MockUpstream) -> MockUpstream:
    Upstream.objects.create(name="local", base_url=scripted.base_url)
    scripted.script(ANSWER)
    return scripted


def test_a_token_budget_is_reached_one_request_at_a_time_across_processes(
        pair: tuple[Gateway, Gateway], served: MockUpstream) -> None:
    """Spent 0, 300, 600, 900 of 1,000: let in; spent 1,200: refused until midnight UTC, nothing sent upstream."""
    _, secret = ClientKey.objects.create_key("ci", token_budget=1000, budget_period="day")
    a, b = pair
    answers = [post(server, secret) for server in (a, b, a, b)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200]
    refused = post(a, secret)
    assert refused.status_code == 429
    resets = next_midnight(datetime.now(UTC))
    error = refused.json()["error"]
    assert error == {"message": "This key has used its daily budget of 1,000 tokens; it resets at "
                                f"{resets:%Y-%m-%d %H:%M} UTC.",
                     "type": "usage_limit_reached", "param": None, "code": "usage_limit_reached",
                     "resets_at": int(resets.timestamp())}
    assert abs(int(refused.headers["retry-after"]) - (resets - datetime.now(UTC)).total_seconds()) <= 5
    assert post(b, secret).status_code == 429  # the other process knows too
    assert len(served.requests()) == 4  # nothing sent upstream for the refused ones
    rows = wait_for_logs(6)
    assert [(r.status, r.input_tokens, r.output_tokens, r.error_type) for r in rows] == [
        (200, 200, 100, "")] * 4 + [(429, None, None, "usage_limit_reached")] * 2
    assert {r.key_name for r in rows} == {"ci"}


def test_a_team_budget_counts_every_key_of_the_team(gateway: Gateway, served: MockUpstream) -> None:
    team = Team.objects.create(name="agents", token_budget=600, budget_period="total")
    _, first = ClientKey.objects.create_key("agent-1", team=team)
    _, second = ClientKey.objects.create_key("agent-2", team=team)
    _, outsider = ClientKey.objects.create_key("outsider")
    assert [post(gateway, secret).status_code for secret in (first, second)] == [200, 200]
    refused = post(gateway, first)
    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "message": "The team 'agents' has used its total budget of 600 tokens; ask the gateway's administrators "
                   "for more.", "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}
    assert "retry-after" not in refused.headers  # a total never resets: nothing to wait for
    assert post(gateway, second).status_code == 429
    assert post(gateway, outsider).status_code == 200
    rows = wait_for_logs(5)
    assert [r.team_id for r in rows] == [team.pk] * 4 + [None]


def test_a_dollar_budget_counts_each_request_at_the_price_of_its_time(gateway: Gateway, served: MockUpstream) -> None:
    """$1 per million in and $2 out: 200 in and 100 out cost $0.0004; at double prices, $0.0008."""
    Price.objects.create(pattern="m*", input=Decimal(1), output=Decimal(2))
    _, secret = ClientKey.objects.create_key("dollars", usd_budget=Decimal("0.002"), budget_period="month")
    answered = [post(gateway, secret) for _ in range(2)]
    assert [wait_for_log(r.headers["x-request-id"]).cost for r in answered] == [Decimal("0.0004")] * 2
    Price.objects.filter(pattern="m*").update(input=Decimal(2), output=Decimal(4))  # mid-period
    waiting.until(lambda: _cost_of(post(gateway, secret)) == Decimal("0.0008"), "the new price", 10)
    spent = sum(row.cost for row in RequestLog.objects.filter(status=200))
    assert Decimal("0.0016") <= spent < Decimal("0.002")  # old and new prices, each on its own rows
    assert _cost_of(post(gateway, secret)) == Decimal("0.0008")  # still below: let in, and now over
    refused = post(gateway, secret)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith("This key has used its monthly budget of $0.002;")
    total = sum(row.cost for row in RequestLog.objects.filter(status=200))
    assert Decimal("0.002") <= total < Decimal("0.002") + Decimal("0.0008")  # over by less than one request
    metrics = httpx.get(f"{gateway.url}/metrics").text  # Prometheus: what each key spent, and its refusals
    spent_metric = re.search(r'gateway_spend_usd_total\{key="dollars",model="m",team="-"\} (\S+)', metrics)
    assert spent_metric and abs(Decimal(spent_metric[1]) - total) < Decimal("1e-9")
    assert 'gateway_budget_refused_total{budget="key",key="dollars",team="-"} 1.0' in metrics


def _cost_of(response: httpx.Response) -> Decimal:
    assert response.status_code == 200
    cost: Decimal = wait_for_log(response.headers["x-request-id"]).cost
    return cost


def test_an_unpriced_model_costs_nothing_and_its_row_says_so(gateway: Gateway, served: MockUpstream) -> None:
    Price.objects.create(pattern="priced", input=Decimal("0.5"), output=Decimal("1.5"), cached_input=Decimal("0.05"))
    _, secret = ClientKey.objects.create_key("ci")
    unpriced = wait_for_log(post(gateway, secret, "other").headers["x-request-id"])
    priced = wait_for_log(post(gateway, secret, "priced").headers["x-request-id"])
    assert (unpriced.cost, unpriced.priced) == (Decimal(0), False)
    assert (priced.cost, priced.priced) == (Decimal("0.00025"), True)  # 200 x 0.5 + 100 x 1.5, per million
    staff = admin_session(gateway)
    assert '<dd id="cost">$0 <span class="muted">(unpriced' in staff.get(f"/logs/{unpriced.request_id}/").text
    assert '<dd id="cost">$0.00025</dd>' in staff.get(f"/logs/{priced.request_id}/").text


def test_150_concurrent_requests_on_two_processes_overshoot_by_less_than_one_request(
        pair: tuple[Gateway, Gateway], served: MockUpstream) -> None:
    """At the edge of a budget, concurrent requests are let in only while spent + held is below it.

    Each holds about 400 tokens and spends 300: the total spent ends below the budget plus
    one request's use, every request leaves one row, and each refusal says why.
    """
    budget = 6100
    _, secret = ClientKey.objects.create_key("fleet", token_budget=budget, budget_period="week")
    answers = asyncio.run(_concurrently(pair, secret, 150))
    at_once = Counter(r.json()["error"]["code"] if r.status_code == 429 else "let in" for r in answers)
    assert {r.status_code for r in answers} == {200, 429}
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 429} <= {"usage_limit_reached",
                                                                                     "budget_held"}
    while (last := post(pair[0], secret)).status_code == 200:  # what the holds left unspent, spent now
        answers.append(last)
    answers.append(last)
    assert last.json()["error"]["code"] == "usage_limit_reached"
    rows = wait_for_logs(len(answers), timeout=30)
    assert sorted(r.request_id for r in rows) == sorted(a.headers["x-request-id"] for a in answers)  # one each
    let_in = [r for r in rows if r.status == 200]
    assert len(let_in) == len(served.requests())  # nothing sent upstream for a refusal
    assert all(r.error_type in ("usage_limit_reached", "budget_held") for r in rows if r.status == 429)
    spent = sum(r.input_tokens + r.output_tokens for r in let_in)
    print(f"150 concurrent: {dict(at_once)}; then one at a time, {len(let_in) - at_once['let in']} let in; "
          f"spent {spent} of {budget} (overshoot {spent - budget})")
    assert budget <= spent < budget + 300  # over by less than one request's use


async def _concurrently(pair: tuple[Gateway, Gateway], secret: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls = [client.post(f"{pair[n % 2].url}/v1/chat/completions", json=body(),
                             headers={"authorization": f"Bearer {secret}"}) for n in range(count)]
        return list(await asyncio.gather(*calls))


def test_a_budget_period_ends_at_midnight_utc_on_the_gateways_clock(start_gateway: Any, served: MockUpstream,
                                                                     tmp_path: Path) -> None:
    """A key spent for the day is let in again once the clock passes 00:00 UTC (a clock the test sets)."""
    clock = tmp_path / "clock"
    evening = datetime(2031, 3, 4, 23, 59, 50, tzinfo=UTC)
    clock.write_text(str(evening.timestamp()))
    gateway = start_gateway(GATEWAY_BUDGET_CLOCK="tests.api.budget_clock.now", BUDGET_CLOCK_FILE=str(clock))
    _, secret = ClientKey.objects.create_key("nightly", token_budget=500, budget_period="day")
    assert [post(gateway, secret).status_code for _ in range(2)] == [200, 200]
    refused = post(gateway, secret)
    midnight = datetime(2031, 3, 5, tzinfo=UTC)
    assert refused.json()["error"]["resets_at"] == int(midnight.timestamp())
    assert refused.headers["retry-after"] == "10"
    clock.write_text(str((midnight + timedelta(seconds=1)).timestamp()))
    assert post(gateway, secret).status_code == 200  # a new day
    assert len(served.requests()) == 3


def test_websocket_turns_and_background_responses_count_like_any_request(gateway: Gateway,
                                                                         served: MockUpstream) -> None:
    """A socket's turns and a background response spend the budget; a spent one is refused on the socket too."""
    _, secret = ClientKey.objects.create_key("agent", token_budget=800, budget_period="month")
    with socket(gateway, secret) as ws:
        assert [create(ws, input="one", store=False)[-1]["type"] for _ in range(2)] == ["response.completed"] * 2
    queued = httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {secret}"},
                        json={"model": "m", "input": "three", "background": True}, timeout=30)
    assert (queued.status_code, queued.json()["status"]) == (200, "queued")
    wait_for_log(queued.headers["x-request-id"])  # its row is settled when the run ends: 900 spent
    with socket(gateway, secret) as ws:
        [refused] = create(ws, input="four", store=False)
    assert (refused["type"], refused["status"], refused["error"]["type"]) == ("error", 429, "usage_limit_reached")
    assert isinstance(refused["error"]["resets_at"], int) and "retry-after" in refused["headers"]
    assert len(served.requests()) == 3
    rows = wait_for_logs(4)
    assert [(r.transport, r.status, r.input_tokens) for r in rows] == [
        ("websocket", 200, 200), ("websocket", 200, 200), ("http", 200, 200), ("websocket", 429, None)]
