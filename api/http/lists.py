"""OpenAI's list objects and their pagination: ``limit`` (1-100, default 20), ``order`` (desc by default), ``after``."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from bridge.errors import InvalidRequestError

LEAST, MOST, DEFAULT = 1, 100, 20


def page(items: list[dict[str, Any]], request: HttpRequest) -> dict[str, Any]:
    """Return one page of ``items`` (oldest first) as the list object the query string asks for."""
    raw_limit = request.GET.get("limit", str(DEFAULT))
    if not raw_limit.isdigit() or not LEAST <= int(raw_limit) <= MOST:
        raise InvalidRequestError(f"`limit` must be a whole number from {LEAST} to {MOST}.", param="limit",
                                  code="invalid_value")
    order = request.GET.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("`order` must be asc or desc.", param="order", code="invalid_value")
    ordered = items if order == "asc" else items[::-1]
    after = request.GET.get("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise InvalidRequestError(f"No item with id '{after}' in this list.", param="after", code="invalid_value")
        ordered = ordered[ids.index(after) + 1:]
    shown = ordered[: int(raw_limit)]
    return listing(shown, has_more=len(ordered) > len(shown))


def listing(items: list[dict[str, Any]], *, has_more: bool = False) -> dict[str, Any]:
    """Return ``items`` as a list object."""
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}
