"""``POST /v1/responses`` and ``POST /v1/chat/completions``: parse, authenticate, route, answer, record."""
from __future__ import annotations

from django.http import HttpResponseBase

from api.background import run
from api.background.inbox import INBOX
from api.http.endpoint import ApiRequest, api_view
from api.pipeline.foreground import answer, respond, warm_up
from api.pipeline.plan import prepare
from api.stored.memory import warming_up
from bridge.validation import validate_chat, validate_responses


@api_view("chat/completions")
async def chat_completions(request: ApiRequest) -> HttpResponseBase:
    return await answer(request, validate_chat(request.json), "chat/completions")


@api_view("responses")
async def responses(request: ApiRequest) -> HttpResponseBase:
    body = validate_responses(request.json)
    if warming_up(request):  # a Responses socket's `generate: false`: no upstream is asked
        return await warm_up(request, body)
    plan = await prepare(request, body, "responses")
    if plan.keeper is not None and plan.keeper.background:
        return await run.start(request, body, plan, await INBOX.open())
    return await respond(request, body, plan)
