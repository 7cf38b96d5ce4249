"""Pools: three mock members of one model, each with its own prefix cache, behind a real daphne gateway.

A turn is cheap only on the member that computed its session's earlier turns (the mock's
prefix cache, upstreams/mock/prefix.py, reports what it found as cached tokens). Sessions
stick to one member by ``prompt_cache_key``, or by Codex's ``session-id`` header alone;
requests without either are spread by requests in flight; a member killed mid-run moves
only its own sessions, which get 200 through failover and stay on their new member.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from logs.models import RequestLog
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream, admin_session
from upstreams.models import ClientKey, Upstream

pytestmark = pytest.mark.processes  # three mock members of its own
CACHED = {"prefix_cache": {"prefill_per_kb": 0.0}, "chunks": [{"text": "done"}, {"finish": "stop"}]}
SESSIONS, TURNS = 30, 4


@pytest.fixture
def members(transactional_db: None) -> Iterator[list[MockUpstream]]:
    started = [MockUpstream("scripted") for _ in range(3)]
    for n, member in enumerate(started):
        member.script(CACHED)
        Upstream.objects.create(name=f"member-{n}", base_url=member.base_url, models="pool-model")
    yield started
    for member in started:
        member.stop()


def turn_body(session: int, turn: int, *, cache_key: bool) -> dict[str, Any]:
    """A session's turn, stateless: its whole history (a long shared prefix) and one more question."""
    history: list[dict[str, Any]] = [{"role": "user", "content": f"session {session}: " + "context " * 300}]
    for earlier in range(turn):
        history += [{"role": "user", "content": f"question {earlier}"},
                     {"role": "assistant", "content": "done"}]
    body = {"model": "pool-model", "store": False, "input": [*history, {"role": "user", "content": f"question {turn}"}]}
    return {**body, "prompt_cache_key": f"thread-{session}"} if cache_key else body


async def run_sessions(gateway: Gateway, secret: str, *, cache_key: bool, turns: range,
                       on_turn: Any = None) -> list[httpx.Response]:
    """Every session's turns in order, the sessions side by side; returns every answer."""
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=SESSIONS)) as client:
        async def session(n: int) -> list[httpx.Response]:
            answers = []
            for turn in turns:
                headers = {"authorization": f"Bearer {secret}"}
                if not cache_key:
                    headers["session-id"] = f"thread-{n}"
                answers.append(await client.post(f"{gateway.url}/v1/responses", headers=headers,
                                                 json=turn_body(n, turn, cache_key=cache_key)))
            return answers
        results = await asyncio.gather(*(session(n) for n in range(SESSIONS)))
    return [answer for answers in results for answer in answers]


def by_session(rows: list[RequestLog]) -> dict[str, list[RequestLog]]:
    """The rows of each session (its thread id), its turns in order."""
    found: dict[str, list[RequestLog]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: row.started):
        found[row.session_id].append(row)
    return found


@pytest.mark.parametrize("cache_key", [True, False], ids=["prompt_cache_key", "session-id header"])
def test_30_sessions_of_4_turns_each_stay_on_one_member_and_read_its_cache(
        gateway: Gateway, members: list[MockUpstream], cache_key: bool) -> None:
    _, secret = ClientKey.objects.create_key("agents")
    answers = asyncio.run(run_sessions(gateway, secret, cache_key=cache_key, turns=range(TURNS)))
    assert [a.status_code for a in answers] == [200] * SESSIONS * TURNS
    sessions = by_session(wait_for_logs(SESSIONS * TURNS))
    assert sorted(sessions) == sorted(f"thread-{n}" for n in range(SESSIONS))
    for turns in sessions.values():
        assert len({row.upstream_name for row in turns}) == 1  # one member for the whole session
        assert [row.routed_by for row in turns] == ["affinity"] * TURNS
        assert turns[0].cached_tokens == 0 and all(row.cached_tokens > 0 for row in turns[1:])  # its prefix
    assert {turns[0].upstream_name for turns in sessions.values()} == {"member-0", "member-1", "member-2"}
    page = admin_session(gateway).get(f"/logs/{turns[1].request_id}/").text
    assert '<dd id="routed-by">affinity <span class="muted">(its session\'s member of the pool)' in page


