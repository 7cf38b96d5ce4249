"""The wrapper every API view shares: request id, client key, rate limit, JSON body, errors, audit row.

``error_response`` is the one place an error becomes an HTTP answer (its body is
``BridgeError.to_dict()``, bridge/errors.py).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from bridge.errors import (
    AuthenticationError,
    BridgeError,
    DatabaseUnavailableError,
    GatewayError,
    InvalidRequestError,
    RateLimitError,
    RequestTooLargeError,
    ShuttingDownError,
)
from logs.audit.exchange import Exchange
from logs.models import Outcome
from plumbing import dbthread, sharedstate
from plumbing.limits import TOO_LARGE
from plumbing.ratelimit import Rate, Verdict, parse_rate, verdict, window
from plumbing.shutdown import SHUTDOWN
from upstreams.models import ClientKey, Upstream
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
    response = HttpResponse(exc.wire_body() or orjson.dumps(exc.to_dict()), status=exc.status,
                            content_type="application/json")
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
    ip = request.META.get("REMOTE_ADDR", "-")
    if secret and ip in _guessing and not ROUTING.knows(secret):  # a dict miss for everyone else
        _refuse_if_guessing(ip)
    key, request.upstreams = await ROUTING.context(secret)  # type: ignore[attr-defined]
    if key is None and not settings.GATEWAY_ALLOW_ANONYMOUS:
        if not secret:
            raise AuthenticationError("Missing client API key: send 'Authorization: Bearer <key>'.")
        await _count_bad_key(ip)
        exchange = getattr(request, "exchange", None)
        if exchange is not None:  # a revoked key is named on the row: staff see who is still using it
            try:
                exchange.key = await ROUTING.revoked_key(secret)  # no extra query with a routing copy
            except DatabaseError:
                pass
        # Never echo the secret back: error messages end up in client logs.
        raise AuthenticationError("Incorrect or revoked client API key.")
    if key is not None:
        await _touch(key)
    return key


# Addresses that sent more bad keys than GATEWAY_AUTH_FAILURES_PER_MINUTE, until when (monotonic).
_guessing: dict[str, float] = {}
MAX_GUESSING = 10_000


def _refuse_if_guessing(ip: str) -> None:
    """Refuse (429) a key this process does not know from an address that has sent too many bad ones.

    Keys already known to the process are still served from that address (a NAT shared
    with a guesser); only unknown ones are refused, before any database lookup.
    """
    until = _guessing.get(ip)
    if until is None:
        return
    left = until - time.monotonic()
    if left <= 0:
        _guessing.pop(ip, None)
        return
    raise RateLimitError(f"Too many requests with incorrect API keys from this address; try again in "
                         f"{int(left) + 1}s.", headers={"retry-after": str(int(left) + 1)})


async def _count_bad_key(ip: str) -> None:
    """Count a bad key against its address's budget (shared by every process through the cache)."""
    limit = settings.GATEWAY_AUTH_FAILURES_PER_MINUTE
    if limit <= 0:
        return
    rate = Rate(count=limit, seconds=60)
    number, left = window(rate, time.time())
    try:
        count = await sharedstate.call(sharedstate.incr_or_start, f"authfail:{ip}:{number}", left + 1)
    except Exception:
        return  # fail open, as rate limits do (the breaker logs the outage)
    if count >= limit:
        if len(_guessing) >= MAX_GUESSING:
            _guessing.clear()
        _guessing[ip] = time.monotonic() + left


async def _touch(key: ClientKey) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(key.pk, -LAST_USED_EVERY) >= LAST_USED_EVERY:
        _last_used_written[key.pk] = now
        try:
            await dbthread.run(_write_last_used, key.pk)
        except DatabaseError:  # a bookkeeping write: it waits for the next minute, not the request
            logger.debug("last_used of key %s not written: the database is unavailable", key.pk)


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
    except sharedstate.SharedStateUnavailable:
        return None  # fail open; the breaker logged the outage once
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


ApiView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]  # (request: ApiRequest, **url_kwargs)
View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def api_view(endpoint: str, *, body: bool | tuple[str, ...] = True,
             methods: tuple[str, ...] = ()) -> Callable[[ApiView], View]:
    """Wrap an async API view so that every outcome is an OpenAI-shaped answer and one audit row.

    An answer that is not streamed is recorded here, once, however it ends (an error, the
    client leaving, a refusal while the process drains); a streamed one is recorded by its
    ``RelayResponse`` when the stream ends. The endpoint name is kept on the view
    (``view.endpoint``): the URL conf is then the one list of the API's endpoints. ``methods``:
    the methods it takes (any when empty); another gets 405 with ``Allow``. ``body``: whether
    the JSON body is parsed (``request.json``): always, never, or for the methods named.
    """

    def decorate(view: ApiView) -> View:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            exchange = Exchange.begin(request, endpoint)
            request.exchange = exchange  # type: ignore[attr-defined]
            limits: Verdict | None = None
            response: HttpResponseBase | None = None
            outcome: str | None = Outcome.CLIENT_DISCONNECTED  # until there is an answer
            error: BridgeError | None = None
            refused = SHUTDOWN.draining  # a request that came in on a connection kept alive from before
            try:
                if refused:
                    raise ShuttingDownError(headers={"connection": "close"})
                if methods and request.method not in methods:
                    raise InvalidRequestError(f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                                              code="method_not_allowed", status=405,
                                              headers={"allow": ", ".join(methods)})
                request.client_key = exchange.key = await authenticate(request)  # type: ignore[attr-defined]
                limits = await enforce_rate_limit(request, exchange.key)
                parsed = body is True or (isinstance(body, tuple) and request.method in body)
                request.json = parse_json(request, exchange) if parsed else None  # type: ignore[attr-defined]
                response = await view(request, *args, **kwargs)
                outcome = None  # ok, or what the stream's end says
            except BridgeError as exc:
                outcome, error, response = (Outcome.REJECTED if refused else None), exc, error_response(exc)
            except DatabaseError as exc:  # the database is away: a clear 503, never a 500
                logger.warning("database unavailable in %s (request %s): %s", endpoint, exchange.request_id,
                               type(exc).__name__)
                error = DatabaseUnavailableError()
                outcome, response = None, error_response(error)
            except Exception as exc:
                logger.exception("unhandled error in %s (request %s)", endpoint, exchange.request_id)
                error = GatewayError(f"The gateway failed to handle this request ({type(exc).__name__}).")
                outcome, response = None, error_response(error)
            finally:  # also when the client left (CancelledError): that is an ending too
                if response is None or not response.streaming:
                    if isinstance(response, HttpResponse):
                        exchange.status = response.status_code
                        exchange.response_bytes = len(response.content)
                        exchange.capture_response(response.content)
                        exchange.mark_first_byte()
                    if not exchange.handed_off:
                        exchange.finish(outcome, error)
            response["x-request-id"] = exchange.request_id
            # The gateway's own budget, unless the upstream's (copied, E3) already said more.
            for name, value in (limits.headers() if limits else {}).items():
                if name not in response:
                    response[name] = value
            return response

        wrapper.endpoint = endpoint  # type: ignore[attr-defined]
        return wrapper

    return decorate
