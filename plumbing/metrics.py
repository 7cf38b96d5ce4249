"""Prometheus metrics, served at GET /metrics (prometheus_client).

With several gateway processes on one host, set PROMETHEUS_MULTIPROC_DIR (an empty
directory, the same for all) before they start: each then answers for all of them.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

requests_total = Counter("gateway_requests_total", "Requests answered, by endpoint, mode, upstream and status.",
                         ["endpoint", "mode", "upstream", "status"])
request_duration = Histogram("gateway_request_duration_seconds", "Time from request to the last byte.",
                             ["endpoint", "mode"], buckets=LATENCY_BUCKETS)
ttfb = Histogram("gateway_ttfb_seconds", "Time from request to the upstream's first byte.", ["endpoint", "mode"],
                 buckets=LATENCY_BUCKETS)
active_streams = Gauge("gateway_active_streams", "Streams being relayed right now.", multiprocess_mode="livesum")
upstream_errors_total = Counter("gateway_upstream_errors_total", "Upstream failures, by kind (error code).",
                                ["upstream", "kind"])
tokens_total = Counter("gateway_tokens_total", "Tokens reported by upstreams.", ["upstream", "kind"])
# Spending by client key and team (the key's name and team; "-" for none), and the refusals of spent budgets.
spend_usd_total = Counter("gateway_spend_usd_total", "US dollars spent at the models' prices, by key, team and model.",
                          ["key", "team", "model"])
spend_tokens_total = Counter("gateway_spend_tokens_total", "Tokens (input + output) spent, by key, team and model.",
                             ["key", "team", "model"])
budget_refused_total = Counter("gateway_budget_refused_total",
                               "Requests refused because a budget was used up, by key, team and whose budget.",
                               ["key", "team", "budget"])
background_running = Gauge("gateway_background_running", "Background responses this process is answering.",
                           multiprocess_mode="livesum")
audit_pending = Gauge("gateway_audit_pending", "Audit rows scheduled but not yet written.",
                      multiprocess_mode="livesum")
recordings_pending = Gauge("gateway_recordings_pending", "Flight recordings being written beside their rows.",
                           multiprocess_mode="livesum")


def render() -> tuple[bytes, str]:
    """Return the exposition text and its content type."""
    # prometheus_client itself reads this variable when the metrics are created.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
