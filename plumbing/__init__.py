"""Process plumbing below everything else: no model, no view, nothing of the API's.

    dbthread     the request path's database threads, each with one kept connection
    sharedstate  one cache instance (Redis or local), off the ORM's queue, behind a breaker
    ratelimit    fixed-window arithmetic for rate limits
    limits       the body limit in ASGI: a body past GATEWAY_MAX_BODY_BYTES is not read
    shutdown     the SIGTERM drain: requests in flight finish, rows are written, then the process exits
    patches      what daphne, Twisted and autobahn lack, patched in, on the versions tested only
    listen       daphne's listening endpoint, with a backlog fit for bursts
    origin       same-origin WebSockets (the live tail)
    redact       keys and Authorization values scrubbed from logs, rows and bodies
    logformat    LOG_FORMAT=json: one JSON object per log line
    metrics      the Prometheus metrics every part reports to
    asgitypes    the ASGI type aliases
"""
