"""The API's views: parse, authenticate (``api_view``), route, answer, record.

    responses      POST /v1/responses and /v1/chat/completions
    stored         a stored response: GET, DELETE, its input_items, cancel (kept by the gateway or an upstream)
    conversations  the Conversations API: a conversation and its items
    models         GET /v1/models: named models, aliases, and what glob and catch-all upstreams report
    health         /healthz, /readyz and /metrics, for operators (served through Django's handler)
"""
