"""The wrapper every API view shares: request id, client key, rate limit, JSON body, errors; one answer each.

Before the view runs, a request may be refused (a bad key, a spent budget, a method the
path does not take, a body that is not JSON, the process draining): its row is settled at
once by ``Exchange.refuse``, the one entry point for refusals. Everything after is an
answer (api/http/answers.py): the view's, or its error's; its row is settled when it ends.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from api.http.answers import Answer, JsonAnswer, StreamAnswer
from api.http.auth import KeyRefused, authenticate
from api.http.errors import error_response
from api.http.limits import enforce_rate_limit
from bridge.errors import (
    BridgeError,
    DatabaseUnavailableError,
    GatewayError,
    InvalidRequestError,
    RequestTooLargeError,
    ShuttingDownError,
)
from logs.audit.exchange import Ending, Exchange
from logs.models import Outcome
from plumbing.limits import TOO_LARGE
from plumbing.ratelimit import Verdict
from plumbing.shutdown import SHUTDOWN
from upstreams.models import ClientKey, Upstream

logger = logging.getLogger("gateway")


class ApiRequest(HttpRequest):
    """An HttpRequest after ``api_view``: who sent it, what they sent, its audit record."""

    client_key: ClientKey | None
    upstreams: list[Upstream]  # the enabled ones, read with the key
    json: Any
    exchange: Exchange


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


def _method_and_drain(request: HttpRequest, methods: tuple[str, ...]) -> None:
    """Refuse a request that came in on a connection kept alive from before the drain, or with another method."""
    if SHUTDOWN.draining:
        raise ShuttingDownError(headers={"connection": "close"})
    if methods and request.method not in methods:
        raise InvalidRequestError(f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                                  code="method_not_allowed", status=405, headers={"allow": ", ".join(methods)})


async def _who(request: ApiRequest) -> None:
    """Put the request's key (on its row too) and the enabled upstreams on it; a revoked key is named on the row."""
    try:
        request.client_key, request.upstreams = await authenticate(request)
    except KeyRefused as exc:
        request.exchange.key = exc.key
        raise
    request.exchange.key = request.client_key


def _refused(exchange: Exchange, error: BridgeError, *, draining: bool) -> JsonAnswer:
    """Answer a refusal and settle its row (a drain's refusal is the client's to retry elsewhere: rejected)."""
    response = error_response(error)
    exchange.refuse(error, answered=response.content, outcome=Outcome.REJECTED if draining else None)
    return response


def _failed(exchange: Exchange, endpoint: str, exc: Exception) -> JsonAnswer:
    """The answer of a view that raised: its error, OpenAI-shaped, never a 500 page."""
    if isinstance(exc, BridgeError):
        error: BridgeError = exc
    elif isinstance(exc, DatabaseError):
        error = _database_away(exchange, endpoint, exc)
    else:
        logger.exception("unhandled error in %s (request %s)", endpoint, exchange.request_id, exc_info=exc)
        error = GatewayError(f"The gateway failed to handle this request ({type(exc).__name__}).")
    ending = Ending()
    ending.fail(error)
    return error_response(error, answer=Answer(exchange, error.status, ending).hold())


def _database_away(exchange: Exchange, endpoint: str, exc: DatabaseError) -> DatabaseUnavailableError:
    """The database is away: a clear 503, never a 500 (logged, without the query)."""
    logger.warning("database unavailable in %s (request %s): %s", endpoint, exchange.request_id, type(exc).__name__)
    return DatabaseUnavailableError()


def _answered(exchange: Exchange, response: HttpResponseBase) -> HttpResponseBase:
    """The view's answer, holding its row: a JSON answer of the view's own is complete once it is sent."""
    if isinstance(response, StreamAnswer) or (isinstance(response, JsonAnswer) and response.answer is not None):
        return response
    ending = Ending()
    ending.complete()
    answered = Answer(exchange, response.status_code, ending).hold()
    if isinstance(response, JsonAnswer):
        response.answer = answered
        return response
    # Another kind of response (none of the API's views returns one): its body, answered the same way.
    headers = {name: value for name, value in response.items() if name.lower() != "content-type"}
    return JsonAnswer(response.content, status=response.status_code, answer=answered,  # type: ignore[attr-defined]
                      headers=headers)


def api_view(endpoint: str, *, body: bool | tuple[str, ...] = True,
             methods: tuple[str, ...] = ()) -> Callable[[ApiView], View]:
    """Wrap an async API view so that every request is refused or answered OpenAI-shaped, with one audit row.

    The endpoint name is kept on the view (``view.endpoint``): the URL conf is then the one
    list of the API's endpoints. ``methods``: the methods it takes (any when empty); another
    gets 405 with ``Allow``. ``body``: whether the JSON body is parsed (``request.json``):
    always, never, or for the methods named.
    """

    def decorate(view: ApiView) -> View:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            exchange = Exchange.begin(request, endpoint)
            request.exchange = exchange  # type: ignore[attr-defined]
            draining = SHUTDOWN.draining
            limits: Verdict | None = None
            try:
                _method_and_drain(request, methods)
                await _who(request)  # type: ignore[arg-type]
                limits = await enforce_rate_limit(request, exchange.key)
                parsed = body is True or (isinstance(body, tuple) and request.method in body)
                request.json = parse_json(request, exchange) if parsed else None  # type: ignore[attr-defined]
            except BridgeError as exc:
                response: HttpResponseBase = _refused(exchange, exc, draining=draining)
            except DatabaseError as exc:
                response = _refused(exchange, _database_away(exchange, endpoint, exc), draining=draining)
            except Exception as exc:  # a bug of ours before the view: answered as one
                response = _failed(exchange, endpoint, exc)
            except BaseException:  # the client left: no answer, and the row says so
                Answer(exchange, None).hold().release()
                raise
            else:
                response = await _answer(view, request, exchange, endpoint, args, kwargs)
            response["x-request-id"] = exchange.request_id
            # The gateway's own budget, unless the upstream's (copied, docs/errors.md §3) already said more.
            for name, value in (limits.headers() if limits else {}).items():
                if name not in response:
                    response[name] = value
            return response

        wrapper.endpoint = endpoint  # type: ignore[attr-defined]
        return wrapper

    return decorate


async def _answer(view: ApiView, request: HttpRequest, exchange: Exchange, endpoint: str, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> HttpResponseBase:
    """The view's answer, or its error's; a client that left before it is recorded so."""
    try:
        response = await view(request, *args, **kwargs)
    except Exception as exc:
        return _failed(exchange, endpoint, exc)
    except BaseException:
        Answer(exchange, None).hold().release()
        raise
    return _answered(exchange, response)
