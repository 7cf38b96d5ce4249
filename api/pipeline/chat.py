"""A translated answer said to a Chat Completions client: one more consumer of the pipeline.

A Chat client on an upstream the gateway translates (Anthropic Messages) is answered as a
Responses client is, through the dialect's reader and ``ResponseStream``; its events are
then said as Chat chunks (bridge/chat_stream.py), streamed with SSE comments as heartbeats,
or as one ``chat.completion``.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from django.conf import settings
from django.http import HttpResponseBase

from api.http.answers import Answer, JsonAnswer, StreamAnswer
from api.http.endpoint import ApiRequest
from api.pipeline.plan import Reply
from api.pipeline.relay import Translation, pipeline_for
from bridge.chat_stream import ChatChunks, completion
from bridge.sse import encode_comment, encode_data
from logs.audit.exchange import Ending

DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = encode_comment("keep-alive")


async def answer_chat(request: ApiRequest, body: dict[str, Any], reply: Reply) -> HttpResponseBase:
    """Answer a Chat client from a translated reply: Chat chunks as they come, or the whole completion."""
    exchange = request.exchange
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if exchange.stream:
        answered = Answer(exchange, reply.response.status_code)
        translation = pipeline_for(reply, body, None, exchange, answered.ending)
        assert isinstance(translation, Translation)
        options = body.get("stream_options")
        said = ChatChunks(completion_id=completion_id, model=str(body["model"]), created=created,
                          usage=isinstance(options, dict) and options.get("include_usage") is True)
        return StreamAnswer(_chunks(translation, said), exchange, answered.hold(), status=reply.response.status_code,
                            headers=exchange.passed_headers, on_close=reply.response.aclose, beat=lambda: KEEP_ALIVE,
                            every=settings.GATEWAY_STREAM_HEARTBEAT)
    ending = Ending()
    translation = pipeline_for(reply, body, None, exchange, ending)
    assert isinstance(translation, Translation)
    return JsonAnswer.of(completion(await translation.whole(), completion_id=completion_id, created=created))


async def _chunks(translation: Translation, said: ChatChunks) -> AsyncGenerator[bytes]:
    """The Chat stream: every chunk the Responses events stand for, then [DONE] (not after an error)."""
    async with aclosing(translation.events()) as events:
        async for batch in events:
            chunks = [chunk for event in batch for chunk in said.feed(event)]
            if chunks:
                yield b"".join(encode_data(chunk) for chunk in chunks)
    if not translation.failed:
        yield DONE
