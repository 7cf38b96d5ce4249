"""The mock upstream's ASGI app (``manage.py mockupstream``): it plays the steps of upstreams/mock/scenarios.py.

It speaks Chat Completions (and, for passthrough tests, a minimal Responses stream). Tests
post their own steps to ``/_mock/script`` (with ``"models": false``, GET /models answers
404), read what the mock received from ``/_mock/requests``, and open a ``gate`` with
``/_mock/release``.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from upstreams.mock import anthropic
from upstreams.mock.prefix import PrefixCache
from upstreams.mock.scenarios import (
    DEMO,
    DEMO_MODELS,
    MOCK_CONTEXT,
    SCENARIOS,
    Step,
    calls_of,
    codex_turn,
    completion_from_chunks,
    demo_error,
    expand_chunk,
    functions_only_problem,
    last_user_text,
    required_call,
    responses_events,
)


class MockUpstream:
    """The ASGI app of one mock server; its state lives as long as the process."""

    def __init__(self, scenario: str) -> None:
        if scenario not in SCENARIOS and scenario != DEMO:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join([*SCENARIOS, DEMO])}")
        self.demo = scenario == DEMO
        self.steps: list[Step] = list(SCENARIOS["text" if self.demo else scenario])
        self.calls = 0
        self.demo_calls: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.lists_models = True  # false: GET /models answers 404, as some servers do
        self.listings = 0  # GET /models answered (GET /_mock/listings)
        self.cache = anthropic.PromptCache()  # what POST /v1/messages has written to its prompt cache
        self.prefixes = PrefixCache()  # what Chat requests have computed, for steps with "prefix_cache"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if await self._controlled(scope["path"], scope["method"], body, send):
            return
        await self._answer(scope, body, receive, send)

    async def _controlled(self, path: str, method: str, body: bytes, send: Any) -> bool:
        """Answer the test's control requests (``/_mock/...``) and ``GET /models``; False for anything else."""
        if path == "/_mock/requests":
            await _send_json(send, 200, self.requests)
        elif path == "/_mock/script" and method == "POST":
            script = json.loads(body)
            steps = SCENARIOS[script["scenario"]] if "scenario" in script else script["steps"]
            self.steps, self.calls, self.requests = list(steps), 0, []
            self.prefixes = PrefixCache()
            self.release = asyncio.Event()
            self.lists_models = script.get("models", True)
            await _send_json(send, 200, {"ok": True})
        elif path == "/_mock/release":
            self.release.set()
            await _send_json(send, 200, {"ok": True})
        elif path == "/_mock/listings":
            await _send_json(send, 200, {"count": self.listings})
        elif path.endswith("/models"):
            await self._models(send)
        else:
            return False
        return True

    async def _models(self, send: Any) -> None:
        """The model list, with vLLM's context window field; 404, as some servers answer, when scripted so."""
        if not self.lists_models:
            return await _send_json(send, 404, {"error": {"message": "Not found", "type": "invalid_request_error",
                                                          "param": None, "code": "not_found"}})
        self.listings += 1
        names = DEMO_MODELS if self.demo else ["mock-model"]
        await _send_json(send, 200, {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "mock", "max_model_len": MOCK_CONTEXT}
            for name in names]})

    async def _answer(self, scope: dict[str, Any], body: bytes, receive: Any, send: Any) -> None:
        """Record the request and play the next step, while watching for the client (the gateway) hanging up.

        Tests check that a client who leaves makes the gateway cancel its upstream request at once.
        """
        path = scope["path"]
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {"_raw": body.decode("utf-8", "replace")}
        headers = {k.decode("latin1"): v.decode("latin1") for k, v in scope["headers"]}
        record = {"method": scope["method"], "path": path, "headers": headers, "body": request,
                  "disconnected_at": None}
        self.requests.append(record)
        if self.demo and path.endswith("/responses"):  # the demo stands for a Chat-only server: it is bridged
            return await _send_json(send, 404, {"error": {"message": "Not found", "type": "invalid_request_error",
                                                          "param": None, "code": "not_found"}})
        if path.endswith("/messages"):
            step = self._messages_step(request, headers)
        else:
            step = self.next_step(request)
            if step.get("prefix_cache") and isinstance(request, dict):
                step = self.prefixes.step(step, request)
        if path.endswith("/responses"):
            problem = functions_only_problem(request) if step.get("functions_only") and isinstance(request, dict) \
                else None
            step = _refusal(problem) if problem else _as_responses_step(step, request)
        play = asyncio.ensure_future(self.play(step, request if isinstance(request, dict) else {}, send))
        watch = asyncio.ensure_future(_disconnected(receive))
        done, _ = await asyncio.wait([play, watch], return_when=asyncio.FIRST_COMPLETED)
        if watch in done:
            record["disconnected_at"] = time.time()
            play.cancel()
        else:
            watch.cancel()

    def _messages_step(self, request: Any, headers: dict[str, str]) -> Step:
        """An Anthropic Messages answer: the refusal the real API would give, else the next step as Messages."""
        problem = anthropic.problem(request, headers)
        if problem:
            return {"status": 400, "body": anthropic.error_body("invalid_request_error", problem)}
        step = self.next_step(request)
        if "body" in step or "raw" in step:
            return step
        played = anthropic.events(step, request, self.cache.account(request))
        if not request.get("stream"):
            return {"status": step.get("status", 200), "body": anthropic.message(played)}
        return {**step, "raw": anthropic.sse(played)}

    def next_step(self, request: Any) -> Step:
        steps, calls = self.steps, self.calls
        self.calls += 1
        if self.demo and isinstance(request, dict):
            return self.demo_step(request)
        return steps[min(calls, len(steps) - 1)]

    def demo_step(self, request: dict[str, Any]) -> Step:
        """`make run`'s demo: the model picks the scenario; demo-errors fails every time, as its prompt says.

        A request that requires a tool call gets one, as a real server's (the probe asks so).
        """
        model = str(request.get("model", ""))
        name = next((n for n in ("tools5", "tools", "errors") if f"demo-{n}" in model), "text")
        if name == "errors":
            return demo_error(last_user_text(request))
        turn = codex_turn(name, request) or required_call(request)
        if turn is not None:
            return turn
        steps, calls = SCENARIOS[name], self.demo_calls.get(name, 0)
        self.demo_calls[name] = calls + 1
        return steps[min(calls, len(steps) - 1)]

    async def play(self, step: Step, request: dict[str, Any], send: Any) -> None:
        status = step.get("status", 200)
        headers = dict(step.get("headers", {}))
        model = str(request.get("model", "mock-model"))
        created = int(time.time())
        if "body" in step:
            payload = step["body"]
            raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            ctype = step.get("content_type", "text/plain" if isinstance(payload, str) else "application/json")
            await _start(send, status, ctype, headers)
            await send({"type": "http.response.body", "body": raw})
            return
        if not request.get("stream", False) and "raw" not in step:
            return await _send_json(send, status, completion_from_chunks(step.get("chunks", []), model, created),
                                    headers)
        await _start(send, status, step.get("content_type", "text/event-stream"), headers)
        pause_after, pause = step.get("pause", (None, 0.0))
        if pause_after == -1:
            await asyncio.sleep(pause)
        for n, piece in enumerate(_pieces(step, request, model, created)):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if n == 0 and step.get("gate"):
                await self.release.wait()
            elif step.get("delay"):
                await asyncio.sleep(step["delay"])
            if n == pause_after:
                await asyncio.sleep(pause)
        if step.get("hang"):
            await asyncio.sleep(3600)
        await send({"type": "http.response.body", "body": b""})


