"""Errors the gateway reports, and the one place they become OpenAI-shaped JSON.

    BridgeError                      base: message, code, param, status, headers
    ├── InvalidRequestError          the client's fault (400 unless said otherwise)
    │   ├── AuthenticationError      401 invalid_api_key
    │   ├── RateLimitError           429 rate_limit_exceeded
    │   ├── UsageLimitError          429 usage_limit_reached: a budget spent until its period resets (resets_at)
    │   ├── QuotaExceededError       429 insufficient_quota: a total budget spent
    │   ├── RequestTooLargeError     413 request_too_large
    │   ├── ModelNotFoundError       404 model_not_found
    │   └── NotFoundError            404 not_found (a stored response the key does not have)
    ├── UpstreamError                the upstream's fault (502 unless said otherwise)
    │   ├── UpstreamUnavailableError 502 upstream_unavailable
    │   ├── UpstreamTimeoutError     504 upstream_timeout
    │   └── UpstreamProtocolError    502 upstream_protocol_error (broken or malformed stream)
    └── GatewayError                 ours (500 internal_error)
        ├── ShuttingDownError        503 shutting_down: this process is draining, retry elsewhere
        └── DatabaseUnavailableError 503 database_unavailable: what needs the database waits for it

The contract they follow: docs/errors.md.
"""
from __future__ import annotations

import json
from typing import Any, TypedDict


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    error: ErrorDetail


class BridgeError(Exception):
    """An error with everything needed to answer the client in OpenAI's shape."""

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers = headers or {}

    def to_dict(self) -> ErrorBody:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def wire_body(self) -> bytes | None:
        """The exact bytes to answer with, when they are not ``to_dict()``'s (an upstream's own words)."""
        return None

    def to_socket_event(self) -> dict[str, Any]:
        """This error as a Responses WebSocket ``error`` event (``socket_error_event``)."""
        return socket_error_event(self.status, self.to_dict(), self.headers)


