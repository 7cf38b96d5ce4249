"""The wire protocol of the gateway, and nothing else: the sans-IO layer at the bottom.

The sans-IO contract (as h11 keeps HTTP apart from sockets): every module here takes
parsed JSON (or bytes) in and gives dicts, events or bytes out. None imports Django,
httpx or asyncio, touches a socket or a database, reads a clock it was not handed, or
imports another package of ours; ``tests/bridge/test_purity.py`` walks the folder and
import-linter's layers contract (pyproject.toml) keeps it at the bottom.

    errors      the error hierarchy and the one OpenAI error body (docs/errors.md)
    validation  request body checks
    events      what an upstream can say (UpstreamEvent), and the tool map
    dialects/   one module per upstream protocol (chat: Responses -> Chat and back;
                passthrough) and the table that picks one
    stream      ResponseStream: UpstreamEvents -> Responses events (the state machine)
    chat_stream a translated answer said to a Chat client: Responses events -> Chat chunks
    response    the Response object: what it says about the request, and its items' shapes
    wire        every Responses stream event, each built in one place
    sse         server-sent events: encoding, incremental decoding
    tap         watches a relayed stream for usage, tool calls and a broken end
    background  a background response's events: who resumes where, relayed ones renumbered
    history/    a request's history: stored item forms, item_reference resolution, `store`; compaction
    values      strict reads of loosely typed JSON values
"""
