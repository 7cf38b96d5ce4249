"""``POST /v1/responses`` and ``POST /v1/chat/completions``: parse, authenticate, route, answer, record."""
from __future__ import annotations

from django.http import HttpResponseBase

from api import compaction
from api.background import run
from api.background.inbox import INBOX
from api.http.endpoint import ApiRequest, api_view
from api.pipeline.foreground import answer, relay_to, respond, warm_up
from api.pipeline.plan import prepare
from api.stored.memory import warming_up
from bridge.dialects import passthrough
from bridge.history import compaction as history
from bridge.validation import validate_chat, validate_compact, validate_responses
from logs.audit import client


@api_view("chat/completions")
async def chat_completions(request: ApiRequest) -> HttpResponseBase:
    body = validate_chat(request.json)
    request.exchange.session = request.exchange.session or client.session_in_body(body)
    return await answer(request, body, "chat/completions")


@api_view("responses")
async def responses(request: ApiRequest) -> HttpResponseBase:
    body = validate_responses(request.json)
    exchange = request.exchange
    exchange.session = exchange.session or client.session_in_body(body)
    if warming_up(request):  # a Responses socket's `generate: false`: no upstream is asked
        return await warm_up(request, body)
    plan = await prepare(request, body, "responses")
    if history.asked(body):  # Codex's remote compaction: an upstream that keeps state does it itself
        exchange.kind = compaction.KIND
        if not plan.routes[0].keeps_state:
            return await compaction.respond(request, plan)
    if plan.keeper is not None and plan.keeper.background:
        return await run.start(request, body, plan, await INBOX.open())
    return await respond(request, body, plan)


@api_view("responses/compact")
async def compact(request: ApiRequest) -> HttpResponseBase:
    """``POST /v1/responses/compact``: passed to an upstream that keeps state, answered by the gateway otherwise."""
    body = validate_compact(request.json)
    plan = await prepare(request, body, "responses")
    if plan.routes[0].keeps_state:
        request.exchange.kind = compaction.KIND
        return await relay_to(request, plan, passthrough.COMPACT, request.json)
    return await compaction.compact(request, plan)
