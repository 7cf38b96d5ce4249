"""Checks on client request bodies before anything is sent upstream (contract: "Errors")."""
from __future__ import annotations

from typing import Any

from bridge.errors import InvalidRequestError


def require_object(body: Any) -> dict[str, Any]:
    """Return ``body`` if it is a JSON object: every API body is one."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return body


def _check_common(body: dict[str, Any]) -> None:
    model = body.get("model")
    if "model" not in body:
        raise InvalidRequestError("Missing required parameter: 'model'.", param="model",
                                  code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("Invalid type for 'model': expected a non-empty string.", param="model",
                                  code="invalid_type")
    if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
        raise InvalidRequestError("Invalid type for 'stream': expected a boolean.", param="stream",
                                  code="invalid_type")


def validate_chat(raw: Any) -> dict[str, Any]:
    """Return a Chat Completions body that has a model and a list of messages."""
    body = require_object(raw)
    _check_common(body)
    if "messages" not in body:
        raise InvalidRequestError("Missing required parameter: 'messages'.", param="messages",
                                  code="missing_required_parameter")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise InvalidRequestError("Invalid type for 'messages': expected an array.", param="messages",
                                  code="invalid_type")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError("Invalid type for a message: expected an object.",
                                      param=f"messages[{index}]", code="invalid_type")
    return body


def validate_responses(raw: Any) -> dict[str, Any]:
    """Return a Responses body that has a model and an input (a string or a list of items)."""
    body = require_object(raw)
    _check_common(body)
    if "input" not in body:
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input",
                                  code="missing_required_parameter")
    if not isinstance(body["input"], (str, list)):
        raise InvalidRequestError("Invalid type for 'input': expected a string or an array of items.",
                                  param="input", code="invalid_type")
    return body


def validate_compact(raw: Any) -> dict[str, Any]:
    """Return a ``/v1/responses/compact`` body as the Responses request it summarizes (``stream`` and ``store`` off).

    The OpenAI API takes ``model`` and an ``input`` or a ``previous_response_id`` (or both).
    """
    body = require_object(raw)
    _check_common(body)
    if "input" not in body and not body.get("previous_response_id"):
        raise InvalidRequestError("Missing required parameter: 'input' (or 'previous_response_id').", param="input",
                                  code="missing_required_parameter")
    return validate_responses({**body, "input": body.get("input", []), "stream": False, "store": False})


# How deep a request's JSON may nest. The gateway writes JSON with orjson, which refuses
# more than 254 levels; a translated request adds a few of its own around the client's
# values (a tool's parameters sit under "function"), so a body nested deeper than this is
# refused, with where. Checked only once writing failed: a walk of every body would cost
# 0.46 ms per 850 KB Codex request for a case no real client sends.
MAX_DEPTH = 240


def nesting_error(body: Any, limit: int = MAX_DEPTH) -> InvalidRequestError:
    """Return the 400 for ``body`` nested deeper than ``limit``, naming the first place that is (its param)."""
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    where = ""
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            where = path
            break
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items()
                         if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{n}]", depth + 1) for n, v in enumerate(value) if isinstance(v, dict | list))
    return InvalidRequestError(f"The request's JSON is nested more than {limit} levels deep"
                               + (f" at '{where}'." if where else "."), param=where or None, code="nesting_too_deep")
