"""Codex-shaped workloads, each its own command: what a long session costs the gateway.

    session     a 30-turn Codex-like session over HTTP and over the Responses WebSocket (make bench-session)
    compaction  the gateway's remote compaction of a long Codex history: upstream calls, sizes, time
    cache       Anthropic's prompt cache over a Codex session: the input tokens each turn reads from it
"""
