"""The mock LLM server on loopback: the demo of ``make run`` and the upstream every test scripts.

    scenarios  what it answers: the founding experiments E1-E3 and the demo, as steps
    server     the ASGI app that plays them (``manage.py mockupstream``), scripted over /_mock/
    anthropic  the same steps as a strict Anthropic Messages server (POST /v1/messages), with a prompt cache
    prefix     an automatic prefix cache per server, as vLLM keeps one: a turn is fast where its prefix was computed
"""
