"""Stored responses through a real gateway: store (the default), read back, continue, reference, list, delete.

Each continuation is checked where it matters: in the request the upstream received, which
must carry the earlier turns before the new input (issue 11: no client loses its context).
"""
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from state.models import StoredItem, StoredResponse
from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream, admin_session
from upstreams.models import ClientKey, Upstream


def answer(text: str) -> dict[str, Any]:
    return {"chunks": [{"text": text}, {"finish": "stop"}]}


def post(gateway: Gateway, key: str, body: dict[str, Any], path: str = "/v1/responses") -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json={"model": "mock-model", **body},
                      headers={"authorization": f"Bearer {key}"}, timeout=30)


def streamed(gateway: Gateway, key: str, body: dict[str, Any]) -> dict[str, Any]:
    """Return the Response object of a streamed request's terminal event."""
    response = post(gateway, key, {"stream": True, **body})
    assert response.status_code == 200, response.text
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    assert events[-1]["type"] == "response.completed", events[-1]
    final: dict[str, Any] = events[-1]["response"]
    return final


def get(gateway: Gateway, key: str, path: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}{path}", headers={"authorization": f"Bearer {key}"}, timeout=30)


def messages_sent(scripted: MockUpstream, n: int = -1) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = scripted.requests()[n]["body"]["messages"]
    return messages


def test_a_streamed_response_is_stored_and_read_back_as_it_finished(gateway: Gateway, scripted: MockUpstream,
                                                                   chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("Hello!"))
    final = streamed(gateway, active_key, {"input": "hi"})
    assert final["store"] is True
    # Stored before the terminal event left: readable the moment the stream ended.
    read = get(gateway, active_key, f"/v1/responses/{final['id']}")
    assert read.status_code == 200
    assert read.json() == final


def test_a_non_streamed_response_is_stored_too(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                              active_key: str) -> None:
    scripted.script(answer("Hello!"))
    body = post(gateway, active_key, {"input": "hi"}).json()
    assert get(gateway, active_key, f"/v1/responses/{body['id']}").json() == body


def test_previous_response_id_sends_the_upstream_every_earlier_turn_in_order(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("Paris."), answer("About 2 million."), answer("The Seine."))
    first = streamed(gateway, active_key, {"input": "Capital of France?", "instructions": "Be brief."})
    second = streamed(gateway, active_key, {"input": "Population?", "previous_response_id": first["id"]})
    assert second["previous_response_id"] == first["id"]
    streamed(gateway, active_key, {"input": [{"role": "user", "content": "River?"}],
                                   "previous_response_id": second["id"]})
    assert messages_sent(scripted) == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Population?"},
        {"role": "assistant", "content": "About 2 million."},
        {"role": "user", "content": "River?"},
    ]
    # Each response keeps only its own items: storage grows with the conversation, not its square.
    assert StoredItem.objects.filter(response_id=second["id"]).count() == 2


