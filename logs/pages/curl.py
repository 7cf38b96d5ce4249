"""A request as a ``curl`` command (the request log's "copy as curl"): enough to send it again, no credential.

The key is ``$CODEX_GATEWAY_KEY``, never the one used. The body is the captured one
(GATEWAY_LOG_BODIES, already redacted) when it was kept whole; otherwise a minimal body
with the request's model, marked as such, to be filled in.
"""
from __future__ import annotations

import json
import shlex

from logs.models import RequestLog

# The endpoints a request body was sent to (the others carry an id the row does not keep).
WITH_BODY = ("responses", "chat/completions", "conversations")
CUT_MARK = "\n… [cut: first "  # logs/audit/exchange.py's note at the end of a cut body


def as_curl(log: RequestLog, base_url: str) -> tuple[str, bool] | None:
    """Return the command, and whether it carries the request's own body; None for a request without one."""
    if log.endpoint not in WITH_BODY:
        return None
    body, whole = log.request_body, bool(log.request_body) and CUT_MARK not in log.request_body
    if not whole:
        minimal = {"model": log.model or "MODEL", "stream": log.stream}
        minimal |= {"input": "…"} if log.endpoint == "responses" else {}
        minimal |= {"messages": [{"role": "user", "content": "…"}]} if log.endpoint == "chat/completions" else {}
        body = json.dumps(minimal, ensure_ascii=False)
    url = f"{base_url.rstrip('/')}/v1/{log.endpoint}"
    command = (f"curl -sN {shlex.quote(url)} -H \"Authorization: Bearer $CODEX_GATEWAY_KEY\" "
               f"-H 'Content-Type: application/json' -H {shlex.quote('x-request-id: ' + log.request_id + '-again')} "
               f"-d {shlex.quote(body)}")
    return command, whole
