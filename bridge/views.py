"""The OpenAI-compatible endpoints: parse, authenticate, choose upstream, stream, record."""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse

from bridge import metrics
from bridge import upstream as upstream_io
from bridge.audit import Exchange
from bridge.decorators import ApiRequest, api_view
from bridge.errors import GatewayError, ModelNotFoundError, UpstreamError, UpstreamStatusError
from bridge.events import ChatEvent
from bridge.request import ChatRequest, UpstreamOptions, to_chat_request
from bridge.sse import encode_event
from bridge.stream import TERMINAL, Phase, ResponseStream
from bridge.tap import StreamTap, failure_trailer, responses_tokens
from bridge.validation import validate_chat, validate_responses
from upstreams import cooldown
from upstreams.models import Outcome, Upstream, rank
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway")
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def choose_upstreams(request: ApiRequest, model: str, endpoint: str) -> list[Upstream]:
    """Return the upstreams to try for ``model``, best first (upstreams/routing.py says how fresh they are).

    Endpoints cooling down go last rather than away: when every upstream is failing,
    trying one beats refusing the request outright.
    """
    request.exchange.model = model
    candidates = rank(request.upstreams, model)
    if not candidates and (fresh := await ROUTING.fresh_upstreams(request.upstreams)) is not None:
        request.upstreams = fresh  # an upstream added a moment ago, in another process
        candidates = rank(fresh, model)
    if not candidates:
        raise ModelNotFoundError(f"The model '{model}' is not served by any enabled upstream.", param="model")
    cooling, failing = await cooldown.health(candidates, _endpoint_of(candidates[0], endpoint))
    request.exchange.failing = failing
    return sorted(candidates, key=lambda u: u.pk in cooling)


def _endpoint_of(upstream: Upstream, endpoint: str) -> str:
    """Return the upstream endpoint a client endpoint lands on (responses is bridged to chat)."""
    return endpoint if endpoint == "chat/completions" or upstream.supports_responses else "chat/completions"


def is_failover_error(exc: UpstreamError) -> bool:
    """Whether another upstream may take the request: connect faults, timeouts, 429 and 5xx."""
    if isinstance(exc, UpstreamStatusError):
        return exc.status == 429 or exc.status >= 500
    return True


@api_view("chat/completions")
async def chat_completions(request: ApiRequest) -> HttpResponseBase:
    body = validate_chat(request.json)
    upstream, upstream_response, _ = await connect(request, body, "chat/completions")
    return await passthrough(request, upstream_response, "chat/completions")


@api_view("responses")
async def responses(request: ApiRequest) -> HttpResponseBase:
    body = validate_responses(request.json)
    upstream, upstream_response, chat = await connect(request, body, "responses")
    if upstream.supports_responses:
        return await passthrough(request, upstream_response, "responses")
    return await bridge(request, upstream_response, body, chat)


async def connect(request: ApiRequest, body: dict, endpoint: str) -> tuple[Upstream, httpx.Response, ChatRequest | None]:
    """Open the answer of the first upstream that takes the request.

    Connect faults, timeouts, 429 and 5xx fail over to the next upstream serving the
    model, at most GATEWAY_MAX_ATTEMPTS in all; this all happens before the client has
    seen a byte. Each upstream gets the body its own way: passthrough or bridged.
    """
    exchange = request.exchange
    exchange.stream = bool(body.get("stream"))
    candidates = await choose_upstreams(request, body["model"], endpoint)
    error: UpstreamError | None = None
    for upstream in candidates[: max(settings.GATEWAY_MAX_ATTEMPTS, 1)]:
        target = upstream.upstream_model(body["model"])
        bridged = endpoint == "responses" and not upstream.supports_responses
        exchange.route(upstream, target, bridged=bridged)
        chat = to_chat_request(body, bridge_options(upstream, target)) if bridged else None
        sent_to = _endpoint_of(upstream, endpoint)
        try:
            response = await open_upstream(upstream, sent_to, chat.body if chat else {**body, "model": target},
                                           exchange)
        except UpstreamError as exc:
            if not is_failover_error(exc):
                raise
            logger.warning("upstream %s failed (%s) for request %s", upstream.name, exc.code, exchange.request_id)
            await cooldown.record_failure(upstream, sent_to)
            error = exc
            continue
        if upstream.pk in exchange.failing:
            await cooldown.record_success(upstream, sent_to)
        return upstream, response, chat
    assert error is not None
    raise error


