"""Writing the audit rows (docs/audit.md): one per request, settled once, written in batches, never lost to a crash.

    exchange  the record of one request as it goes; settled once: an answered one, or a refusal
    client    what a client says beyond its body: Codex's session, and the kind of request
    writer    rows written in batches by one task per process, waiting through database outages
    journal   the local append-only journal: a dead process's rows are written by the next to start
    tail      the live tail's sending side: each batch written goes to the staff watching /logs/
"""
