"""The OpenAI-compatible API: the IO around the pure protocol of bridge/.

    budgets     budgets of tokens and dollars on keys and teams: checked and held before routing, settled at the end
    http        the HTTP surface: the ASGI app past Django's handler, the endpoint wrapper, keys and
                limits, errors, the answers whose end settles a request's row
    endpoints   the views: responses and chat completions, stored responses, conversations, models, health
    pipeline    from upstream reads to what a client receives: the upstream client, routing and
                failover, the one pipeline (relay or translate), the foreground answer
    stored      the state the gateway keeps for requests: history taken in, answers kept, a socket's memory
    background  background responses: their runs, watched and cancelled from any process
    compaction  remote compaction for upstreams that cannot: the conversation summarized, sealed, answered
    socket      the Responses WebSocket: each response.create answered through the HTTP API in process
    replay      a flight recording run through today's pipeline, diffed (``manage.py replay``)
    urls        the API's paths: the one list of its endpoints

A request's path: ``http.app`` (past Django) -> ``http.endpoint.api_view`` (key, rate limit,
body; a refusal settles its row at once) -> a view of ``endpoints`` -> ``pipeline.plan``
(upstreams in rank order, each spoken to in its dialect; stored state taken in) ->
``pipeline.relay`` (relayed as is, or translated by bridge.stream.ResponseStream; kept before
its terminal event) -> the answer, whose end settles the row (logs/audit/). Every dependency
points down this list (import-linter's contracts in pyproject.toml).
"""
