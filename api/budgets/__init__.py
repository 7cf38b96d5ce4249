"""Budgets of tokens and dollars on keys and teams (upstreams/models/spend.py): enforced before routing.

    ledger     the spent and held totals of each budget's period: Redis's atomic scripts, or this process's
    admission  a request's budgets checked and held before it is routed, settled with what it spent
    pipe       the ledger's Redis: scripts pipelined on one connection per process, on the event loop
"""