async def passthrough(request: ApiRequest, upstream_response: httpx.Response, endpoint: str) -> HttpResponseBase:
    """Relay the answer of an upstream that speaks this API, bytes in, bytes out."""
    exchange = request.exchange
    tap = StreamTap("chat" if endpoint.startswith("chat") else "responses",
                    sse=upstream_io.is_event_stream(upstream_response))
    chunks = upstream_response.aiter_raw()
    try:
        with upstream_io.mapped_errors():
            first = await anext(chunks, b"")
    except BaseException:
        await upstream_response.aclose()
        raise
    exchange.mark_first_byte()
    relay = _relay(first, chunks, tap, upstream_response, exchange)
    return streaming_response(relay, upstream_response, exchange)


async def bridge(request: ApiRequest, upstream_response: httpx.Response, body: dict,
                 chat: ChatRequest | None) -> HttpResponseBase:
    """Answer a Responses request from a Chat-only upstream's stream, translated (bridge/)."""
    assert chat is not None
    exchange = request.exchange
    machine = ResponseStream(model=body["model"], tools=chat.tools, request=body, created_at=time.time())
    translated = _translate(machine, upstream_io.chat_events(upstream_response), upstream_response, exchange)
    if exchange.stream:
        return streaming_response(translated, upstream_response, exchange, content_type="text/event-stream")
    async for _ in translated:
        pass
    if machine.phase is Phase.FAILED:
        assert exchange.error is not None
        raise exchange.error
    return JsonResponse(machine.response)


def bridge_options(upstream: Upstream, model: str) -> UpstreamOptions:
    return UpstreamOptions(
        model=model, accepts_developer_role=upstream.accepts_developer_role,
        replay_reasoning=upstream.replay_reasoning, max_tokens_field=upstream.max_tokens_field,
        send_stream_options=upstream.send_stream_options, send_reasoning_effort=upstream.send_reasoning_effort)


async def _translate(machine: ResponseStream, batches: AsyncIterator[list[ChatEvent]],
                     upstream_response: httpx.Response,
                     exchange: Exchange) -> AsyncIterator[bytes]:
    """Yield the Responses stream for the upstream's Chat stream; it always ends in a terminal event."""
    exchange.outcome = Outcome.CLIENT_DISCONNECTED  # until the terminal event is out
    try:
        yield encode_events(machine.start())
        try:
            with upstream_io.mapped_errors():
                async for batch in batches:
                    exchange.mark_first_byte()
                    out = []
                    for event in batch:
                        out += machine.feed(event)
                        if machine.phase in TERMINAL:
                            break
                    if out:
                        yield encode_events(out)
                    if machine.phase in TERMINAL:
                        break
            if machine.phase not in TERMINAL:
                yield encode_events(machine.finish())
        except UpstreamError as error:
            exc = upstream_io.shutdown_error(upstream_response, error)
            exchange.fail(exc)
            yield encode_events(machine.fail(exc.code or "upstream_error", exc.message))
        except Exception as exc:  # a bug of ours: still end the stream properly
            logger.exception("bridge failed on request %s", exchange.request_id)
            yield encode_events(machine.fail("internal_error", f"The gateway failed ({type(exc).__name__})."))
            exchange.fail(GatewayError(f"bridge failed: {type(exc).__name__}"))
            return
        if machine.phase is not Phase.FAILED:
            exchange.outcome = Outcome.OK
        elif exchange.error is None:  # failed by the upstream's own error chunk
            error = machine.response["error"]
            exchange.fail(UpstreamError(error["message"], code=error["code"]))
    finally:
        exchange.tokens = responses_tokens(machine.usage or {})
        exchange.tool_calls = machine.tool_call_count
        await upstream_response.aclose()


def encode_events(events: list[dict]) -> bytes:
    return b"".join(encode_event(e) for e in events)


async def open_upstream(upstream: Upstream, endpoint: str, body: dict, exchange: Exchange) -> httpx.Response:
    """Send the request and return the answer, or raise the upstream's error with its back-off headers."""
    response = await upstream_io.send(upstream, endpoint, body, exchange.request_id)
    exchange.mark_connected()
    exchange.upstream_status = response.status_code
    exchange.passed_headers = upstream_io.backoff_headers(response)
    if response.status_code >= 400:
        raise await upstream_io.status_error(response, secret=upstream.api_key)
    return response