def test_requests_without_a_session_are_spread_by_requests_in_flight(gateway: Gateway,
                                                                     members: list[MockUpstream]) -> None:
    """Three at once, each held open by its member: each goes to a different member (the least loaded)."""
    for member in members:
        member.script({**CACHED, "gate": True})
    _, secret = ClientKey.objects.create_key("plain")

    async def three() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [asyncio.ensure_future(client.post(
                f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {secret}"},
                json={"model": "pool-model", "input": f"q{n}", "store": False, "stream": True})) for n in range(3)]
            for _ in range(200):  # until all three are in flight at their members
                if sum(len(member.requests()) for member in members) == 3:
                    break
                await asyncio.sleep(0.05)
            for member in members:
                member.release()
            return list(await asyncio.gather(*calls))

    assert [r.status_code for r in asyncio.run(three())] == [200] * 3
    assert [len(member.requests()) for member in members] == [1, 1, 1]
    assert {row.routed_by for row in wait_for_logs(3)} == {"least_loaded"}


def test_a_member_killed_mid_run_moves_only_its_own_sessions_which_stay_on_their_new_member(
        gateway: Gateway, members: list[MockUpstream]) -> None:
    _, secret = ClientKey.objects.create_key("agents")
    first = asyncio.run(run_sessions(gateway, secret, cache_key=True, turns=range(2)))
    assert {a.status_code for a in first} == {200}
    before = {session: turns[0].upstream_name for session, turns in by_session(wait_for_logs(60)).items()}
    assert "member-1" in before.values()
    members[1].stop()  # member-1 dies between the second and the third turn
    answers = asyncio.run(run_sessions(gateway, secret, cache_key=True, turns=range(2, 4)))
    assert [a.status_code for a in answers] == [200] * SESSIONS * 2  # its sessions too, through failover
    for session, turns in by_session(wait_for_logs(SESSIONS * TURNS)).items():
        after = [row.upstream_name for row in turns[2:]]
        if before[session] != "member-1":
            assert after == [before[session]] * 2  # untouched
            assert [row.routed_by for row in turns[2:]] == ["affinity"] * 2
        else:
            assert after[0] == after[1] != "member-1"  # moved once, and stayed
            # Tried at member-1 first and failed over, or member-1 already cooling down (tried last):
            assert (turns[2].routed_by, bool(turns[2].attempts)) in {("failover", True), ("affinity", False)}
    assert any(row.routed_by == "failover" for row in RequestLog.objects.all())


def test_the_cache_key_reaches_upstreams_that_take_it(gateway: Gateway, scripted: MockUpstream) -> None:
    """A Responses upstream gets it as sent; a Chat one only with its switch on (OpenAI's); none gets a 400."""
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    _, secret = ClientKey.objects.create_key("hints")
    Upstream.objects.create(name="responses", base_url=scripted.base_url, api="responses", models="r")
    Upstream.objects.create(name="chat-openai", base_url=scripted.base_url, models="o", send_prompt_cache_key=True)
    Upstream.objects.create(name="chat-vllm", base_url=scripted.base_url, models="v")
    for model in ("r", "o", "v"):
        answer = httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {secret}"},
                            json={"model": model, "input": "hi", "prompt_cache_key": "thread-9"}, timeout=30)
        assert answer.status_code == 200, answer.text
    sent = [request["body"].get("prompt_cache_key") for request in scripted.requests()]
    assert sent == ["thread-9", "thread-9", None]
    assert [row.session_id for row in wait_for_logs(3)] == ["thread-9"] * 3  # the key names the session


def test_a_chain_of_previous_response_ids_is_a_session_that_sticks_from_its_second_turn(
        gateway: Gateway, members: list[MockUpstream]) -> None:
    """Without a key or a session header, a stored chain's first response names its session."""
    _, secret = ClientKey.objects.create_key("sdk")
    headers = {"authorization": f"Bearer {secret}"}
    roots = []
    for chain in range(6):
        previous = None
        for turn in range(4):
            body = {"model": "pool-model", "input": f"chain {chain} turn {turn}",
                    **({"previous_response_id": previous} if previous else {})}
            answer = httpx.post(f"{gateway.url}/v1/responses", headers=headers, json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            previous = answer.json()["id"]
            if turn == 0:
                roots.append(previous)
    rows = wait_for_logs(24)
    for n, root in enumerate(roots):
        first, *later = rows[4 * n: 4 * n + 4]
        assert (first.session_id, first.routed_by) == ("", "least_loaded")
        assert [(row.session_id, row.routed_by) for row in later] == [(root, "affinity")] * 3
        assert len({row.upstream_name for row in later}) == 1
    assert len({rows[4 * n + 1].upstream_name for n in range(6)}) > 1  # the chains are spread over the members
