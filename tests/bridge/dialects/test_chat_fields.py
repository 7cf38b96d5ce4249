"""What the Chat bridge does with each Responses request field (chat.check): translated, kept, no effect, or a 400."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.dialects.chat.fields import KEPT_BY_GATEWAY, NO_EFFECT, TRANSLATED, check
from bridge.errors import InvalidRequestError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
BASE: dict[str, Any] = {"model": "m", "input": "hi"}


@pytest.mark.parametrize("fixture", ["codex-0.169-request.json", "codex-0.169-request-after-tool-call.json"])
def test_chat_check_passes_everything_codex_sends(fixture: str) -> None:
    check(json.loads((FIXTURES / fixture).read_text()))


@pytest.mark.parametrize("name", sorted(NO_EFFECT | KEPT_BY_GATEWAY | TRANSLATED))
def test_chat_check_passes_every_listed_field(name: str) -> None:
    check({**BASE, name: None})


REFUSED = [
    pytest.param({"temperature_": 1}, "temperature_", "unknown_parameter", id="an-unknown-field"),
    pytest.param({"max_tool_calls": 3}, "max_tool_calls", "unsupported_parameter", id="a-tool-call-cap"),
    pytest.param({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "read this"}, {"type": "input_file", "file_id": "file_1"}]}]},
        "input[0].content[1]", "unsupported_content", id="a-file"),
    pytest.param({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_2"}]}]},
                 "input[0].content[0]", "unsupported_content", id="an-image-by-file-id"),
    pytest.param({"input": [{"type": "message", "role": "user", "content": [{"type": "input_audio"}]}]},
                 "input[0].content[0]", "unsupported_content", id="audio"),
]


@pytest.mark.parametrize(("fields", "param", "code"), REFUSED)
def test_chat_check_refuses_what_the_bridge_cannot_honour(fields: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        check({**BASE, **fields})
    assert (raised.value.param, raised.value.code, raised.value.status) == (param, code, 400)


@pytest.mark.parametrize("fields", [
    pytest.param({"top_logprobs": 5, "include": ["message.output_text.logprobs"]}, id="logprobs-are-asked-for"),
    pytest.param({"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}, id="an-image-by-url-is-sent"),
])
def test_chat_check_lets_through_what_it_can_send(fields: dict[str, Any]) -> None:
    check({**BASE, **fields})
