"""Talking to upstreams over HTTP: pooled clients per process, errors mapped once, answers read as events."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from api.pipeline.silence import SILENCE
from bridge.dialects import protocol_headers
from bridge.dialects.anthropic.answer import RATELIMIT_PREFIX, ratelimit_headers
from bridge.dialects.base import ChunkReader
from bridge.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    normalize_error_body,
)
from bridge.events import UpstreamEvent
from bridge.sse import SSEDecoder
from plumbing.redact import redact_text
from plumbing.shutdown import SHUTDOWN
from upstreams.models import Upstream

MAX_ERROR_BODY = 64 * 1024
DRAIN_AFTER_DONE = 0.5
# Headers that tell a client when to come back; relayed under their own names (docs/responses-bridge.md §6, E3).
BACKOFF_HEADERS = ("retry-after", "retry-after-ms")
BACKOFF_PREFIX = "x-ratelimit-"

# Several pools, used in turn: httpcore scans every connection of its pool on each
# request (a socket check per idle connection), so the cost of one request grows with
# concurrency. One pool takes 1.49x the gateway CPU per bridged stream at 50 concurrent
# streams, at 0.69x the requests per second
# (bench --compare, 5 interleaved rounds, 2026-12-01, commit 69d68af). Eight pools of an eighth
# each keep the scans short; connections are still reused within a pool.
POOLS = 8
_clients: list[httpx.AsyncClient] = []
_turn = itertools.count()


def client() -> httpx.AsyncClient:
    """Return one of this process's shared clients: pooled keep-alive connections to every upstream."""
    if not _clients:
        _clients.extend(
            httpx.AsyncClient(
                limits=httpx.Limits(max_connections=500, max_keepalive_connections=50, keepalive_expiry=30),
                # Upstream keys come from the Upstream row only, never from the environment.
                trust_env=False,
                follow_redirects=False,
            )
            for _ in range(POOLS)
        )
    return _clients[next(_turn) % POOLS]


def host_port(upstream: Upstream) -> str:
    """Where an upstream is: ``host:port`` (never its key, nor its path)."""
    url = httpx.URL(upstream.api_base)
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


def where(upstream: Upstream | None) -> str:
    """Name an upstream for an error message: its name and where it is."""
    return f"upstream '{upstream.name}' at {host_port(upstream)}" if upstream is not None else "the upstream"


@contextmanager
def mapped_errors(upstream: Upstream | None = None) -> Iterator[None]:
    """Turn httpx's exceptions into the gateway's, naming the upstream, keeping the cause for the logs."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeoutError(f"No answer in time from {where(upstream)} ({type(exc).__name__}).") from exc
    except httpx.ConnectError as exc:
        raise UpstreamUnavailableError(f"Could not connect to {where(upstream)}: {exc}.") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise UpstreamProtocolError(f"The connection to {where(upstream)} broke: {type(exc).__name__}.") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"The request to {where(upstream)} failed: {type(exc).__name__}.") from exc


async def send(upstream: Upstream, endpoint: str, body: dict[str, Any] | None, request_id: str,
               method: str = "POST", query: str = "", extra: Mapping[str, str] | None = None) -> httpx.Response:
    """Send ``body`` (POST; none for a GET or DELETE) and return the response with its body still unread.

    The answer is handed to the shutdown, which closes what is still open when the grace is over.
    """
    headers = {"content-type": "application/json", "accept": "text/event-stream, application/json",
               "x-request-id": request_id, **protocol_headers(upstream.protocol, upstream.api_key), **(extra or {})}
    # httpx's read timeout is the wait for the answer to start; SILENCE keeps the one between chunks.
    timeout = httpx.Timeout(connect=upstream.connect_timeout, read=upstream.first_byte_timeout,
                            write=upstream.connect_timeout, pool=upstream.connect_timeout)
    pool = client()
    url = upstream.url(endpoint) + (f"?{query}" if query else "")
    request = pool.build_request(method, url, content=orjson.dumps(body) if body is not None else None,
                                 headers=headers, timeout=timeout)
    with mapped_errors(upstream):
        response = await pool.send(request, stream=True)
    SHUTDOWN.track(response)
    SILENCE.watch(response, upstream.read_timeout)
    return response


def backoff_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the headers of an answer that tell a client when to come back (docs/responses-bridge.md §6, E3)."""
    kept, anthropic = {}, {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in BACKOFF_HEADERS or lower.startswith(BACKOFF_PREFIX):
            kept[name] = value
        elif lower.startswith(RATELIMIT_PREFIX):
            anthropic[lower] = value
    return kept | ratelimit_headers(anthropic) if anthropic else kept


async def status_error(response: httpx.Response, secret: str = "") -> UpstreamStatusError:
    """Read an upstream's error answer (bounded) and close it.

    Some upstreams echo the key they were sent ("Incorrect API key provided: sk-..."):
    the body reaches the client, so credentials are scrubbed from it first.
    """
    raw = b""
    try:
        with mapped_errors():
            async for chunk in response.aiter_raw():
                raw += chunk
                if len(raw) > MAX_ERROR_BODY:
                    break
    except UpstreamError:
        pass
    finally:
        await response.aclose()
    text = redact_text(raw.decode("utf-8", errors="replace"), known=[secret] if secret else [])
    scrubbed = text.encode()
    return UpstreamStatusError(response.status_code, normalize_error_body(scrubbed, response.status_code),
                               backoff_headers(response.headers), raw=scrubbed)


def is_event_stream(response: httpx.Response) -> bool:
    """Whether the upstream labelled its answer as server-sent events."""
    return response.headers.get("content-type", "").startswith("text/event-stream")


async def read_events(response: httpx.Response, read_chunk: ChunkReader,
                      read_body: ChunkReader) -> AsyncIterator[list[UpstreamEvent]]:
    """Yield the events of an upstream's answer, those of one network read together, read by its dialect.

    An SSE stream is decoded as it arrives, whatever its Content-Type says (servers
    mislabel streams as text/plain or send none: the frames decide); a JSON body, from
    servers that ignore ``stream``, becomes the events it stands for.
    """
    if response.headers.get("content-type", "").startswith("application/json"):
        yield read_body(_loads(await response.aread()))
        return
    decoder = SSEDecoder()
    reads = response.aiter_bytes()
    async for read in reads:
        events: list[UpstreamEvent] = []
        for data in decoder.feed(read):
            if data == b"[DONE]":
                yield events
                await _drain(reads)
                return
            events.extend(read_chunk(_loads(data)))
        if events:
            yield events
    events = []
    for data in decoder.close():
        if data != b"[DONE]":
            events.extend(read_chunk(_loads(data)))
    if events:
        yield events


async def _drain(reads: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] (the end of the HTTP body) so the connection goes back to the pool.

    Left unread, the connection is closed instead (bench/: one new upstream connection per
    request). A server that keeps the stream open past [DONE] costs at most DRAIN_AFTER_DONE.
    """
    try:
        async with asyncio.timeout(DRAIN_AFTER_DONE):
            async for _ in reads:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


def _loads(raw: str | bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # not an object: the dialect's reader reports it as a protocol error