def test_a_tool_turn_continues_with_the_call_and_its_output(gateway: Gateway, scripted: MockUpstream,
                                                           chat_upstream: Upstream, active_key: str) -> None:
    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    scripted.script({"chunks": [{"tool": {"index": 0, "id": "call_1", "name": "weather", "arguments": "{}"}},
                                {"finish": "tool_calls"}]}, answer("Sunny."))
    first = streamed(gateway, active_key, {"input": "Weather?", "tools": tools})
    [call] = first["output"]
    assert call["type"] == "function_call"
    streamed(gateway, active_key, {"previous_response_id": first["id"], "tools": tools, "input": [
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21 C"}]})
    assert messages_sent(scripted) == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]


def test_an_item_reference_is_replaced_by_the_stored_item(gateway: Gateway, scripted: MockUpstream,
                                                         chat_upstream: Upstream, active_key: str) -> None:
    """The Vercel AI SDK sends turn 1's answer as a reference to its id (store defaults to true)."""
    scripted.script(answer("Paris."), answer("Lyon."))
    first = streamed(gateway, active_key, {"input": "Capital of France?"})
    [message] = first["output"]
    streamed(gateway, active_key, {"input": [
        {"role": "user", "content": "Capital of France?"},
        {"type": "item_reference", "id": message["id"]},
        {"role": "user", "content": "Second city?"}]})
    assert messages_sent(scripted) == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Second city?"},
    ]


@pytest.mark.parametrize("why", ["unknown", "another-key", "not-stored"])
def test_a_previous_response_the_key_cannot_see_is_a_400(gateway: Gateway, scripted: MockUpstream,
                                                         chat_upstream: Upstream, active_key: str, why: str) -> None:
    scripted.script(answer("Paris."))
    previous = "resp_nope"
    if why == "another-key":
        _, other = ClientKey.objects.create_key("bob")
        previous = streamed(gateway, other, {"input": "hi"})["id"]
    elif why == "not-stored":
        previous = streamed(gateway, active_key, {"input": "hi", "store": False})["id"]
    sent = len(scripted.requests())
    response = post(gateway, active_key, {"input": "again", "previous_response_id": previous})
    assert response.status_code == 400
    assert response.json() == {"error": {"message": f"Previous response with id '{previous}' not found.",
                                         "type": "invalid_request_error", "param": "previous_response_id",
                                         "code": "previous_response_not_found"}}
    assert len(scripted.requests()) == sent  # never answered without the history


def test_a_reference_to_an_unknown_item_is_a_400_naming_it(gateway: Gateway, scripted: MockUpstream,
                                                          chat_upstream: Upstream, active_key: str) -> None:
    response = post(gateway, active_key, {"input": [{"role": "user", "content": "hi"},
                                                    {"type": "item_reference", "id": "msg_gone"}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("input[1]", "item_not_found") and "msg_gone" in error["message"]
    assert scripted.requests() == []


def test_an_input_without_stored_state_reaches_the_upstream_untouched(
        gateway: Gateway, scripted: MockUpstream, responses_upstream: Upstream, active_key: str) -> None:
    """Codex's own history (store false, no references) is passed through exactly as sent."""
    scripted.script(answer("ok"))
    items = [{"type": "message", "id": "msg_codex", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
             {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"}]
    streamed(gateway, active_key, {"input": items, "store": False})
    assert scripted.requests()[-1]["body"]["input"] == items


def test_store_false_keeps_nothing(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                   active_key: str) -> None:
    scripted.script(answer("ok"))
    final = streamed(gateway, active_key, {"input": "hi", "store": False})
    assert final["store"] is False
    assert get(gateway, active_key, f"/v1/responses/{final['id']}").status_code == 404
    assert StoredResponse.objects.count() == 0 and StoredItem.objects.count() == 0


def test_input_items_lists_the_requests_own_items_newest_first_in_pages(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("ok"))
    final = streamed(gateway, active_key, {"input": [{"role": "user", "content": f"part {n}"} for n in range(3)]})
    path = f"/v1/responses/{final['id']}/input_items"
    page = get(gateway, active_key, f"{path}?limit=2").json()
    assert [item["content"] for item in page["data"]] == [[{"type": "input_text", "text": "part 2"}],
                                                          [{"type": "input_text", "text": "part 1"}]]
    assert page["object"] == "list" and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (page["data"][0]["id"], page["data"][1]["id"])
    assert all(item["id"].startswith("msg_") and item["status"] == "completed" for item in page["data"])
    rest = get(gateway, active_key, f"{path}?limit=2&after={page['last_id']}").json()
    assert [item["content"][0]["text"] for item in rest["data"]] == ["part 0"] and rest["has_more"] is False
    oldest_first = get(gateway, active_key, f"{path}?order=asc").json()
    assert [item["content"][0]["text"] for item in oldest_first["data"]] == ["part 0", "part 1", "part 2"]
    assert get(gateway, active_key, f"{path}?limit=101").json()["error"]["param"] == "limit"


def test_delete_removes_the_response_and_breaks_no_silent_history(gateway: Gateway, scripted: MockUpstream,
                                                                 chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("one"), answer("two"), answer("three"))
    first = streamed(gateway, active_key, {"input": "1"})
    second = streamed(gateway, active_key, {"input": "2", "previous_response_id": first["id"]})
    deleted = httpx.delete(f"{gateway.url}/v1/responses/{first['id']}",
                           headers={"authorization": f"Bearer {active_key}"})
    assert deleted.json() == {"id": first["id"], "object": "response.deleted", "deleted": True}
    assert get(gateway, active_key, f"/v1/responses/{first['id']}").status_code == 404
    # The chain through the deleted response has a hole: refused, never answered from half a history.
    response = post(gateway, active_key, {"input": "3", "previous_response_id": second["id"]})
    assert response.json()["error"]["code"] == "previous_response_not_found"


def test_cancel_refuses_a_response_that_was_not_in_the_background(gateway: Gateway, scripted: MockUpstream,
                                                                   chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("ok"))
    final = streamed(gateway, active_key, {"input": "hi"})
    response = post(gateway, active_key, {}, path=f"/v1/responses/{final['id']}/cancel")
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_cancellable"
    assert post(gateway, active_key, {}, path="/v1/responses/resp_nope/cancel").status_code == 404


@pytest.mark.parametrize(("field", "value"), [
    pytest.param("prompt", {"id": "pmpt_1"}, id="prompt-template"),
])
def test_state_the_gateway_does_not_hold_yet_is_refused_by_name(gateway: Gateway, scripted: MockUpstream,
                                                               chat_upstream: Upstream, active_key: str, field: str,
                                                               value: Any) -> None:
    response = post(gateway, active_key, {"input": "hi", field: value})
    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (field, "unsupported_parameter")
    assert scripted.requests() == []


def test_a_passthrough_upstream_gets_a_stateless_request_with_the_history(
        gateway: Gateway, scripted: MockUpstream, responses_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("Paris."), answer("Lyon."))
    first = streamed(gateway, active_key, {"input": "Capital?"})
    assert get(gateway, active_key, f"/v1/responses/{first['id']}").json()["output"] == first["output"]
    streamed(gateway, active_key, {"input": "Second city?", "previous_response_id": first["id"]})
    sent = scripted.requests()[-1]["body"]
    assert "previous_response_id" not in sent
    assert [(item.get("role"), item["content"][0]["text"]) for item in sent["input"]] == [
        ("user", "Capital?"), ("assistant", "Paris."), ("user", "Second city?")]
    assert all("id" not in item for item in sent["input"])  # a stateless upstream would look ids up


def test_staff_see_the_stored_response_and_what_it_continued(gateway: Gateway, scripted: MockUpstream,
                                                            chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("one"), answer("two"))
    first = post(gateway, active_key, {"input": "1"})
    second = post(gateway, active_key, {"input": "2", "previous_response_id": first.json()["id"]})
    wait_for_log(first.headers["x-request-id"])
    page = admin_session(gateway).get(f"/logs/{wait_for_log(second.headers['x-request-id']).request_id}/").text
    assert "Stored response" in page and second.json()["id"] in page
    assert f'href="/logs/{first.headers["x-request-id"]}/"' in page and first.json()["id"] in page


def test_an_upstream_that_keeps_state_gets_the_state_fields_untouched(gateway: Gateway, scripted: MockUpstream,
                                                                     active_key: str) -> None:
    """With its switch on (OpenAI, Azure), the upstream's own ids are continued by the upstream itself."""
    Upstream.objects.create(name="stateful", base_url=scripted.url, api="responses", keeps_state=True,
                            priority=10)
    Upstream.objects.create(name="stateless", base_url=scripted.base_url, priority=0)  # never a failover target
    scripted.script({"status": 500, "body": "down"})
    body = {"input": "again", "previous_response_id": "resp_theirs", "store": True, "background": True}
    response = post(gateway, active_key, body)
    assert response.status_code == 500  # its own failure, relayed: the stateless upstream would not know the id
    [sent] = scripted.requests()
    assert sent["path"] == "/v1/responses"
    assert {k: sent["body"][k] for k in body} == body
    assert StoredResponse.objects.count() == 0


def test_an_id_the_gateway_does_not_hold_is_asked_of_the_upstreams_that_keep_state(
        gateway: Gateway, scripted: MockUpstream, responses_upstream: Upstream, active_key: str) -> None:
    """With "keeps state" on, OpenAI-style upstreams store their own responses: reading one goes to them."""
    Upstream.objects.filter(pk=responses_upstream.pk).update(keeps_state=True)
    held = {"id": "resp_upstream", "object": "response", "status": "completed", "output": []}
    scripted.script({"body": held}, {"status": 404, "body": {"error": {
        "message": "No response with id 'resp_gone'.", "type": "invalid_request_error", "param": None,
        "code": None}}})
    read = get(gateway, active_key, "/v1/responses/resp_upstream?include[]=x")
    assert read.status_code == 200 and read.json() == held
    asked = scripted.requests()[-1]
    assert (asked["method"], asked["path"]) == ("GET", "/v1/responses/resp_upstream")
    assert asked["headers"]["authorization"] == "Bearer sk-upstream-SECRET-456"
    gone = post(gateway, active_key, {}, path="/v1/responses/resp_gone/cancel")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert scripted.requests()[-1]["method"] == "POST"


def test_a_response_the_gateway_holds_is_answered_without_asking_the_upstream(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("ok"))
    final = streamed(gateway, active_key, {"input": "hi"})
    Upstream.objects.create(name="keeper", base_url=scripted.url, api="responses", keeps_state=True)
    assert get(gateway, active_key, f"/v1/responses/{final['id']}").json() == final
    assert len(scripted.requests()) == 1
