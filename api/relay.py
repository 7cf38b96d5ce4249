"""Answer a routed request from an upstream: failover before the first byte, then relay or translate.

``connect`` tries the upstreams serving the model in turn and returns the first answer
(a ``Connection``). Its dialect decides the rest: a dialect that translates (the Chat
bridge) is read into events and re-encoded by ``ResponseStream``; any other is relayed
byte for byte, with a ``StreamTap`` watching. Either way a stream ends in a terminal
event, and its ``RelayResponse`` writes the one audit row when it is over.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
from django.conf import settings
from django.http import HttpResponseBase, JsonResponse

from api import client, stored
from api.decorators import ApiRequest
from api.stored import Keeper
from api.streams import ClosingStream
from bridge.dialects import Dialect, UpstreamRequest, dialect_for
from bridge.dialects.passthrough import RESPONSES
from bridge.errors import (
    BridgeError,
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    ShuttingDownError,
    UpstreamError,
    UpstreamStatusError,
)
from bridge.events import UsageReported
from bridge.sse import encode_event
from bridge.stream import TERMINAL, Phase, ResponseStream
from bridge.tap import StreamTap, failure_trailer
from bridge.validation import nesting_error
from logs.audit.exchange import Exchange
from logs.models import Outcome
from logs.recording import recorder
from plumbing import metrics
from plumbing.shutdown import SHUTDOWN
from upstreams import cooldown
from upstreams.models import Upstream, rank
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway")
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(frozen=True, slots=True)
class Route:
    """One upstream to try, the dialect it is spoken to in, and whether its endpoint failed lately."""

    upstream: Upstream
    dialect: Dialect
    failing: bool  # recent failures on this endpoint: a success clears their count

    @property
    def keeps_state(self) -> bool:
        """Whether the upstream keeps Responses state itself, and is spoken to in its own API."""
        return self.upstream.keeps_state and not self.dialect.translates


@dataclass(frozen=True, slots=True)
class Connection:
    """What ``connect`` opened: the upstream that took the request, what it was sent, and its unread answer."""

    upstream: Upstream
    dialect: Dialect
    sent: UpstreamRequest
    response: httpx.Response


class Progress(Protocol):
    """What the relay tells as a stream goes: to the request's Exchange, or to a replay's stand-in (api/replay.py)."""

    request_id: str
    usage: UsageReported | None
    tool_calls: int

    def mark_first_byte(self) -> None: ...


@dataclass(slots=True)
class Ending:
    """How a stream ended, as its relay saw it; ``RelayResponse`` hands it to ``Exchange.finish``."""

    outcome: str | None = Outcome.CLIENT_DISCONNECTED  # until the last byte is out; None: follows the error
    error: BridgeError | None = None

    def fail(self, error: BridgeError) -> None:
        self.outcome, self.error = None, error

    def complete(self) -> None:
        self.outcome, self.error = Outcome.OK, None


async def answer(request: ApiRequest, body: dict[str, Any], api: str) -> HttpResponseBase:
    """Return the answer to a validated request to ``api``, from the first upstream that takes it."""
    plan = await prepare(request, body, api)
    return await respond(request, body, plan)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a request goes and what it is sent: the upstreams to try, the body to route, its keeper."""

    routes: list[Route]
    routed: dict[str, Any]
    keeper: Keeper | None


async def prepare(request: ApiRequest, body: dict[str, Any], api: str) -> Plan:
    """Choose the upstreams for a request and take its stored state in.

    A Responses request keeps its state one of two ways. When the best upstream keeps state
    itself (its switch in the admin: OpenAI, Azure), the request goes to it untouched, and
    fails over only to upstreams that keep state too (another would not know the ids).
    Otherwise the gateway keeps it (api/stored.py): the upstream is sent the history in
    the request's place, and the answer is stored before it ends.
    """
    routes = await choose_upstreams(request, body["model"], api)
    routed, keeper = body, None
    if api == "responses":
        if routes[0].keeps_state:
            routes = [route for route in routes if route.keeps_state]
        else:
            routed, keeper = await stored.take_in(request, body)
    return Plan(routes, routed, keeper)


async def respond(request: ApiRequest, body: dict[str, Any], plan: Plan) -> HttpResponseBase:
    """Answer in the foreground: connect, then relay or translate (``body``: what the client sent)."""
    connection = await connect(request, plan.routed, plan.routes, asked=body)
    if connection.dialect.translates:
        return await translate(request, connection, body, plan.keeper)
    return await passthrough(request, connection, plan.keeper)


