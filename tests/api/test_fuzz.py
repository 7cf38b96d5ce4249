"""Fuzzing with hypothesis: random and half-valid bodies never make the gateway fail on its own.

Against a real gateway: no 5xx, every error OpenAI-shaped, no traceback, no stream failed
with internal_error. Against the pure translator and chunk reader: only InvalidRequestError
escapes to_request, and read_chunk / read_completion never raise.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.dialects import UpstreamOptions
from bridge.dialects.chat import read_chunk, read_completion, to_request
from bridge.errors import InvalidRequestError
from bridge.events import UpstreamEvent
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

ERROR_KEYS = {"message", "type", "param", "code"}
# orjson (the gateway's parser) refuses lone surrogates, and httpx cannot even encode
# them, so text strategies leave category Cs out; the raw-bytes fuzz below covers them.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


def mix(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from one of ``strategies``, each as often: ``a | b`` leans heavily to ``a`` when generating."""
    return st.sampled_from(strategies).flatmap(lambda strategy: strategy)


# The range orjson reads as int (larger numbers become floats), so what a client can send.
SCALARS = mix(st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
              st.booleans(), TEXT, st.none())
JSON = st.recursive(SCALARS, lambda children: mix(st.lists(children, max_size=4),
                                                  st.dictionaries(TEXT, children, max_size=4)), max_leaves=12)