def socket_error_event(status: int, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    """An ``error`` event on a Responses WebSocket: the HTTP API's status, error object and back-off headers.

    Codex reads ``status`` as the HTTP status it stands for (an event without one is not an
    error to it: it waits until its idle timeout), ``error.code`` (``previous_response_not_found``
    makes it resend the turn whole) and ``headers`` (``retry-after``).
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"message": str(body), "type": "upstream_error", "param": None, "code": None}
    event: dict[str, Any] = {"type": "error", "status": status, "error": error}
    if headers:
        event["headers"] = headers
    return event


class InvalidRequestError(BridgeError):
    """The request is malformed: a client that retries it unchanged fails again."""


class AuthenticationError(InvalidRequestError):
    """No client key, or one the gateway does not know or has revoked."""

    status = 401
    code = "invalid_api_key"


class RateLimitError(InvalidRequestError):
    """The client key spent its budget; `Retry-After` says when to come back."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UsageLimitError(InvalidRequestError):
    """A key's or team's budget for this period is spent: no retry helps before ``resets_at`` (unix seconds).

    The body's ``type`` is the code too, and ``resets_at`` an integer: Codex shows its usage-limit
    message, with the time, only then; with ``Retry-After``, other clients wait as long.
    """

    status = 429
    type = "usage_limit_reached"
    code = "usage_limit_reached"

    def __init__(self, message: str, *, resets_at: int, retry_after: int) -> None:
        super().__init__(message, headers={"retry-after": str(max(retry_after, 1))})
        self.resets_at = resets_at

    def to_dict(self) -> ErrorBody:
        body = super().to_dict()
        body["error"]["resets_at"] = self.resets_at  # type: ignore[typeddict-unknown-key]
        return body


class QuotaExceededError(InvalidRequestError):
    """A key's or team's total budget is spent: it never resets, so there is nothing to wait for."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class RequestTooLargeError(InvalidRequestError):
    """The body is larger than GATEWAY_MAX_BODY_BYTES."""

    status = 413
    code = "request_too_large"


class ModelNotFoundError(InvalidRequestError):
    """No enabled upstream serves the requested model."""

    status = 404
    code = "model_not_found"


class NotFoundError(InvalidRequestError):
    """What the path names does not exist for this key: a stored response, deleted, expired or someone else's."""

    status = 404
    code = "not_found"


class UpstreamError(BridgeError):
    """The upstream failed us; the client may retry later."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnavailableError(UpstreamError):
    """The upstream refused the connection or its name did not resolve."""

    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer (or went quiet) within its timeout."""

    status = 504
    code = "upstream_timeout"


class UpstreamProtocolError(UpstreamError):
    """The upstream's answer broke off or could not be parsed."""

    code = "upstream_protocol_error"


class GatewayError(BridgeError):
    """A bug or misconfiguration on our side."""

    status = 500
    type = "server_error"
    code = "internal_error"


class ShuttingDownError(GatewayError):
    """This gateway process is draining (SIGTERM): the request was refused or cut, and a retry will land elsewhere."""

    status = 503
    code = "shutting_down"

    def __init__(self, message: str = "The gateway is shutting down; retry the request.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class DatabaseUnavailableError(GatewayError):
    """The database is away: what needs it (a key not seen before, a stored response) cannot be answered now."""

    status = 503
    code = "database_unavailable"

    def __init__(self, message: str = "The gateway's database is unavailable; retry shortly.",
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


def is_openai_error(raw: bytes) -> bool:
    """Whether ``raw`` is an OpenAI error body as clients parse it: ``{"error": {"message": "...", ...}}``."""
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    # Anthropic's {"type": "error", "error": {"type", "message"}} has no param or code: not as clients parse it.
    return isinstance(data, dict) and isinstance(data.get("error"), dict) \
        and isinstance(data["error"].get("message"), str) and data.get("type") != "error"


def normalize_error_body(raw: bytes, status: int) -> ErrorBody:
    """Return an upstream's error body in OpenAI's shape.

    Upstreams answer errors as OpenAI JSON, as ``{"error": "text"}`` (llama.cpp, older
    vLLM), as ``{"detail": ...}`` (FastAPI) or as HTML from a proxy in front of them.
    Clients parse only the first form, so every other one is wrapped, keeping its text.
    """
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data: Any = json.loads(text) if text else None
    except ValueError:
        data = None
    error_type = "invalid_request_error" if 400 <= status < 500 else "upstream_error"
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        detail = data["error"]
        message = detail.get("message")
        code = _code(data)
        return {
            "error": {
                "message": message if isinstance(message, str) else json.dumps(message),
                "type": detail.get("type") if isinstance(detail.get("type"), str) else error_type,
                "param": detail.get("param") if isinstance(detail.get("param"), str) else None,
                "code": str(code) if code is not None else None,
            }
        }
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if key in data:
                value = data[key]
                text = value if isinstance(value, str) else json.dumps(value)
                break
    message = text[:2000] or f"upstream answered HTTP {status}"
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


def _code(data: dict[str, Any]) -> Any:
    """An error body's code; Anthropic's bodies have none, and their type (overloaded_error...) is the one to act on."""
    return data["error"].get("type") if data.get("type") == "error" else data["error"].get("code")


class UpstreamStatusError(UpstreamError):
    """The upstream answered 4xx/5xx: relayed with its status, body and back-off headers.

    A body already in OpenAI's shape goes back byte for byte (``raw``): a client may rely on
    a field the gateway's shape would change (``"code": 400`` is not ``"code": "400"``).
    """

    def __init__(self, status: int, body: ErrorBody, headers: dict[str, str], raw: bytes | None = None) -> None:
        detail = body["error"]
        super().__init__(detail["message"], code=detail["code"], param=detail["param"], status=status,
                         headers=headers)
        self.type = detail["type"]
        self.body = body
        self.raw = raw if raw is not None and is_openai_error(raw) else None

    def to_dict(self) -> ErrorBody:
        return self.body

    def wire_body(self) -> bytes | None:
        return self.raw