async def choose_upstreams(request: ApiRequest, model: str, api: str) -> list[Route]:
    """Return the upstreams to try for ``model``, best first (upstreams/routing.py says how fresh they are).

    Endpoints cooling down go last rather than away: when every upstream is failing,
    trying one beats refusing the request outright. Each upstream's cool-down is that of
    the endpoint its own dialect sends to (a Chat-only upstream's is chat/completions).
    """
    request.exchange.model = model
    candidates = rank(request.upstreams, model)
    if not candidates and (fresh := await ROUTING.fresh_upstreams(request.upstreams)) is not None:
        request.upstreams = fresh  # an upstream added a moment ago, in another process
        candidates = rank(fresh, model)
    if not candidates:
        raise ModelNotFoundError(f"The model '{model}' is not served by any enabled upstream.", param="model")
    dialects = [dialect_for(api, upstream.supports_responses) for upstream in candidates]
    cooling, failing = await cooldown.health([(u, d.endpoint) for u, d in zip(candidates, dialects, strict=True)])
    routes = [Route(u, d, failing=u.pk in failing) for u, d in zip(candidates, dialects, strict=True)]
    return sorted(routes, key=lambda route: route.upstream.pk in cooling)


def is_failover_error(exc: UpstreamError) -> bool:
    """Whether another upstream may take the request: connect faults, timeouts, 429 and 5xx."""
    if isinstance(exc, UpstreamStatusError):
        return exc.status == 429 or exc.status >= 500
    return True


async def connect(request: ApiRequest, body: dict[str, Any], routes: list[Route],
                  asked: dict[str, Any] | None = None) -> Connection:
    """Open the answer of the first upstream (of ``routes``, best first) that takes the request.

    Connect faults, timeouts, 429 and 5xx fail over to the next upstream serving the
    model, at most GATEWAY_MAX_ATTEMPTS in all; this all happens before the client has
    seen a byte. Each upstream gets the body in its own dialect, and one whose dialect
    cannot honour what the client ``asked`` (the body before its history was taken in) is
    passed over; when none can, the client is told why.
    """
    exchange = request.exchange
    exchange.stream = bool(body.get("stream"))
    error: UpstreamError | None = None
    refused: InvalidRequestError | None = None  # by a dialect: told only when no upstream was tried
    verdicts: dict[Dialect, InvalidRequestError | None] = {}  # a body is checked once per dialect
    tried = 0
    for route in routes:
        if tried >= max(settings.GATEWAY_MAX_ATTEMPTS, 1):
            break
        upstream, dialect = route.upstream, route.dialect
        if dialect not in verdicts:
            verdicts[dialect] = _refusal(dialect, asked if asked is not None else body)
        if verdicts[dialect] is not None:
            refused = refused or verdicts[dialect]
            continue
        tried += 1
        target = upstream.upstream_model(body["model"])
        exchange.route(upstream, target, bridged=dialect.translates)
        options = upstream.options(target)
        sent = dialect.to_request(body, options)
        exchange.recorder = await recorder.start(upstream, dialect, options, asked if asked is not None else body,
                                                 body, sent)
        asked_at = time.perf_counter()
        try:
            response = await open_upstream(upstream, dialect.endpoint, sent.body, exchange)
        except orjson.JSONEncodeError:  # nested too deep to be written: the client's to fix, not a 500
            raise nesting_error(asked if asked is not None else body) from None
        except UpstreamError as exc:
            exchange.failed_attempt(upstream, client.host_port(upstream), exc, asked_at)
            if not is_failover_error(exc):
                raise
            logger.warning("upstream %s failed (%s) for request %s", upstream.name, exc.code, exchange.request_id)
            await cooldown.record_failure(upstream, dialect.endpoint)
            error = exc
            continue
        if route.failing:
            await cooldown.record_success(upstream, dialect.endpoint)
        return Connection(upstream, dialect, sent, response)
    failure = error or refused
    assert failure is not None
    raise failure


def refusal(routes: list[Route], body: dict[str, Any]) -> InvalidRequestError | None:
    """Return why no upstream of ``routes`` can honour ``body`` (the first one's reason), or None if one can.

    ``connect`` finds this out as it goes; a background response must know before it is queued.
    """
    reasons = [_refusal(dialect, body) for dialect in dict.fromkeys(route.dialect for route in routes)]
    return None if any(reason is None for reason in reasons) else reasons[0]


def _refusal(dialect: Dialect, body: dict[str, Any]) -> InvalidRequestError | None:
    """Return why ``dialect`` cannot honour ``body``, or None when it can."""
    try:
        dialect.check(body)
    except InvalidRequestError as exc:
        return exc
    return None