def sometimes(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, one time in four any JSON: deep paths get reached, odd types still tried."""
    return mix(valid, valid, valid, JSON)


def shaped(required: dict[str, st.SearchStrategy[Any]] | None = None,
           **optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required or {}, optional=optional)


PART = sometimes(shaped(type=sometimes(st.sampled_from(["input_text", "output_text", "text", "refusal", "input_image",
                                                        "input_file", "summary_text", "reasoning_text"])),
                        text=sometimes(TEXT), refusal=sometimes(TEXT), image_url=sometimes(TEXT),
                        detail=sometimes(st.sampled_from(["auto", "low", "high"]))))
CONTENT = sometimes(mix(TEXT, st.lists(PART, max_size=3)))
ROLE = sometimes(st.sampled_from(["user", "assistant", "system", "developer", "tool"]))
CALL_ID = sometimes(st.sampled_from(["call_1", "call_2", ""]))
ACTION = sometimes(shaped(command=sometimes(st.lists(TEXT, max_size=3)), working_directory=sometimes(TEXT),
                          timeout_ms=sometimes(st.integers())))


def item(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An input item of one type with all of that type's fields, each of them possibly odd."""
    return shaped({"type": st.just(kind), **fields})


# One strategy per item type, so fields meet the code that reads them; plus items of any shape.
ITEMS: list[st.SearchStrategy[dict[str, Any]]] = [
    shaped({"role": ROLE, "content": CONTENT}, type=st.just("message")),
    item("function_call", call_id=CALL_ID, name=sometimes(TEXT), namespace=sometimes(TEXT),
         arguments=sometimes(TEXT)),
    item("custom_tool_call", call_id=CALL_ID, name=sometimes(TEXT), namespace=sometimes(TEXT), input=sometimes(TEXT)),
    item("local_shell_call", call_id=CALL_ID, action=ACTION),
    *(item(kind, call_id=CALL_ID, output=CONTENT)
      for kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output")),
    item("reasoning", summary=CONTENT, content=CONTENT, encrypted_content=sometimes(TEXT)),
    shaped(type=sometimes(st.sampled_from(["message", "reasoning", "web_search_call", "item_reference"])), role=ROLE,
           content=CONTENT, call_id=CALL_ID, name=sometimes(TEXT), arguments=JSON, output=CONTENT, action=JSON,
           summary=CONTENT, id=TEXT),
]
ITEM = sometimes(mix(*ITEMS))
FUNCTION = shaped(name=sometimes(TEXT), description=sometimes(TEXT), parameters=JSON)
TOOL = sometimes(shaped(
    type=sometimes(st.sampled_from(["function", "custom", "local_shell", "namespace", "web_search"])),
    name=sometimes(TEXT), description=sometimes(TEXT), parameters=JSON, function=sometimes(FUNCTION),
    format=sometimes(shaped(type=sometimes(st.just("grammar")), syntax=TEXT, definition=sometimes(TEXT))),
    tools=sometimes(st.lists(shaped(type=sometimes(st.sampled_from(["function", "custom"])), name=sometimes(TEXT),
                                    parameters=JSON), max_size=2))))
TOOL_CHOICE = sometimes(mix(st.sampled_from(["auto", "none", "required", "other"]),
                            shaped(type=sometimes(st.sampled_from(["function", "custom", "local_shell",
                                                                   "allowed_tools"])),
                                   name=sometimes(TEXT), mode=sometimes(st.sampled_from(["auto", "required"])),
                                   function=sometimes(shaped(name=sometimes(TEXT))))))
TEXT_FORMAT = sometimes(shaped(format=sometimes(shaped(
    type=sometimes(st.sampled_from(["text", "json_object", "json_schema"])), name=sometimes(TEXT), schema=JSON,
    strict=JSON))))
STREAM = sometimes(mix(st.booleans(), st.none()))
MODEL = sometimes(st.just("mock-model"))
RESPONSES_FIELDS: dict[str, st.SearchStrategy[Any]] = dict(
    stream=STREAM, tools=sometimes(st.lists(TOOL, max_size=3)), tool_choice=TOOL_CHOICE, text=TEXT_FORMAT,
    reasoning=sometimes(shaped(effort=sometimes(st.sampled_from(["low", "high"])), summary=JSON)),
    instructions=sometimes(TEXT), max_output_tokens=JSON, temperature=JSON, top_p=JSON,
    parallel_tool_calls=JSON, user=JSON, store=JSON, include=JSON, metadata=JSON)
RESPONSES_REQUIRED = {"model": MODEL, "input": sometimes(mix(st.lists(ITEM, min_size=1, max_size=4), TEXT))}
# Three in four bodies have both required fields, so many examples reach the translator.
RESPONSES_BODY = mix(*[shaped(RESPONSES_REQUIRED, **RESPONSES_FIELDS)] * 3, shaped(**RESPONSES_REQUIRED,
                                                                                  **RESPONSES_FIELDS))
MESSAGE = sometimes(shaped(role=sometimes(st.sampled_from(["user", "assistant", "system", "developer", "tool"])),
                           content=CONTENT, tool_call_id=sometimes(TEXT), name=sometimes(TEXT),
                           tool_calls=sometimes(st.lists(shaped(id=TEXT, type=JSON, function=FUNCTION),
                                                         max_size=2))))
# stream_options is left out: the scripted mock reads it as an object, and an upstream that
# crashes on a bad one would answer 5xx for its own reasons.
CHAT_FIELDS: dict[str, st.SearchStrategy[Any]] = dict(
    stream=STREAM, tools=sometimes(st.lists(TOOL, max_size=2)), tool_choice=TOOL_CHOICE, max_tokens=JSON,
    temperature=JSON, response_format=JSON)
CHAT_REQUIRED = {"model": MODEL, "messages": sometimes(st.lists(MESSAGE, max_size=4))}
CHAT_BODY = mix(*[shaped(CHAT_REQUIRED, **CHAT_FIELDS)] * 3, shaped(**CHAT_REQUIRED, **CHAT_FIELDS))
# Bodies that are not JSON objects at all: any JSON value, or bytes (truncated JSON, lone surrogates).
ANY_BODY = mix(JSON.map(lambda value: json.dumps(value).encode()), st.binary(max_size=64), st.sampled_from(
    [b'{"model": "m", "input": "\\ud800"}', b'{"model": "m", "input": [', b"", b"\xff\xfe", b"[]", b"null"]))

GATEWAY_SETTINGS = settings(max_examples=150, deadline=None, database=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PURE_SETTINGS = settings(max_examples=1000, deadline=None, database=None)


def check_answer(response: httpx.Response, sent: bytes) -> None:
    """The gateway's own invariants for any request it answers (docs/errors.md)."""
    assert response.status_code < 500, response.text
    # Echoed fields may carry the client's own text: only a traceback the client did not send counts.
    assert "Traceback" not in response.text or b"Traceback" in sent
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
        assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["type"], str)
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        # SSE lines end at CR or LF only; str.splitlines() would also split at U+0085,
        # U+2028... which JSON leaves unescaped in echoed client text.
        for line in response.text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if line.startswith("data:") and line != "data: [DONE]":
                data = json.loads(line[5:])
                error = data.get("response", {}).get("error") if data.get("type") == "response.failed" else None
                assert not error or error["code"] != "internal_error", data
                assert "error" not in data or set(data["error"]) >= {"message"}, data
    else:
        assert isinstance(response.json(), dict)


class Poster:
    """POST raw bodies to the gateway, counting the answers so a test can tell the fuzz got deep."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.answered: Counter[str] = Counter()

    def __call__(self, path: str, content: bytes) -> httpx.Response:
        response = self.client.post(path, content=content, headers={"content-type": "application/json"})
        error = response.json()["error"]["code"] if response.status_code >= 400 else ""
        self.answered[f"{response.status_code} {error}".strip()] += 1
        return response


@pytest.fixture
def post(gateway: Gateway, scripted: MockUpstream, active_key: str) -> Iterator[Poster]:
    """A client of the running gateway, whose upstream answers every request with a short text."""
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})  # the last step repeats
    with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {active_key}"}, timeout=30) as client:
        yield Poster(client)


@pytest.fixture
def lenient_upstream(transactional_db: None, scripted: MockUpstream) -> Upstream:
    """A Chat-only upstream with every compatibility option on (DeepSeek-like): more translator paths run."""
    return Upstream.objects.create(name="chat-lenient", base_url=scripted.base_url, accepts_developer_role=True,
                                   replay_reasoning=True, send_reasoning_effort=True,
                                   max_tokens_field="max_completion_tokens")


def test_fuzzed_responses_bodies_never_make_the_gateway_fail(post: Poster, lenient_upstream: Upstream) -> None:
    @GATEWAY_SETTINGS
    @given(body=RESPONSES_BODY)
    def run(body: dict[str, Any]) -> None:
        sent = json.dumps(body).encode()
        check_answer(post("/v1/responses", sent), sent)

    run()
    # Enough bodies got through to the bridge: 11 to 54 of the 150 in the runs seen (hypothesis draws anew each run).
    assert post.answered["200"] >= 5, post.answered


def test_fuzzed_chat_bodies_never_make_the_gateway_fail(post: Poster, chat_upstream: Upstream) -> None:
    @GATEWAY_SETTINGS
    @given(body=CHAT_BODY)
    def run(body: dict[str, Any]) -> None:
        sent = json.dumps(body).encode()
        check_answer(post("/v1/chat/completions", sent), sent)

    run()
    assert post.answered["200"] >= 15, post.answered  # enough bodies got through to the upstream


def test_bodies_that_are_not_objects_get_a_400_on_both_endpoints(post: Poster, chat_upstream: Upstream) -> None:
    @settings(GATEWAY_SETTINGS, max_examples=60)
    @given(raw=ANY_BODY, path=st.sampled_from(["/v1/responses", "/v1/chat/completions"]))
    def run(raw: bytes, path: str) -> None:
        response = post(path, raw)
        check_answer(response, raw)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            assert response.status_code == 400

    run()


OPTIONS = st.builds(UpstreamOptions, model=st.none() | TEXT, accepts_developer_role=st.booleans(),
                    replay_reasoning=st.booleans(),
                    max_tokens_field=st.sampled_from(["max_tokens", "max_completion_tokens"]),
                    send_stream_options=st.booleans(), send_reasoning_effort=st.booleans())


# Valid model and a list of items, most of the time: that is where the translator's work is.
TRANSLATABLE = shaped({"model": st.just("m"), "input": st.lists(ITEM, min_size=1, max_size=5)}, **RESPONSES_FIELDS)


@PURE_SETTINGS
# Found by this test: a reasoning item's `content`/`summary` that is a number (not a list) raised
# TypeError when the upstream replays reasoning, and the gateway answered 500.
@example(body={"model": "m", "input": [{"type": "reasoning", "content": 1}]},
         options=UpstreamOptions(replay_reasoning=True))
@example(body={"model": "m", "input": [{"type": "reasoning", "summary": 2.5}]},
         options=UpstreamOptions(replay_reasoning=True))
@given(body=mix(TRANSLATABLE, TRANSLATABLE, RESPONSES_BODY, st.dictionaries(TEXT, JSON, max_size=5)),
       options=OPTIONS)
def test_to_request_raises_only_invalid_request_error(body: dict[str, Any], options: UpstreamOptions) -> None:
    try:
        chat = to_request(body, options)
    except InvalidRequestError:
        return
    orjson.dumps(chat.body)  # upstream.send encodes it with orjson: it must be encodable
    assert all(isinstance(m, dict) and m["role"] in {"system", "developer", "user", "assistant", "tool"}
               for m in chat.body["messages"])


CHUNK = sometimes(shaped(
    choices=sometimes(st.lists(sometimes(shaped(
        delta=sometimes(shaped(content=CONTENT, reasoning_content=CONTENT, reasoning=CONTENT, refusal=JSON,
                               tool_calls=sometimes(st.lists(sometimes(shaped(
                                   index=JSON, id=JSON, type=JSON,
                                   function=sometimes(shaped(name=JSON, arguments=JSON)))), max_size=3)))),
        message=JSON, finish_reason=sometimes(st.sampled_from(["stop", "length", "tool_calls", ""])))),
        max_size=2)),
    usage=sometimes(shaped(prompt_tokens=JSON, completion_tokens=JSON, total_tokens=JSON,
                           prompt_tokens_details=JSON, completion_tokens_details=JSON)),
    error=JSON))


@PURE_SETTINGS
@given(chunk=CHUNK)
def test_read_chunk_and_read_completion_never_raise(chunk: Any) -> None:
    for events in (read_chunk(chunk), read_completion(chunk)):
        assert isinstance(events, list)
        assert all(isinstance(event, UpstreamEvent) for event in events)
