"""The overview's figures add up: a known mix of requests through a real gateway, every figure checked against the rows.

A dead upstream that is the only one for its model, a real failover (a dead upstream of higher
priority than a live one), an upstream's own error, client mistakes (unknown model, bad key),
a client that leaves mid-stream, and streamed Chat without ``include_usage``. Each figure of
``/logs/stats/?format=json`` is checked twice: against the rows counted here from their
attempts and outcomes, and against the list its link opens (the same number of rows).
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from logs.models import RequestLog
from tests.conftest import wait_for_log, wait_for_logs
from tests.servers import Gateway, MockUpstream, free_port
from upstreams.models import ClientKey, Upstream

OK = {"chunks": [{"text": "fine"}, {"finish": "stop"}]}
EXPLODED = {"status": 500, "body": "upstream exploded"}
SLOW = {"chunks": [{"text": "a long answer"}] * 3 + [{"finish": "stop"}], "pause": [0, 30]}
HI = [{"role": "user", "content": "hi"}]


def listed(admin: Client, link: str) -> int:
    """How many rows the list page behind a figure's link holds (its count line)."""
    page = admin.get(link).content.decode()
    found = re.search(r'<span class="count"><b>(\d+)</b> request', page)
    assert found, link
    return int(found[1])


@pytest.fixture
def mix(gateway: Gateway, scripted: MockUpstream, active_key: str) -> dict[str, Any]:
    """Send the mix; return what was sent, by kind."""
    Upstream.objects.create(name="ghost", base_url=f"http://127.0.0.1:{free_port()}/v1", models="ghost-model")
    Upstream.objects.create(name="primary-dead", base_url=f"http://127.0.0.1:{free_port()}/v1", models="m",
                            priority=10)
    Upstream.objects.create(name="backup", base_url=scripted.base_url, models="m", priority=1)
    _, bob = ClientKey.objects.create_key("bob")
    alice = {"authorization": f"Bearer {active_key}"}
    # Backup's answers, in the order the requests below reach it.
    scripted.script(OK, OK, EXPLODED, SLOW, OK, OK)
    sent: Counter[str] = Counter()

    def post(path: str, body: dict[str, Any], headers: dict[str, str], kind: str, status: int) -> None:
        answer = httpx.post(f"http://127.0.0.1:{gateway.port}{path}", json=body, headers=headers, timeout=30)
        assert answer.status_code == status, (kind, answer.text)
        wait_for_log(answer.headers["x-request-id"])
        sent[kind] += 1

    post("/v1/responses", {"model": "m", "input": "hi"}, alice, "failover", 200)
    post("/v1/responses", {"model": "m", "input": "hi"}, alice, "answered", 200)
    post("/v1/responses", {"model": "m", "input": "hi"}, alice, "upstream 500", 500)
    post("/v1/responses", {"model": "ghost-model", "input": "hi"}, alice, "dead only", 502)
    post("/v1/responses", {"model": "ghost-model", "input": "hi"}, {"authorization": f"Bearer {bob}"}, "dead only",
         502)
    post("/v1/responses", {"model": "gpt-9", "input": "hi"}, alice, "unknown model", 404)
    post("/v1/responses", {"model": "m", "input": "hi"}, {"authorization": "Bearer sk-nobody-has-this-key-0123"},
         "bad key", 401)
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers=alice, timeout=30,
                      json={"model": "m", "messages": HI, "stream": True}) as response:
        next(response.iter_lines())  # the first chunk, then the client leaves
        left = response.headers["x-request-id"]
    sent["disconnected"] += 1
    wait_for_log(left)
    for _ in range(2):
        post("/v1/chat/completions", {"model": "m", "messages": HI, "stream": True},
             {"authorization": f"Bearer {bob}"}, "chat stream", 200)
    rows = wait_for_logs(sum(sent.values()))
    assert len(rows) == sum(sent.values())
    return {"sent": sent, "rows": rows, "bob": bob}


def reached(row: RequestLog) -> dict[str, str]:
    """Each upstream a row reached, with its outcome there: computed from the attempts, not from failed_over."""
    there = {a["upstream"]: "upstream_error" for a in row.attempts}
    if row.upstream_name:
        there[row.upstream_name] = row.outcome
    return there


