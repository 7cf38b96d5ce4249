"""The wrapper every API view shares: request id, client key, JSON body, errors, audit row."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from bridge.audit import Exchange
from gatewaysite.limits import TOO_LARGE
from bridge.errors import (
    AuthenticationError,
    BridgeError,
    GatewayError,
    InvalidRequestError,
    RateLimitError,
    RequestTooLargeError,
)
from bridge.ratelimit import Rate, Verdict, parse_rate, verdict, window
from upstreams import dbthread, sharedstate
from upstreams.models import ClientKey, Outcome, Upstream
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway")

# last_used is written at most this often per key, not on every request.
LAST_USED_EVERY = 60.0
_last_used_written: dict[int, float] = {}


class ApiRequest(HttpRequest):
    """An HttpRequest after ``api_view``: who sent it, what they sent, its audit record."""

    client_key: ClientKey | None
    upstreams: list[Upstream]  # the enabled ones, read with the key
    json: Any
    exchange: Exchange


def error_response(exc: BridgeError, request_id: str | None = None) -> HttpResponse:
    """Return ``exc`` as OpenAI's JSON error, with its status and headers."""
    response = HttpResponse(orjson.dumps(exc.to_dict()), status=exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response[name] = value
    if request_id:
        response["x-request-id"] = request_id
    return response


async def authenticate(request: HttpRequest) -> ClientKey | None:
    """Return the request's client key, and put the enabled upstreams on ``request.upstreams``.

    Both come from this process's routing copy (upstreams/routing.py), which is read
    from the database at most once per GATEWAY_ROUTING_TTL.
    """
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else ""
    key, request.upstreams = await ROUTING.context(secret)  # type: ignore[attr-defined]
    if key is None and not settings.GATEWAY_ALLOW_ANONYMOUS:
        if not secret:
            raise AuthenticationError("Missing client API key: send 'Authorization: Bearer <key>'.")
        # Never echo the secret back: error messages end up in client logs.
        raise AuthenticationError("Incorrect or revoked client API key.")
    if key is not None:
        await _touch(key)
    return key


async def _touch(key: ClientKey) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(key.pk, -LAST_USED_EVERY) >= LAST_USED_EVERY:
        _last_used_written[key.pk] = now
        await dbthread.run(_write_last_used, key.pk)


def _write_last_used(pk: int) -> None:
    ClientKey.objects.filter(pk=pk).update(last_used=timezone.now())


async def enforce_rate_limit(request: HttpRequest, key: ClientKey | None) -> Verdict | None:
    """Count this request against its key's budget (anonymous ones: their IP's); raise 429 when spent.

    A fixed window in Django's cache: one INCR per request, shared by every worker that
    shares the cache. Bursts of up to twice the rate can straddle a window boundary.
    """
    rate = _rate_for(key)
    if rate is None:
        return None
    now = time.time()
    number, left = window(rate, now)
    who = f"key:{key.pk}" if key else f"ip:{request.META.get('REMOTE_ADDR', '-')}"
    counter = f"ratelimit:{who}:{rate.seconds}:{number}"
    try:
        count = await sharedstate.call(sharedstate.incr_or_start, counter, left + 1)
    except Exception as exc:
        # Fail open: a cache outage must not take the API down with it (readyz reports it).
        logger.warning("rate limit not enforced, the cache failed: %s", type(exc).__name__)
        return None
    judged = verdict(rate, count, now)
    if not judged.allowed:
        raise RateLimitError(f"Rate limit reached for this key ({rate.count} requests per {rate.seconds}s); "
                             f"try again in {judged.reset}s.", headers=judged.headers())
    return judged


def _rate_for(key: ClientKey | None) -> Rate | None:
    for text in (key.rate_limit if key else "", settings.GATEWAY_RATE_LIMIT):
        try:
            rate = parse_rate(text)
        except ValueError:
            logger.error("ignoring the bad rate limit %r of key %s", text, key)
            continue
        if rate is not None:
            return rate
    return None


def parse_json(request: HttpRequest, exchange: Exchange | None = None) -> Any:
    try:
        if getattr(request, "scope", {}).get(TOO_LARGE):
            raise RequestDataTooBig()
        raw = request.body
    except RequestDataTooBig:
        raise RequestTooLargeError(
            f"Request body is larger than {settings.GATEWAY_MAX_BODY_BYTES} bytes.", param=None
        ) from None
    if exchange is not None:
        exchange.capture_request(raw)  # before parsing: a body that is not JSON is worth seeing too
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. Send a JSON object.", code="invalid_json"
        ) from None


def api_view(endpoint: str, *, body: bool = True) -> Callable[
    [Callable[[ApiRequest], Awaitable[HttpResponseBase]]], Callable[[HttpRequest], Awaitable[HttpResponseBase]]
]:
    """Wrap an async API view so that every outcome is an OpenAI-shaped answer and one audit row.

    Non-streaming answers are recorded here; a streaming view's relay records its own
    row when the stream ends, however it ends.
    """

    def decorate(view: Callable[[ApiRequest], Awaitable[HttpResponseBase]]) -> Callable[
        [HttpRequest], Awaitable[HttpResponseBase]
    ]:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest) -> HttpResponseBase:
            exchange = Exchange.begin(request, endpoint)
            request.exchange = exchange  # type: ignore[attr-defined]
            limits: Verdict | None = None
            try:
                request.client_key = exchange.key = await authenticate(request)  # type: ignore[attr-defined]
                limits = await enforce_rate_limit(request, exchange.key)
                request.json = parse_json(request, exchange) if body else None  # type: ignore[attr-defined]
                response = await view(request)  # type: ignore[arg-type]
            except BridgeError as exc:
                exchange.fail(exc)
                response = error_response(exc)
            except asyncio.CancelledError:
                exchange.outcome = Outcome.CLIENT_DISCONNECTED
                exchange.record()
                raise
            except Exception as exc:
                logger.exception("unhandled error in %s (request %s)", endpoint, exchange.request_id)
                error = GatewayError(f"The gateway failed to handle this request ({type(exc).__name__}).")
                exchange.fail(error)
                response = error_response(error)
            response["x-request-id"] = exchange.request_id
            # The gateway's own budget, unless the upstream's (copied, E3) already said more.
            for name, value in (limits.headers() if limits else {}).items():
                if name not in response:
                    response[name] = value
            if not response.streaming:
                exchange.status = response.status_code
                exchange.response_bytes = len(response.content)
                exchange.capture_response(response.content)
                exchange.mark_first_byte()
                exchange.record()
            return response

        return wrapper

    return decorate
