"""The commands users run.

    serve         ``make run``: migrate, start the demo upstream and the gateway, print what to paste
    createapikey  a new client key, printed once (stored hashed): its scope, team and budget
    team          a team created, or its budget changed
    setprice      what a model costs per million tokens (audit rows' cost, dollar budgets)
    codexconfig   the Codex CLI's provider and a profile per served model, merged into ~/.codex
    probe         the capability probe of an upstream, and ``--apply`` for what it recommends
    mockupstream  the mock upstream on a port of its own (the founding experiments' scenarios)
"""