async def open_upstream(upstream: Upstream, endpoint: str, body: dict[str, Any], exchange: Exchange) -> httpx.Response:
    """Send the request and return the answer, or raise the upstream's error with its back-off headers."""
    response = await client.send(upstream, endpoint, body, exchange.request_id)
    if exchange.recorder is not None:
        exchange.recorder.watch(response)
    exchange.mark_connected()
    exchange.upstream_status = response.status_code
    exchange.passed_headers = client.backoff_headers(response.headers)
    if response.status_code >= 400:
        raise await client.status_error(response, secret=upstream.api_key)
    return response


async def ask_state_keepers(request: ApiRequest, endpoint: str) -> HttpResponseBase | None:
    """Relay a request about a stored response the gateway does not hold to the upstreams that keep state.

    With the "keeps state" switch on, an upstream (OpenAI, Azure) stores its own responses:
    a ``GET``/``DELETE``/cancel/input_items for one of its ids is its to answer. They are
    asked in priority order; the first that does not answer 404 is relayed as it answered.
    None: no such upstream, or none knows the id.
    """
    keepers = [u for u in request.upstreams if u.keeps_state and u.supports_responses]
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
        return await passthrough(request, Connection(upstream, RESPONSES, UpstreamRequest(body={}), response))
    return None


async def passthrough(request: ApiRequest, connection: Connection, keeper: Keeper | None = None) -> HttpResponseBase:
    """Relay the answer of an upstream that speaks the client's API, bytes in, bytes out.

    A JSON answer to be stored is read whole first: it is kept before any of it leaves.
    """
    exchange, upstream_response = request.exchange, connection.response
    tap = StreamTap(connection.dialect.wire, sse=client.is_event_stream(upstream_response))
    chunks = upstream_response.aiter_raw()
    try:
        with client.mapped_errors(connection.upstream):
            first = await anext(chunks, b"")
            if keeper is not None and not tap.sse:
                first += b"".join([chunk async for chunk in chunks])
    except BaseException:
        await upstream_response.aclose()
        raise
    exchange.mark_first_byte()
    ending = Ending()
    return RelayResponse(relayed(first, chunks, tap, upstream_response, exchange, ending, keeper), upstream_response,
                         exchange, ending)


async def translate(request: ApiRequest, connection: Connection, body: dict[str, Any],
                    keeper: Keeper | None = None) -> HttpResponseBase:
    """Answer a Responses request from an upstream of another dialect, its answer translated (bridge/).

    The Response object echoes the client's ``body``; the upstream was sent the routed one.
    """
    exchange, upstream_response, dialect = request.exchange, connection.response, connection.dialect
    assert dialect.read_chunk is not None and dialect.read_body is not None
    sent = connection.sent
    machine = ResponseStream(model=body["model"], tools=sent.tools, unsent=sent.unsent, request=body,
                             created_at=time.time(), clock=time.time)
    ending = Ending()
    events = client.read_events(upstream_response, dialect.read_chunk, dialect.read_body)
    encoded = _translate(machine, events, upstream_response, exchange, ending, keeper)
    if exchange.stream:
        return RelayResponse(encoded, upstream_response, exchange, ending, content_type="text/event-stream")
    async for _ in encoded:
        pass
    if machine.phase is Phase.FAILED:
        assert ending.error is not None
        raise ending.error
    return JsonResponse(machine.response)


def shutdown_error(response: httpx.Response, exc: BridgeError) -> BridgeError:
    """Return the error to report for a stream that broke: ours if the shutdown closed it."""
    return ShuttingDownError() if SHUTDOWN.aborted(response) else exc


def encode_events(events: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(e) for e in events)


async def _translate(machine: ResponseStream, batches: AsyncIterator[list[Any]], upstream_response: httpx.Response,
                     exchange: Exchange, ending: Ending, keeper: Keeper | None) -> AsyncIterator[bytes]:
    """Yield the Responses stream for the upstream's events, encoded (``translated`` says how it ends)."""
    async with aclosing(translated(machine, batches, upstream_response, exchange, ending, keeper)) as events:
        async for batch in events:
            yield encode_events(batch)


