"""The request log's pages for staff (``/logs/``): server-rendered, no build step.

    views    the list, a request's page, the overview, the CSV export, a recording's download, the usage pages
    filters  the list's filters: query parameters in, a queryset filter and a row predicate out
    stats    a window's rows exactly, its totals (failures by whose they are), bars and latency
    overview the overview page and its JSON: totals, traffic, failures, upstreams, keys, each with its rows' link
    usage    usage per key and team: requests, failures, tokens and cost per key and per model, their use over time
    spend    budgets: each key's and team's spending this period, used and left; the usage page's lines and CSV
    charts   those figures as inline SVG
    curl     a request as a curl command, its key replaced by $CODEX_GATEWAY_KEY
    live     the live tail's socket (/ws/logs/): each finished request its page's filters match
    home     the site's front door: ``GET /`` (staff to /logs/, anyone else told where the API is), the favicon
"""
