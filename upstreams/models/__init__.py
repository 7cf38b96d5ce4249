"""What staff configure: the upstream servers, the client keys, and what spending may cost.

    upstream  Upstream (base URL, API, key, models, compatibility switches) and ModelProfile; ``rank``
    keys      ClientKey: a hashed secret, its scope (models, expiry), its team and budget
    spend     budgets per period (UTC calendar), Team, Price per model

The API reads them from the routing copy (upstreams/routing.py), not per request.
"""
from upstreams.models.keys import KEY_PREFIX, VISIBLE_KEY_CHARS, ClientKey, ClientKeyManager, hash_secret
from upstreams.models.spend import COST_PLACES, Budgeted, BudgetPeriod, Period, Price, Team, period_at, usd
from upstreams.models.upstream import (
    GLOB_CHARS,
    PATTERN_SPLIT,
    ByPattern,
    MaxTokensField,
    ModelProfile,
    Upstream,
    UpstreamApi,
    best_for,
    rank,
)

__all__ = ["COST_PLACES", "GLOB_CHARS", "KEY_PREFIX", "PATTERN_SPLIT", "VISIBLE_KEY_CHARS", "BudgetPeriod",
           "Budgeted", "ByPattern", "ClientKey", "ClientKeyManager", "MaxTokensField", "ModelProfile", "Period",
           "Price", "Team", "Upstream", "UpstreamApi", "best_for", "hash_secret", "period_at", "rank", "usd"]