async def translated(machine: ResponseStream, batches: AsyncIterator[list[Any]], upstream_response: httpx.Response,
                     exchange: Progress, ending: Ending, keeper: Keeper | None) -> AsyncGenerator[list[dict[str, Any]]]:
    """Yield the Responses events for the upstream's, batch by batch; they always end in a terminal event.

    The batch that holds the terminal event is yielded only once the response is stored.
    """

    async def done(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if keeper is not None and machine.phase in TERMINAL:
            await keeper.keep(machine.response, events)
        return events

    try:
        yield machine.start()
        try:
            with client.mapped_errors():
                async for batch in batches:
                    exchange.mark_first_byte()
                    out = []
                    for event in batch:
                        out += machine.feed(event)
                        if machine.phase in TERMINAL:
                            break
                    if out:
                        yield await done(out)
                    if machine.phase in TERMINAL:
                        break
            if machine.phase not in TERMINAL:
                yield await done(machine.finish())
        except UpstreamError as error:
            exc = shutdown_error(upstream_response, error)
            ending.fail(exc)
            yield await done(machine.fail(exc.code or "upstream_error", exc.message))
        except Exception as exc:  # a bug of ours: still end the stream properly
            logger.exception("bridge failed on request %s", exchange.request_id)
            yield await done(machine.fail("internal_error", f"The gateway failed ({type(exc).__name__})."))
            ending.fail(GatewayError(f"bridge failed: {type(exc).__name__}"))
            return
        if machine.phase is not Phase.FAILED:
            ending.complete()
        elif ending.error is None:  # failed by the upstream's own error chunk
            reported = machine.response["error"]
            ending.fail(UpstreamError(reported["message"], code=reported["code"]))
    finally:
        exchange.usage = machine.reported_usage
        exchange.tool_calls = machine.tool_call_count
        await upstream_response.aclose()


async def relayed(first: bytes, chunks: AsyncIterator[bytes], tap: StreamTap, upstream_response: httpx.Response,
                  exchange: Progress, ending: Ending, keeper: Keeper | None = None) -> AsyncIterator[bytes]:
    """Yield the upstream's bytes as they come; end a broken stream with an error the client can read.

    With a ``keeper``, the read that holds the finished Response object goes out only once
    it is stored (a JSON answer comes here whole: see ``passthrough``).
    """
    try:
        chunk = first
        try:
            with client.mapped_errors():
                while chunk:
                    tap.feed(chunk)
                    if keeper is not None and not tap.sse:
                        tap.close()
                    if keeper is not None and tap.final_response is not None:
                        await keeper.keep(tap.final_response)
                    yield chunk
                    chunk = await anext(chunks, b"")
            tap.close()
            if not tap.complete:
                raise UpstreamError("The upstream stream ended before it was complete.",
                                    code="upstream_protocol_error")
            if tap.error:
                code = str(tap.error.get("code") or tap.error.get("type") or "upstream_error")
                ending.fail(UpstreamError(str(tap.error.get("message", "")), code=code))
            else:
                ending.complete()
        except UpstreamError as error:
            exc = shutdown_error(upstream_response, error)
            ending.fail(exc)
            if tap.sse:
                trailer = failure_trailer(tap, exc.code or "upstream_error", exc.message)
                yield trailer
    finally:
        exchange.usage, exchange.tool_calls = tap.usage, tap.tool_calls
        await upstream_response.aclose()


class RelayResponse(ClosingStream):
    """A streamed answer: however it ends, ``aclose()`` closes the upstream and writes the one audit row.

    Its parts are already bytes, so they are sent as they are, without Django's per-part
    wrapper. The API app (api/app.py) always calls ``aclose()``, even when the client left
    before the first part was sent, when the relay never started.
    """

    def __init__(self, parts: AsyncIterator[bytes], upstream_response: httpx.Response, exchange: Exchange,
                 ending: Ending, content_type: str | None = None) -> None:
        content_type = content_type or upstream_response.headers.get("content-type", "text/event-stream")
        super().__init__(parts, status=upstream_response.status_code, content_type=content_type,
                         headers={**STREAM_HEADERS, **exchange.passed_headers})
        exchange.status = upstream_response.status_code
        self.parts, self.upstream_response, self.exchange, self.ending = parts, upstream_response, exchange, ending
        self._sending: AsyncGenerator[bytes, None] | None = None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._sending = self._send()
        return self._sending

    async def _send(self) -> AsyncGenerator[bytes, None]:
        metrics.active_streams.inc()
        try:
            async for chunk in self.parts:
                self.exchange.response_bytes += len(chunk)  # what the client is sent, bridged or relayed
                self.exchange.capture_response(chunk)
                yield chunk
        finally:
            metrics.active_streams.dec()

    async def aclose(self) -> None:
        """End the stream however far it got: close the relay and the upstream, then write the audit row."""
        if self._closed:
            return
        self._closed = True
        if self._sending is not None:
            await self._sending.aclose()
        await self.parts.aclose()  # type: ignore[attr-defined]
        await self.upstream_response.aclose()
        self.exchange.finish(self.ending.outcome, self.ending.error)
