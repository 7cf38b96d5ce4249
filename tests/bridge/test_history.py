"""The history a request stands for (bridge/history/items.py): stored forms, references, the state fields' checks."""
from __future__ import annotations

from typing import Any

import pytest

from bridge.errors import InvalidRequestError
from bridge.history.items import check_state_fields, for_upstream, input_items, references, resolve, wants_store
from tests.bridge.helpers import counter_ids

STORED_FORMS = [
    pytest.param("hi", [{"type": "message", "role": "user", "id": "msg_0", "status": "completed",
                         "content": [{"type": "input_text", "text": "hi"}]}], id="a-string-is-one-user-message"),
    pytest.param([{"role": "developer", "content": "Be brief."}],
                 [{"type": "message", "role": "developer", "id": "msg_0", "status": "completed",
                   "content": [{"type": "input_text", "text": "Be brief."}]}], id="role-only-message-gets-a-type"),
    pytest.param([{"role": "assistant", "content": "Paris."}],
                 [{"type": "message", "role": "assistant", "id": "msg_0", "status": "completed",
                   "content": [{"type": "output_text", "text": "Paris."}]}], id="assistant-text-is-output-text"),
    pytest.param([{"type": "function_call_output", "call_id": "c1", "output": "21 C"}],
                 [{"type": "function_call_output", "call_id": "c1", "output": "21 C", "id": "fco_0"}],
                 id="tool-output-gets-an-id"),
    pytest.param([{"type": "message", "id": "msg_mine", "role": "user", "content": [{"type": "input_text",
                                                                                     "text": "x"}]}],
                 [{"type": "message", "id": "msg_mine", "role": "user", "status": "completed",
                   "content": [{"type": "input_text", "text": "x"}]}], id="a-client-id-is-kept"),
    pytest.param([{"type": "item_reference", "id": "msg_7"}, {"id": "rs_8"}],
                 [{"type": "item_reference", "id": "msg_7"}, {"type": "item_reference", "id": "rs_8"}],
                 id="references-stay-references-with-or-without-type"),
]


@pytest.mark.parametrize(("raw", "stored"), STORED_FORMS)
def test_history_input_items_are_stored_typed_with_ids(raw: Any, stored: list[dict[str, Any]]) -> None:
    assert input_items(raw, counter_ids()) == stored


def test_history_input_items_refuse_an_item_that_is_not_an_object() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        input_items([{"role": "user", "content": "hi"}, 7])
    assert raised.value.param == "input[1]"


def test_history_references_are_resolved_in_place_and_in_order() -> None:
    items = input_items([{"role": "user", "content": "a"}, {"type": "item_reference", "id": "msg_x"},
                         {"role": "user", "content": "b"}, {"type": "item_reference", "id": "fc_y"}], counter_ids())
    assert references(items) == ["msg_x", "fc_y"]
    found = {"msg_x": {"type": "message", "id": "msg_x", "role": "assistant"},
             "fc_y": {"type": "function_call", "id": "fc_y", "call_id": "c"}}
    assert [item["id"] for item in resolve(items, found)] == ["msg_0", "msg_x", "msg_1", "fc_y"]


def test_history_an_unresolved_reference_is_an_error_naming_it() -> None:
    items = input_items([{"role": "user", "content": "a"}, {"type": "item_reference", "id": "msg_gone"}])
    with pytest.raises(InvalidRequestError) as raised:
        resolve(items, {})
    assert (raised.value.param, raised.value.code, raised.value.status) == ("input[1]", "item_not_found", 400)
    assert "msg_gone" in raised.value.message


@pytest.mark.parametrize(("body", "param"), [
    pytest.param({"previous_response_id": 7}, "previous_response_id", id="previous-id-not-a-string"),
    pytest.param({"previous_response_id": ""}, "previous_response_id", id="previous-id-empty"),
    pytest.param({"store": "yes"}, "store", id="store-not-a-boolean"),
])
def test_history_malformed_state_fields_are_400s_naming_them(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        check_state_fields(body)
    assert raised.value.param == param


@pytest.mark.parametrize(("body", "stored"), [
    pytest.param({}, True, id="store-defaults-to-true-as-in-the-api"),
    pytest.param({"store": None}, True, id="null-is-the-default"),
    pytest.param({"store": True}, True, id="true"),
    pytest.param({"store": False}, False, id="false-as-codex-sends"),
])
def test_history_store_defaults_to_true(body: dict[str, Any], stored: bool) -> None:
    assert wants_store(body) is stored
    assert check_state_fields({**body, "previous_response_id": "resp_1"}) == "resp_1"


def test_history_items_go_upstream_without_their_ids() -> None:
    items = input_items([{"role": "user", "content": "a"}, {"type": "function_call_output", "call_id": "c1",
                                                             "output": "x"}], counter_ids())
    assert for_upstream(items) == [
        {"type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": "a"}]},
        {"type": "function_call_output", "call_id": "c1", "output": "x"}]
    assert items[0]["id"] == "msg_0"  # the stored copies keep theirs