async def _relay(first: bytes, chunks: AsyncIterator[bytes], tap: StreamTap, upstream_response: httpx.Response,
                 exchange: Exchange) -> AsyncIterator[bytes]:
    """Yield the upstream's bytes as they come; end a broken stream with an error the client can read."""
    exchange.outcome = Outcome.CLIENT_DISCONNECTED  # until the last byte is out
    try:
        chunk = first
        try:
            with upstream_io.mapped_errors():
                while chunk:
                    tap.feed(chunk)
                    exchange.response_bytes += len(chunk)
                    yield chunk
                    chunk = await anext(chunks, b"")
            tap.close()
            if not tap.complete:
                raise UpstreamError("The upstream stream ended before it was complete.",
                                    code="upstream_protocol_error")
            if tap.error:
                exchange.outcome = Outcome.UPSTREAM_ERROR
                exchange.error_type = str(tap.error.get("code") or tap.error.get("type") or "upstream_error")
                exchange.error_message = str(tap.error.get("message", ""))[:2000]
            else:
                exchange.outcome = Outcome.OK
        except UpstreamError as error:
            exc = upstream_io.shutdown_error(upstream_response, error)
            exchange.fail(exc)
            if tap.sse:
                trailer = failure_trailer(tap, exc.code or "upstream_error", exc.message)
                exchange.response_bytes += len(trailer)
                yield trailer
    finally:
        exchange.tokens, exchange.tool_calls = tap.tokens, tap.tool_calls
        await upstream_response.aclose()


class RelayResponse(StreamingHttpResponse):
    """A streamed answer whose parts are already bytes: iterated as is, without Django's per-part wrapper."""

    def __init__(self, parts: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(parts, **kwargs)
        self.parts = parts

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.parts


def streaming_response(content: AsyncIterator[bytes], upstream_response: httpx.Response, exchange: Exchange,
                       content_type: str | None = None) -> StreamingHttpResponse:
    content_type = content_type or upstream_response.headers.get("content-type", "text/event-stream")
    response = RelayResponse(_recorded(content, exchange), status=upstream_response.status_code,
                             content_type=content_type, headers={**STREAM_HEADERS, **exchange.passed_headers})
    exchange.status = upstream_response.status_code
    # If the client leaves before the stream starts, Django drops the response unread:
    # the finalizer still closes the upstream and writes the audit row.
    weakref.finalize(response, _abandoned, exchange, upstream_response)
    return response


async def _recorded(content: AsyncIterator[bytes], exchange: Exchange) -> AsyncIterator[bytes]:
    """Yield ``content``, then write the audit row however the stream ended (done, broken, client gone)."""
    metrics.active_streams.inc()
    try:
        async for chunk in content:
            exchange.capture_response(chunk)
            yield chunk
    finally:
        metrics.active_streams.dec()
        await content.aclose()  # type: ignore[attr-defined]
        exchange.record()


def _abandoned(exchange: Exchange, upstream_response: httpx.Response) -> None:
    if exchange.recorded:
        return
    exchange.outcome = Outcome.CLIENT_DISCONNECTED
    exchange.record()
    if not upstream_response.is_closed:
        try:
            asyncio.get_running_loop().create_task(upstream_response.aclose())
        except RuntimeError:
            pass


@api_view("models", body=False)
async def models(request: ApiRequest) -> HttpResponseBase:
    """List the models the enabled upstreams name; globs are patterns, not models, so they are left out."""
    seen: dict[str, str] = {}
    for upstream in sorted(request.upstreams, key=lambda u: (-u.priority, u.name)):
        names = [p for p in upstream.patterns if not any(c in p for c in "*?[")] + list(upstream.aliases)
        for name in names:
            seen.setdefault(name, upstream.name)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in seen.items()]
    return JsonResponse({"object": "list", "data": data})


async def metrics_view(request: HttpRequest) -> HttpResponse:
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)


async def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    try:
        await sync_to_async(_ping_database)()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        from django.core.cache import cache

        try:
            await cache.aset("readyz", "1", 5)
            checks["redis"] = "ok" if await cache.aget("readyz") == "1" else "error: no value"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
