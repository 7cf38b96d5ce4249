"""The foreground answer: the pipeline's output sent to the client that waits for it, streamed or whole.

One consumer of the pipeline (api/pipeline/relay.py): a relayed answer goes out as it came,
its first part read before the headers; a translated one streams its events, or is read to
its end for a client that asked for one JSON Response (its failure answered as an error).
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpResponseBase

from api.http.answers import Answer, JsonAnswer, StreamAnswer
from api.http.endpoint import ApiRequest
from api.pipeline import client
from api.pipeline.chat import answer_chat
from api.pipeline.plan import Plan, Reply, Route, connect, prepare
from api.pipeline.relay import Relay, Translation, pipeline_for
from api.stored.keeper import Keeper
from api.stored.memory import memory_of
from bridge.dialects import Dialect, UpstreamRequest
from bridge.dialects.passthrough import RESPONSES
from bridge.errors import UpstreamError
from bridge.events import Finished, UpstreamEvent
from bridge.history.items import input_items
from bridge.stream import ResponseStream
from logs.audit.exchange import Ending

logger = logging.getLogger("gateway")


async def answer(request: ApiRequest, body: dict[str, Any], api: str) -> HttpResponseBase:
    """Return the answer to a validated request to ``api``, from the first upstream that takes it."""
    return await respond(request, body, await prepare(request, body, api))


async def respond(request: ApiRequest, body: dict[str, Any], plan: Plan) -> HttpResponseBase:
    """Answer in the foreground: connect, then relay or translate (``body``: what the client sent)."""
    exchange = request.exchange
    reply = await connect(request, plan.routed, plan.routes, asked=body)
    if not reply.dialect.translates:
        return await relayed(request, reply, plan.keeper)
    if reply.dialect.answers == "chat":
        return await answer_chat(request, body, reply)
    if exchange.stream:
        answered = Answer(exchange, reply.response.status_code)
        pipeline = pipeline_for(reply, body, plan.keeper, exchange, answered.ending)
        return StreamAnswer(pipeline.chunks(), exchange, answered.hold(), status=reply.response.status_code,
                            headers=exchange.passed_headers, on_close=reply.response.aclose, beat=pipeline.beat,
                            every=settings.GATEWAY_STREAM_HEARTBEAT)
    ending = Ending()
    translation = pipeline_for(reply, body, plan.keeper, exchange, ending)
    assert isinstance(translation, Translation)
    return JsonAnswer.of(await translation.whole())


async def warm_up(request: ApiRequest, body: dict[str, Any]) -> HttpResponseBase:
    """Codex's warm-up on a Responses socket (``generate: false``): a response with no output, from no upstream.

    The socket remembers its input (api/stored/memory.py), for the first turn to continue it.
    """
    exchange = request.exchange
    exchange.model, exchange.stream = str(body["model"])[:200], True
    items = input_items(body["input"])
    memory = memory_of(request)
    if memory is not None:
        memory.answering(items)
    answered = Answer(exchange, 200)
    machine = ResponseStream(model=str(body["model"]), request=body, created_at=time.time(), clock=time.time)
    warming = Translation(machine, _nothing_but_the_end(), None, None, exchange, answered.ending)
    return StreamAnswer(warming.chunks(), exchange, answered.hold())


async def _nothing_but_the_end() -> AsyncIterator[list[UpstreamEvent]]:
    yield [Finished(reason="stop")]


async def relayed(request: ApiRequest, reply: Reply, keeper: Keeper | None) -> HttpResponseBase:
    """Relay the answer of an upstream that speaks the client's API, bytes in, bytes out.

    A JSON answer to be stored is read whole first: it is kept before any of it leaves.
    """
    exchange, upstream_response = request.exchange, reply.response
    answered = Answer(exchange, upstream_response.status_code)
    relay = Relay(reply, keeper, exchange, answered.ending)
    await relay.first()
    return StreamAnswer(relay.chunks(), exchange, answered.hold(), status=upstream_response.status_code,
                        content_type=upstream_response.headers.get("content-type", "text/event-stream"),
                        headers=exchange.passed_headers, on_close=upstream_response.aclose, beat=relay.beat,
                        every=settings.GATEWAY_STREAM_HEARTBEAT)


async def relay_to(request: ApiRequest, plan: Plan, dialect: Dialect, body: dict[str, Any]) -> HttpResponseBase:
    """Relay ``body`` as ``dialect`` says to the first of the plan's upstreams that takes it (failover as usual)."""
    routes = [Route(route.upstream, dialect, route.failing) for route in plan.routes]
    return await relayed(request, await connect(request, body, routes), None)


async def ask_state_keepers(request: ApiRequest, endpoint: str) -> HttpResponseBase | None:
    """Relay a request about a stored response the gateway does not hold to the upstreams that keep state.

    With the "keeps state" switch on, an upstream (OpenAI, Azure) stores its own responses:
    a ``GET``/``DELETE``/cancel/input_items for one of its ids is its to answer. They are
    asked in priority order; the first that does not answer 404 is relayed as it answered.
    None: no such upstream, or none knows the id.
    """
    keepers = [u for u in request.upstreams if u.keeps_state and u.api == "responses"]
    query = request.META.get("QUERY_STRING", "")
    body = request.json if request.method == "POST" and isinstance(getattr(request, "json", None), dict) else None
    for upstream in sorted(keepers, key=lambda u: (-u.priority, u.name)):
        request.exchange.route(upstream, "", bridged=False)
        try:
            response = await client.send(upstream, endpoint, body, request.exchange.request_id,
                                         method=request.method or "GET", query=query)
        except UpstreamError as exc:
            logger.warning("upstream %s failed (%s) asked for %s", upstream.name, exc.code, endpoint)
            continue
        if response.status_code == 404:
            await response.aclose()
            continue
        request.exchange.mark_connected()
        request.exchange.upstream_status = response.status_code
        request.exchange.stream = client.is_event_stream(response)
        if response.status_code >= 400:  # its error, as it said it: status, body, back-off headers
            request.exchange.passed_headers = client.backoff_headers(response.headers)
            raise await client.status_error(response, secret=upstream.api_key)
        return await relayed(request, Reply(upstream, RESPONSES, UpstreamRequest(body={}), response), None)
    return None