def test_every_figure_of_the_overview_equals_the_rows_behind_it(mix: dict[str, Any], admin_client: Client) -> None:
    rows: list[RequestLog] = mix["rows"]
    overview = admin_client.get("/logs/stats/?format=json").json()
    totals = overview["totals"]

    # The totals, against the rows.
    faults = {f["fault"]: f for f in totals["faults"]}
    assert totals["requests"] == len(rows) == 10
    assert faults["upstream"]["count"] == sum(r.outcome == "upstream_error" for r in rows) == 3
    assert faults["refused"]["count"] == sum(r.outcome == "rejected" for r in rows) == 2
    assert faults["disconnected"]["count"] == sum(r.outcome == "client_disconnected" for r in rows) == 1
    assert faults["gateway"]["count"] == 0
    assert totals["reached"] == sum(bool(r.upstream_name) for r in rows) == 8
    assert totals["error_rate"] == pytest.approx(3 / 8)  # the upstreams' failures only
    moved = [r for r in rows if any(a["upstream"] != r.upstream_name for a in r.attempts)]
    assert totals["failovers"] == len(moved) >= 1
    assert totals["untokened"] == sum(r.outcome == "ok" and r.upstream_name and not r.tokens_reported for r in rows)
    assert totals["untokened"] == 0  # the streamed Chat requests have their tokens too

    # Each upstream: once per request that reached it, failed there if its outcome there was.
    there = [reached(r) for r in rows]
    upstreams = {u["name"]: u for u in overview["upstreams"]}
    for name, figures in upstreams.items():
        assert figures["requests"] == sum(name in t for t in there), name
        assert figures["failed"] == sum(t.get(name) == "upstream_error" for t in there), name
    assert (upstreams["ghost"]["requests"], upstreams["ghost"]["failed"], upstreams["ghost"]["failovers"]) == (2, 2, 0)
    assert upstreams["primary-dead"]["failed"] == upstreams["primary-dead"]["requests"] >= 1

    # Each key, and each failure group.
    keys = {k["name"]: k for k in overview["keys"]}
    for name, figures in keys.items():
        mine = [r for r in rows if r.key_name == name]
        assert (figures["requests"], figures["failed"]) == (len(mine), sum(r.outcome != "ok" for r in mine)), name
    assert keys[""]["requests"] == 1  # the bad key
    assert sum(e["count"] for e in overview["errors"]) == sum(r.outcome != "ok" for r in rows)

    # Every link opens exactly the rows its figure counts.
    links = [(totals[name], totals["links"][name]) for name in ("requests", "reached", "failovers", "untokened")]
    links += [(f["count"], f["link"]) for f in totals["faults"]]
    links += [(u["requests"], u["link"]) for u in overview["upstreams"]]
    links += [(u["failed"], u["failed_link"]) for u in overview["upstreams"]]
    links += [(k["requests"], k["link"]) for k in overview["keys"]]
    links += [(k["failed"], k["failed_link"]) for k in overview["keys"]]
    links += [(e["count"], e["link"]) for e in overview["errors"]]
    assert [listed(admin_client, link) for _, link in links] == [figure for figure, _ in links]


def test_the_rows_of_the_mix_say_what_happened(mix: dict[str, Any], admin_client: Client) -> None:
    bad_key = next(r for r in mix["rows"] if r.status == 401)
    assert (bad_key.key_name, bad_key.presented_key) == ("", "sk-nobody-ha")  # 12 characters, as the key list shows
    assert "sk-nobody-has-this" not in admin_client.get(f"/logs/{bad_key.request_id}/").content.decode()
    assert "sk-nobody-ha…" in admin_client.get(f"/logs/{bad_key.request_id}/").content.decode()
    streams = [r for r in mix["rows"] if r.endpoint == "chat/completions" and r.outcome == "ok"]
    assert [(r.key_name, r.input_tokens, r.output_tokens) for r in streams] == [("bob", 5, 7)] * 2
    exported = admin_client.get("/logs/export.csv?failover=1")

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in exported.streaming_content])  # type: ignore[attr-defined]

    moved = list(csv.DictReader(io.StringIO(async_to_sync(collect)().decode())))
    assert moved and all(row["failed_over"].startswith(",primary-dead,") for row in moved)
    assert all(json.loads(row["attempts"])[0]["upstream"] == "primary-dead" for row in moved)
