"""The admin of what staff configure (registered on import).

    upstreams  upstreams (edited live, test connection, the probe, the flight recorder) and model profiles
    keys       client keys (shown once; scope, team, budget; use and spend), teams and prices
"""
from upstreams.admin import keys
from upstreams.admin.upstreams import UpstreamAdmin

__all__ = ["UpstreamAdmin", "keys"]
