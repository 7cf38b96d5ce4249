"""A fast mock LLM server for the benchmark: raw asyncio HTTP/1.1, no framework, answers precomputed.

``python -m bench.mock --port N --deltas 100 --delay 0``. It serves, on 127.0.0.1 only:

    POST /v1/chat/completions   stream: a role chunk, N content deltas, a finish chunk, a usage
                                chunk when ``stream_options.include_usage`` is asked, ``[DONE]``;
                                not stream: one chat.completion JSON
    POST /v1/responses          stream: the canonical Responses sequence (created, in_progress,
                                output_item.added, content_part.added, N output_text.delta,
                                output_text.done, content_part.done, output_item.done,
                                completed); not stream: the final response object
    POST /v1/messages           stream: Anthropic Messages (message_start, a text block of N
                                text_delta, message_delta with the stop reason and usage,
                                message_stop); not stream: the message
    GET  /healthz               200
    GET  /_stats                connections accepted and requests served so far (the harness
                                reads it to show how well a gateway reuses its upstream connections)

Streams are sent with chunked transfer encoding, one socket write per SSE event, as a real
server sends one write per token; ``--delay`` seconds are slept between two deltas. The
bytes of every answer are built once per (model, shape) and reused, so the mock's own cost
per request stays close to the socket work.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

import orjson

HOST = "127.0.0.1"
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT = 120.0  # a keep-alive connection with no new request for this long is closed
READ_TIMEOUT = 30.0  # to read one request body
MAX_REQUESTS_PER_CONNECTION = 1_000_000
MAX_CACHED_ANSWERS = 64
KINDS = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/messages": "anthropic"}
WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def delta_texts(count: int) -> list[str]:
    """Return the ``count`` content deltas every answer streams (a word and a space each)."""
    return [f"{WORDS[i % len(WORDS)]} " for i in range(count)]


def _frame(payload: bytes) -> bytes:
    """Return ``payload`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(payload: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return _frame(head + b"data: " + orjson.dumps(payload) + b"\n\n")


def _head(status: int, content_type: str, *, length: int | None = None, keep_alive: bool = True) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
              413: "Payload Too Large"}.get(status, "OK")
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}",
             f"content-length: {length}" if length is not None else "transfer-encoding: chunked",
             "connection: keep-alive" if keep_alive else "connection: close"]
    if length is None:
        lines.append("cache-control: no-cache")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Answers:
    """The precomputed answers of one mock process, built on first use per (kind, model, usage)."""

    def __init__(self, deltas: int) -> None:
        self.texts = delta_texts(deltas)
        self.created = int(time.time())
        self._cache: dict[tuple[str, str, bool], tuple[bytes, list[bytes], bytes] | bytes] = {}

    def get(self, kind: str, model: str, usage: bool) -> tuple[bytes, list[bytes], bytes] | bytes:
        """Return (head, delta frames, tail) for a stream, or the whole JSON body."""
        key = (kind, model, usage)
        answer = self._cache.get(key)
        if answer is None:
            build = {"chat": self._chat_stream, "chat-json": self._chat_json,
                     "responses": self._responses_stream, "responses-json": self._responses_json,
                     "anthropic": self._messages_stream, "anthropic-json": self._messages_json}[kind]
            answer = build(model, usage)
            if len(self._cache) >= MAX_CACHED_ANSWERS:
                self._cache.clear()
            self._cache[key] = answer
        return answer

    def _chat_chunk(self, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": self.created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _usage(self) -> dict[str, int]:
        return {"prompt_tokens": 12, "completion_tokens": len(self.texts), "total_tokens": 12 + len(self.texts)}

    def _chat_stream(self, model: str, usage: bool) -> tuple[bytes, list[bytes], bytes]:
        head = _sse(self._chat_chunk(model, {"role": "assistant", "content": ""}))
        deltas = [_sse(self._chat_chunk(model, {"content": t})) for t in self.texts]
        tail = _sse(self._chat_chunk(model, {}, "stop"))
        if usage:
            tail += _sse({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": self.created,
                          "model": model, "choices": [], "usage": self._usage()})
        return head, deltas, tail + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"

    def _chat_json(self, model: str, usage: bool) -> bytes:
        return orjson.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": self.created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self.texts)},
                         "finish_reason": "stop"}],
            "usage": self._usage()})

    def _response(self, model: str, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        response: dict[str, Any] = {"id": "resp_bench", "object": "response", "created_at": self.created,
                                    "status": status, "model": model, "output": output}
        if status == "completed":
            response["usage"] = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
                                 "output_tokens": len(self.texts), "output_tokens_details": {"reasoning_tokens": 0},
                                 "total_tokens": 12 + len(self.texts)}
        return response

    def _item(self, status: str) -> dict[str, Any]:
        done = status == "completed"
        content = [{"type": "output_text", "text": "".join(self.texts), "annotations": []}] if done else []
        return {"id": "msg_bench", "type": "message", "role": "assistant", "status": status, "content": content}

    def _responses_stream(self, model: str, usage: bool) -> tuple[bytes, list[bytes], bytes]:
        seq = iter(range(1_000_000))
        where = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}

        def event(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

        text = "".join(self.texts)
        done_item = self._item("completed")
        head = (event("response.created", response=self._response(model, "in_progress", []))
                + event("response.in_progress", response=self._response(model, "in_progress", []))
                + event("response.output_item.added", output_index=0, item=self._item("in_progress"))
                + event("response.content_part.added", **where,
                        part={"type": "output_text", "text": "", "annotations": []}))
        deltas = [event("response.output_text.delta", **where, delta=t) for t in self.texts]
        tail = (event("response.output_text.done", **where, text=text)
                + event("response.content_part.done", **where, part=done_item["content"][0])
                + event("response.output_item.done", output_index=0, item=done_item)
                + event("response.completed", response=self._response(model, "completed", [done_item])))
        return head, deltas, tail + b"0\r\n\r\n"

    def _responses_json(self, model: str, usage: bool) -> bytes:
        return orjson.dumps(self._response(model, "completed", [self._item("completed")]))

    def _message(self, model: str, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
        return {"id": "msg_bench", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": 12, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
                          "output_tokens": len(self.texts) if stop else 1}}

    def _messages_stream(self, model: str, usage: bool) -> tuple[bytes, list[bytes], bytes]:
        head = (_sse({"type": "message_start", "message": self._message(model, [], None)}, "message_start")
                + _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                       "content_block_start"))
        deltas = [_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
                       "content_block_delta") for t in self.texts]
        tail = (_sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
                + _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": len(self.texts)}}, "message_delta")
                + _sse({"type": "message_stop"}, "message_stop"))
        return head, deltas, tail + b"0\r\n\r\n"

    def _messages_json(self, model: str, usage: bool) -> bytes:
        return orjson.dumps(self._message(model, [{"type": "text", "text": "".join(self.texts)}], "end_turn"))


class MockServer:
    """One connection handler per client; requests on a connection are served in order (keep-alive)."""

    def __init__(self, deltas: int, delay: float) -> None:
        self.answers = Answers(deltas)
        self.delay = delay
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if not await self.serve_one(reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection stays open."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except asyncio.IncompleteReadError:
            return False
        method, path, keep_alive, headers = _request_head(head)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._send_json(writer, 411, {"error": "send a content-length"}, keep_alive=False)
            return False
        length = int(headers.get("content-length", "0") or "0")
        if length > MAX_BODY:
            await self._send_json(writer, 413, {"error": "body too large"}, keep_alive=False)
            return False
        body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT) if length else b""
        if method == "GET" and path in ("/healthz", "/", "/_stats"):
            stats = {"connections": self.connections, "requests": self.requests} if path == "/_stats" else \
                {"status": "ok"}
            await self._send_json(writer, 200, stats, keep_alive=keep_alive)
        elif method != "POST" or path not in KINDS:
            await self._send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}},
                                  keep_alive=keep_alive)
        else:
            await self._answer(writer, path, body, keep_alive)
        return keep_alive

    async def _answer(self, writer: asyncio.StreamWriter, path: str, body: bytes, keep_alive: bool) -> None:
        """Answer a model request with the precomputed answer of its kind, whole or streamed."""
        try:
            request = orjson.loads(body) if body else {}
            model = str(request.get("model", "bench-model"))
        except (orjson.JSONDecodeError, AttributeError):
            await self._send_json(writer, 400, {"error": {"message": "send a JSON object"}}, keep_alive=keep_alive)
            return
        self.requests += 1
        kind = KINDS[path]
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        if not request.get("stream"):
            payload = self.answers.get(kind + "-json", model, usage)
            assert isinstance(payload, bytes)
            writer.write(_head(200, "application/json", length=len(payload), keep_alive=keep_alive) + payload)
            await writer.drain()
            return
        answer = self.answers.get(kind, model, usage)
        assert isinstance(answer, tuple)
        first, deltas, tail = answer
        writer.write(_head(200, "text/event-stream", keep_alive=keep_alive) + first)
        for frame in deltas:
            if self.delay:
                await asyncio.sleep(self.delay)
            writer.write(frame)
            await writer.drain()
        writer.write(tail)
        await writer.drain()

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, value: Any, *, keep_alive: bool) -> None:
        payload = orjson.dumps(value)
        writer.write(_head(status, "application/json", length=len(payload), keep_alive=keep_alive) + payload)
        await writer.drain()


def _request_head(head: bytes) -> tuple[str, str, bool, dict[str, str]]:
    """Return a request head's method, path (no query), whether the connection stays open, and its headers."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return method, target.split("?", 1)[0], keep_alive, headers


async def serve(port: int, deltas: int, delay: float) -> None:
    server = MockServer(deltas, delay)
    listener = await asyncio.start_server(server.handle, HOST, port, backlog=4096, reuse_address=True,
                                          limit=MAX_HEAD)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    async with listener:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--deltas", type=int, default=100, help="content deltas per answer (default 100)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between two deltas (default 0)")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.deltas, args.delay))


if __name__ == "__main__":
    main()
