"""Composition only: the project's settings, its URL map and its ASGI stack; every other package is below it.

    settings  every environment variable is read here, and nowhere else (the README's "Configuration")
    urls      the URL map: the API and probes (api/), the admin, the request log (logs/), ``/`` and the favicon
    asgi      ``daphne gatewaysite.asgi:application``: the API app, Django, the WebSockets, the drain
"""