def _pieces(step: Step, request: dict[str, Any], model: str, created: int) -> list[bytes]:
    """What a streamed step sends, piece by piece: its raw strings, or its chunks as ``data:`` lines."""
    if "raw" in step:
        return [p.encode() for p in step["raw"]]
    chunks = step.get("chunks", [])
    wants_usage = (request.get("stream_options") or {}).get("include_usage")
    if wants_usage and not any("usage" in c for c in chunks):
        chunks = [*chunks, {"usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}]
    pieces = [b"data: " + json.dumps(expand_chunk(c, model, created), ensure_ascii=False).encode() + b"\n\n"
              for c in chunks]
    if pieces and step.get("repeat"):
        pieces[:1] = pieces[:1] * int(step["repeat"])
    if step.get("done", True):
        pieces.append(b"data: [DONE]\n\n")
    return pieces


def _refusal(message: str) -> Step:
    return {"status": 400, "body": {"error": {"message": message, "type": "BadRequestError", "param": None,
                                              "code": 400}}}


def _as_responses_step(step: Step, request: dict[str, Any]) -> Step:
    """Answer a Responses request with the text the Chat step would have streamed."""
    if "body" in step or "raw" in step:
        return step
    text = "".join(c.get("text", "") for c in step.get("chunks", []))
    events = responses_events(text, str(request.get("model", "mock-model")), calls_of(step.get("chunks", [])))
    if not request.get("stream", False):
        return {"body": events[-1]["response"]}
    raw = [f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events]
    return {**step, "raw": raw}


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _start(send: Any, status: int, content_type: str, headers: dict[str, str]) -> None:
    pairs = [(b"content-type", content_type.encode())]
    pairs += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})


async def _send_json(send: Any, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
    await _start(send, status, "application/json", headers or {})
    await send({"type": "http.response.body", "body": json.dumps(value, ensure_ascii=False).encode()})
