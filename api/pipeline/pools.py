"""Upstreams serving a model at the same priority are a pool: the order its members are tried in, per request.

A session sticks to one member, so that the member's prefix cache stays warm: each turn of
an agent resends a longer prompt, and a member that served the last turn reads its prefix
from cache instead of computing it again. The affinity key is the request's
``prompt_cache_key`` (Codex sends its thread id there), else the client's session (Codex's
``session-id`` header; a chain of ``previous_response_id``s, named by its first response:
api/stored/takein.py), else its ``conversation``. A request with one goes to the member
whose weighted rendezvous score for the key is highest (``weight / -ln(h)``, ``h`` a hash of
the key and the member's id in (0, 1)): the same member from every process and host, and a
member added or removed moves only its own share of the sessions. A request without one
goes to the member with the fewest requests in flight in this process per unit of weight.
The members after the first are the failover order (a cooling member goes last: plan.py), so
a failing member's sessions move to their next choice, all of them the same one, and stay.
"""
from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from itertools import groupby
from typing import Any

from upstreams.models import Upstream

AFFINITY, LEAST_LOADED = "affinity", "least_loaded"  # why a row's upstream served it (or "failover": Exchange)


def affinity_key(body: Mapping[str, Any], session: str) -> str:
    """What ties a request to its session's member: prompt_cache_key, the client's session, the conversation."""
    for value in (body.get("prompt_cache_key"), session, _conversation(body.get("conversation"))):
        if isinstance(value, str) and value:
            return value
    return ""


def _conversation(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def score(key: str, upstream: Upstream) -> float:
    """The member's weighted rendezvous score for ``key`` (highest wins)."""
    digest = hashlib.blake2b(f"{key}\x00{upstream.pk}".encode(), digest_size=8).digest()
    h = (int.from_bytes(digest, "big") + 0.5) / 2**64  # in (0, 1)
    return max(upstream.weight, 0) / -math.log(h)


def ordered(ranked: list[Upstream], key: str, busy: Mapping[int, int]) -> tuple[list[Upstream], str]:
    """``ranked`` (rank()'s order) with each pool's members in the order this request tries them, and why.

    The reason is the first upstream's: ``affinity`` or ``least_loaded`` when it was chosen
    within a pool, "" when it had no peer.
    """
    result: list[Upstream] = []
    reason = ""
    for _, group in groupby(ranked, key=lambda u: (u.is_catch_all, u.priority)):
        members = list(group)
        if len(members) > 1:
            if key:
                members.sort(key=lambda u: score(key, u), reverse=True)
            else:
                random.shuffle(members)  # ties between equally loaded members go to any of them
                members.sort(key=lambda u: busy.get(u.pk, 0) / max(u.weight, 1e-9))
            if not result:
                reason = AFFINITY if key else LEAST_LOADED
        result += members
    return result, reason
