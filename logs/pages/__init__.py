"""The request log's pages for staff (``/logs/``): server-rendered, no build step.

    views    the list, a request's page, the overview, the CSV export, a recording's download
    filters  the list's filters: query parameters in, a queryset filter and a row predicate out
    stats    the figures of the last hour or day: requests, failures by kind, latency, tokens per key
    charts   those figures as inline SVG
    curl     a request as a curl command, its key replaced by $CODEX_GATEWAY_KEY
    live     the live tail's socket (/ws/logs/): each finished request its page's filters match
"""
