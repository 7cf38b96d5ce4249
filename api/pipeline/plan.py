"""Where a request goes: the upstreams serving its model, best first, and failover until one answers.

``prepare`` chooses the upstreams (``Route``: each with the dialect it is spoken to in) and
takes the request's stored state in (api/stored/); ``connect`` tries them in turn, before
the client has seen a byte, and returns the first answer still unread (a ``Reply``),
for the pipeline (api/pipeline/relay.py) to read.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from django.conf import settings

from api.budgets import admission as budgets
from api.http.endpoint import ApiRequest
from api.pipeline import client, pools
from api.stored import sealed
from api.stored.keeper import Keeper
from api.stored.takein import take_in
from bridge.dialects import Dialect, UpstreamRequest, dialect_for
from bridge.errors import InvalidRequestError, ModelNotFoundError, UpstreamError, UpstreamStatusError
from bridge.validation import nesting_error
from logs.audit.exchange import Exchange
from logs.recording import recorder
from upstreams import cooldown
from upstreams.models import Upstream, rank
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway")


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
class Reply:
    """What ``connect`` opened: the upstream that took the request, what it was sent, and its unread answer.

    ``upstream`` is None for an answer that no live upstream gives (a recording replayed).
    """

    upstream: Upstream | None
    dialect: Dialect
    sent: UpstreamRequest
    response: httpx.Response


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
    Otherwise the gateway keeps it (api/stored/): the upstream is sent the history in
    the request's place, and the answer is stored before it ends. Either way the gateway's
    own compaction items become their summaries again (api/stored/sealed.py).
    """
    key, model = request.client_key, body["model"]
    request.exchange.model = model
    if key is not None and not key.allows(model):  # as the OpenAI API answers a model a key cannot use
        raise ModelNotFoundError(f"The model '{model}' does not exist or you do not have access to it.",
                                 param="model")
    await budgets.admit(request.exchange, key, body)  # before any upstream: a spent budget sends nothing
    affinity = pools.affinity_key(body, request.exchange.session)
    routes = await choose_upstreams(request, model, api, affinity)
    routed, keeper = body, None
    if api == "responses":
        keeps_state = routes[0].keeps_state
        if keeps_state:
            routes = [route for route in routes if route.keeps_state]
        else:
            routed, keeper = await take_in(request, body)
            if not affinity and request.exchange.session:  # the chain it continues is its session (take_in)
                routes = await choose_upstreams(request, model, api, request.exchange.session)
        routed = sealed.taken_in(routed, request.client_key, foreign_kept=keeps_state, notes=request.exchange.notes)
    return Plan(routes, routed, keeper)


async def choose_upstreams(request: ApiRequest, model: str, api: str, affinity: str = "") -> list[Route]:
    """Return the upstreams to try for ``model``, best first (upstreams/routing.py says how fresh they are).

    Within a pool (same priority) the members go in this request's order (pools.py: the
    session's member for an ``affinity`` key, else the least loaded). Endpoints cooling down
    go last rather than away: when every upstream is failing, trying one beats refusing the
    request outright. Each upstream's cool-down is that of the endpoint its own dialect
    sends to (a Chat-only upstream's is chat/completions).
    """
    request.exchange.model = model
    candidates = rank(request.upstreams, model)
    if not candidates and (fresh := await ROUTING.fresh_upstreams(request.upstreams)) is not None:
        request.upstreams = fresh  # an upstream added a moment ago, in another process
        candidates = rank(fresh, model)
    if not candidates:
        raise ModelNotFoundError(f"The model '{model}' is not served by any enabled upstream.", param="model")
    candidates, request.exchange.routed_by = pools.ordered(candidates, affinity, ROUTING.busy)
    dialects = [dialect_for(api, upstream.protocol) for upstream in candidates]
    cooling, failing = await cooldown.health([(u, d.endpoint) for u, d in zip(candidates, dialects, strict=True)])
    routes = [Route(u, d, failing=u.pk in failing) for u, d in zip(candidates, dialects, strict=True)]
    return sorted(routes, key=lambda route: route.upstream.pk in cooling)


def is_failover_error(exc: UpstreamError) -> bool:
    """Whether another upstream may take the request: connect faults, timeouts, 429 and 5xx."""
    if isinstance(exc, UpstreamStatusError):
        return exc.status == 429 or exc.status >= 500
    return True


async def connect(request: ApiRequest, body: dict[str, Any], routes: list[Route],
                  asked: dict[str, Any] | None = None) -> Reply:
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
        exchange.notes += sent.notes
        exchange.recorder = await recorder.start(upstream, dialect, options, asked if asked is not None else body,
                                                 body, sent)
        asked_at = time.perf_counter()
        try:
            response = await open_upstream(upstream, dialect.endpoint, sent.body, exchange, sent.headers)
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
        return Reply(upstream, dialect, sent, response)
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


async def open_upstream(upstream: Upstream, endpoint: str, body: dict[str, Any], exchange: Exchange,
                        headers: dict[str, str] | None = None) -> httpx.Response:
    """Send the request and return the answer, or raise the upstream's error with its back-off headers."""
    response = await client.send(upstream, endpoint, body, exchange.request_id, extra=headers)
    if exchange.recorder is not None:
        exchange.recorder.watch(response)
    exchange.mark_connected()
    exchange.upstream_status = response.status_code
    exchange.passed_headers = client.backoff_headers(response.headers)
    if response.status_code >= 400:
        raise await client.status_error(response, secret=upstream.api_key)
    return response


