"""Protocol code of the gateway.

The sans-IO contract: ``errors``, ``validation``, ``events``, ``chat``, ``request``,
``stream``, ``sse`` and ``tap`` are pure. They take parsed JSON (or bytes) in and give
dicts, events or bytes out; they never import Django, httpx or asyncio, never touch a
socket, a clock they were not handed, or a database. ``tests/bridge/test_purity.py``
enforces it. The IO lives beside them: ``upstream`` (httpx), ``decorators`` and ``views``
(Django), ``audit`` (the ORM).
"""
