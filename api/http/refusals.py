"""The audit rows of API requests that daphne answered itself (plumbing/patches/intake.py): one each, as always."""
from __future__ import annotations

from api.http.paths import API_PREFIX, api_path
from logs.audit.exchange import Exchange, request_id_for
from plumbing.patches.intake import Refusal
from upstreams.routing import ROUTING


def record_refusal(refusal: Refusal) -> str | None:
    """Write the one audit row of an API request that daphne answered itself (plumbing/patches/intake.py).

    Return the request id to answer with; None for paths outside the API (no row).
    """
    path = api_path(refusal.path)
    if path is None:
        return None
    exchange = Exchange(request_id=request_id_for(refusal.headers.get("x-request-id", "")),
                        endpoint=path.removeprefix(API_PREFIX)[:64], client_ip=refusal.client_ip,
                        request_bytes=refusal.request_bytes)
    scheme, _, secret = refusal.headers.get("authorization", "").partition(" ")
    exchange.key = ROUTING.cached_key(secret.strip()) if scheme.lower() == "bearer" else None
    exchange.refuse(refusal.error)
    return exchange.request_id
