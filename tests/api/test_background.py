"""Background responses through a real gateway: queued at once, answered by the gateway, polled, resumed, cancelled.

The mock upstream's ``gate`` holds an answer after its first piece until the test releases
it, so each test sees the response while it is still running, with no sleeps.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from logs.models import Outcome
from state.models import StoredResponse
from tests import waiting
from tests.bridge.helpers import assert_spec_response, assert_spec_stream, assert_valid_stream
from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

GATED = {"chunks": [{"text": "Hello"}, {"text": " world"}, {"finish": "stop"},
                    {"usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}], "gate": True}


def headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def post(gateway: Gateway, key: str, body: dict[str, Any], path: str = "/v1/responses") -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json={"model": "mock-model", **body}, headers=headers(key), timeout=30)


def get(gateway: Gateway, key: str, path: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}{path}", headers=headers(key), timeout=30)


def events_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def stream_background(gateway: Gateway, key: str, *, until_type: str = "",
                      on: tuple[str, Callable[[], None]] | None = None) -> list[dict[str, Any]]:
    """POST a background stream and return its events: all of them, or up to the first of ``until_type``.

    ``on``: an event type and what to do when it comes (release the gated upstream).
    """
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{gateway.url}/v1/responses", headers=headers(key), timeout=30,
                      json={"model": "mock-model", "input": "hi", "background": True, "stream": True}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            events.append(json.loads(line[5:]))
            if on is not None and events[-1]["type"] == on[0]:
                on[1]()
            if events[-1]["type"] == until_type:
                break
    return events


def status(gateway: Gateway, key: str, response_id: str) -> str:
    found = get(gateway, key, f"/v1/responses/{response_id}")
    assert found.status_code == 200, found.text
    return str(found.json()["status"])


def test_a_background_request_is_answered_queued_then_polled_to_its_end(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(GATED)
    answer = post(gateway, active_key, {"input": "hi", "background": True})
    assert answer.status_code == 200, answer.text
    queued = answer.json()
    assert (queued["status"], queued["background"], queued["store"], queued["output"]) == ("queued", True, True, [])
    assert_spec_response(queued)
    waiting.until(lambda: status(gateway, active_key, queued["id"]) == "in_progress", "status in_progress")
    assert "background" not in scripted.requests()[-1]["body"]  # the gateway answers it, the upstream streams
    scripted.release()
    waiting.until(lambda: status(gateway, active_key, queued["id"]) == "completed", "status completed")
    final = get(gateway, active_key, f"/v1/responses/{queued['id']}").json()
    assert_spec_response(final)
    assert final["output"][0]["content"][0]["text"] == "Hello world"
    assert (final["id"], final["background"], final["usage"]["total_tokens"]) == (queued["id"], True, 5)
    row = wait_for_log(answer.headers["x-request-id"])
    assert (row.outcome, row.status, row.total_tokens, row.stream) == (Outcome.OK, 200, 5, False)


def test_a_background_stream_is_queued_first_and_ends_stored_and_spec_valid(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(GATED)
    events = stream_background(gateway, active_key, on=("response.in_progress", scripted.release))
    assert [e["type"] for e in events[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert events[0]["response"]["status"] == "queued" and events[2]["response"]["status"] == "in_progress"
    assert events[-1]["type"] == "response.completed"
    assert_valid_stream(events)
    assert_spec_stream(events)
    stored = get(gateway, active_key, f"/v1/responses/{events[0]['response']['id']}").json()
    assert stored == events[-1]["response"]


def test_a_background_stream_resumes_after_any_event_live_and_after_it_ended(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(GATED)
    # The client leaves mid-answer: the gateway goes on.
    seen = stream_background(gateway, active_key, until_type="response.output_text.delta")
    # Resumed from before the last event seen, so that the answer's headers go out at once
    # (daphne sends them with the first part) while the upstream is still held.
    response_id, last = seen[0]["response"]["id"], seen[-1]["sequence_number"]
    with httpx.stream("GET", f"{gateway.url}/v1/responses/{response_id}?stream=true&starting_after={last - 1}",
                      headers=headers(active_key), timeout=30) as resumed:
        assert resumed.status_code == 200
        scripted.release()
        rest = events_of(resumed.read().decode())
    assert rest[0] == seen[-1] and rest[-1]["type"] == "response.completed"
    rest = rest[1:]
    assert_valid_stream(seen + rest)
    replayed = events_of(get(gateway, active_key, f"/v1/responses/{response_id}?stream=true&starting_after=1").text)
    assert replayed == (seen + rest)[2:]  # the same stream, read back from the database
    assert events_of(get(gateway, active_key, f"/v1/responses/{response_id}?stream=true").text) == seen + rest


def test_cancel_ends_a_running_background_response_as_cancelled_and_is_idempotent(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(GATED)
    answer = post(gateway, active_key, {"input": "hi", "background": True})
    response_id = answer.json()["id"]
    waiting.until(lambda: status(gateway, active_key, response_id) == "in_progress", "status in_progress")
    with httpx.stream("GET", f"{gateway.url}/v1/responses/{response_id}?stream=true",
                      headers=headers(active_key), timeout=30) as watching:
        cancelled = post(gateway, active_key, {}, path=f"/v1/responses/{response_id}/cancel")
        watched = events_of(watching.read().decode())
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["id"], body["status"], body["error"]) == (response_id, "cancelled", None)
    assert_spec_response(body)
    assert watched[-1]["type"] == "response.failed" and watched[-1]["response"]["status"] == "cancelled"
    assert_valid_stream(watched)
    again = post(gateway, active_key, {}, path=f"/v1/responses/{response_id}/cancel")
    assert again.status_code == 200 and again.json() == body
    assert get(gateway, active_key, f"/v1/responses/{response_id}").json() == body
    assert wait_for_log(answer.headers["x-request-id"]).outcome == Outcome.CANCELLED


def test_a_background_response_whose_upstream_fails_is_stored_failed_with_the_upstreams_error(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"status": 400, "body": {"error": {"message": "bad things", "type": "invalid_request_error",
                                                       "param": None, "code": "nope"}}})
    answer = post(gateway, active_key, {"input": "hi", "background": True})
    assert answer.status_code == 200 and answer.json()["status"] == "queued"
    waiting.until(lambda: status(gateway, active_key, answer.json()["id"]) == "failed", "status failed")
    final = get(gateway, active_key, f"/v1/responses/{answer.json()['id']}").json()
    assert final["error"]["message"] == "bad things"
    assert_spec_response(final)
    assert wait_for_log(answer.headers["x-request-id"]).outcome == Outcome.UPSTREAM_ERROR


def test_a_background_response_on_a_responses_upstream_is_renumbered_as_its_own_stream(
        gateway: Gateway, scripted: MockUpstream, responses_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "Hello"}, {"finish": "stop"}]})
    answer = post(gateway, active_key, {"input": "hi", "background": True, "stream": True})
    events = events_of(answer.text)
    response_id = events[0]["response"]["id"]
    assert [e["type"] for e in events[:2]] == ["response.created", "response.queued"]
    assert {e["response"]["id"] for e in events if "response" in e} == {response_id}
    assert_valid_stream(events)
    final = get(gateway, active_key, f"/v1/responses/{response_id}").json()
    assert (final["status"], final["background"]) == ("completed", True)
    assert final["output"][0]["content"][0]["text"] == "Hello"


@pytest.mark.parametrize(("body", "param", "code"), [
    pytest.param({"background": True, "store": False}, "store", "invalid_value", id="background-needs-store"),
    pytest.param({"background": "yes"}, "background", "invalid_type", id="not-a-boolean"),
])
def test_a_malformed_background_request_is_refused_by_name(gateway: Gateway, scripted: MockUpstream,
                                                          chat_upstream: Upstream, active_key: str,
                                                          body: dict[str, Any], param: str, code: str) -> None:
    response = post(gateway, active_key, {"input": "hi", **body})
    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)
    assert scripted.requests() == []


def test_a_background_request_no_upstream_can_honour_is_refused_before_it_is_queued(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    response = post(gateway, active_key, {"input": "hi", "background": True, "max_tool_calls": 2})
    assert response.status_code == 400 and response.json()["error"]["param"] == "max_tool_calls"
    assert scripted.requests() == [] and not StoredResponse.objects.exists()


def test_resuming_needs_a_background_response_and_a_sequence_number(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    foreground = post(gateway, active_key, {"input": "hi"}).json()["id"]
    refused = get(gateway, active_key, f"/v1/responses/{foreground}?stream=true")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "not_streamable"
    background = post(gateway, active_key, {"input": "hi", "background": True}).json()["id"]
    bad = get(gateway, active_key, f"/v1/responses/{background}?stream=true&starting_after=-1")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "starting_after"
    assert get(gateway, active_key, "/v1/responses/resp_nope?stream=true").status_code == 404


def test_another_keys_background_response_cannot_be_read_resumed_or_cancelled(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    from upstreams.models import ClientKey

    _, other = ClientKey.objects.create_key("bob")
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    response_id = post(gateway, active_key, {"input": "hi", "background": True}).json()["id"]
    for path in (f"/v1/responses/{response_id}", f"/v1/responses/{response_id}?stream=true"):
        assert get(gateway, other, path).status_code == 404
    assert post(gateway, other, {}, path=f"/v1/responses/{response_id}/cancel").status_code == 404


def test_a_background_response_lost_with_its_process_is_marked_failed_not_left_running(
        start_gateway: Callable[..., Gateway], scripted: MockUpstream, chat_upstream: Upstream,
        active_key: str) -> None:
    beat = {"GATEWAY_BACKGROUND_HEARTBEAT": "0.2"}
    doomed = start_gateway(**beat)
    scripted.script(GATED)
    response_id = post(doomed, active_key, {"input": "hi", "background": True}).json()["id"]
    waiting.until(lambda: status(doomed, active_key, response_id) == "in_progress", "status in_progress")
    doomed.process.kill()  # SIGKILL: no drain, no last word
    doomed.process.wait()
    after = start_gateway(**beat)
    waiting.until(lambda: status(after, active_key, response_id) == "failed", "status failed")
    final = get(after, active_key, f"/v1/responses/{response_id}").json()
    assert final["error"]["code"] == "background_lost"
    resumed = events_of(get(after, active_key, f"/v1/responses/{response_id}?stream=true&starting_after=3").text)
    assert [(e["type"], e["sequence_number"]) for e in resumed] == [("response.failed", 4)]
    assert StoredResponse.objects.get(pk=response_id).status == "failed"
