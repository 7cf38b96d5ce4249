"""What a client says about a request beyond its body: Codex's session and the kind of request.

Codex sends its thread id on every request (``session-id`` and ``thread-id`` headers; over a
WebSocket, ``client_metadata`` in the body; its ``prompt_cache_key`` too) and, in ``x-codex-turn-metadata`` (JSON), the
``request_kind``: ``turn``, ``compaction`` or ``prewarm``. The audit row keeps both, so the
request log can show a session's turns in order (docs/audit.md).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

SESSION_HEADERS = ("session-id", "thread-id", "session_id", "conversation_id")
MAX_SESSION = 100
MAX_KIND = 32


def said_in_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """Return (session, kind) as the headers give them ("" for what they do not say)."""
    session = next((headers[name] for name in SESSION_HEADERS if headers.get(name)), "")
    kind = ""
    metadata = headers.get("x-codex-turn-metadata")
    if metadata:
        try:
            parsed = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            kind = _text(parsed.get("request_kind"))
            session = session or _text(parsed.get("thread_id")) or _text(parsed.get("session_id"))
    return session[:MAX_SESSION], kind[:MAX_KIND]


def session_in_body(body: Mapping[str, Any]) -> str:
    """Return the session a body names: ``client_metadata``'s thread or session id, else its ``prompt_cache_key``.

    Codex sends its thread id as the prompt cache key too; other clients that set one group
    their requests by it the same way (the request log's sessions, a pool's affinity).
    """
    metadata = body.get("client_metadata")
    if isinstance(metadata, dict):
        found = _text(metadata.get("thread_id")) or _text(metadata.get("session_id"))
        if found:
            return found[:MAX_SESSION]
    return _text(body.get("prompt_cache_key"))[:MAX_SESSION]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
