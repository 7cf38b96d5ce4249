"""The bare relay floor: the least any Python gateway on this ASGI server and httpx can cost.

No Django, no auth, no translation: the request body goes to the mock at
``BENCH_FLOOR_UPSTREAM`` (same path) and its bytes come back as they arrive, through one
shared pooled ``httpx.AsyncClient``. Served as ``daphne bench.floor:app``.
"""
from __future__ import annotations

import os
from typing import Any

import httpx

UPSTREAM = os.environ.get("BENCH_FLOOR_UPSTREAM", "http://127.0.0.1:8001")
client = httpx.AsyncClient(limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
                           timeout=httpx.Timeout(60.0), trust_env=False)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    request = client.build_request(scope["method"], UPSTREAM + scope["path"], content=body,
                                   headers={"content-type": "application/json"})
    upstream = await client.send(request, stream=True)
    try:
        await send({"type": "http.response.start", "status": upstream.status_code,
                    "headers": [(b"content-type", upstream.headers.get("content-type", "").encode())]})
        async for chunk in upstream.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await upstream.aclose()
