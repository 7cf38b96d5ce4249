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
from django.views.decorators.csrf import csrf_exempt

from bridge.audit import Exchange
from bridge.errors import AuthenticationError, BridgeError, GatewayError, InvalidRequestError, RequestTooLargeError
from upstreams.models import ClientKey, Outcome

logger = logging.getLogger("gateway")

# last_used is written at most this often per key, not on every request.
LAST_USED_EVERY = 60.0
_last_used_written: dict[int, float] = {}


class ApiRequest(HttpRequest):
    """An HttpRequest after ``api_view``: who sent it, what they sent, its audit record."""

    client_key: ClientKey | None
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
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        if settings.GATEWAY_ALLOW_ANONYMOUS:
            return None
        raise AuthenticationError("Missing client API key: send 'Authorization: Bearer <key>'.")
    key = await ClientKey.objects.afor_secret(secret)
    if key is None:
        if settings.GATEWAY_ALLOW_ANONYMOUS:
            return None
        # Never echo the secret back: error messages end up in client logs.
        raise AuthenticationError("Incorrect or revoked client API key.")
    await _touch(key)
    return key


async def _touch(key: ClientKey) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(key.pk, -LAST_USED_EVERY) >= LAST_USED_EVERY:
        _last_used_written[key.pk] = now
        from django.utils.timezone import now as wall_now

        await ClientKey.objects.filter(pk=key.pk).aupdate(last_used=wall_now())


def parse_json(request: HttpRequest) -> Any:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise RequestTooLargeError(
            f"Request body is larger than {settings.GATEWAY_MAX_BODY_BYTES} bytes.", param=None
        ) from None
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
            try:
                request.client_key = exchange.key = await authenticate(request)  # type: ignore[attr-defined]
                request.json = parse_json(request) if body else None  # type: ignore[attr-defined]
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
            if not response.streaming:
                exchange.status = response.status_code
                exchange.response_bytes = len(response.content)
                exchange.mark_first_byte()
                exchange.record()
            return response

        return wrapper

    return decorate
