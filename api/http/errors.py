"""An error as an HTTP answer: the one place one is made (its body is ``BridgeError``'s, docs/errors.md)."""
from __future__ import annotations

import orjson

from api.http.answers import Answer, JsonAnswer
from bridge.errors import BridgeError


def error_response(exc: BridgeError, request_id: str | None = None, answer: Answer | None = None) -> JsonAnswer:
    """Return ``exc`` as OpenAI's JSON error, with its status and headers (``answer``: the row it settles, if any)."""
    response = JsonAnswer(exc.wire_body() or orjson.dumps(exc.to_dict()), status=exc.status, answer=answer,
                          headers=exc.headers)
    if request_id:
        response["x-request-id"] = request_id
    return response
