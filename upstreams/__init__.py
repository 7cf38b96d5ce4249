"""What staff configure (a Django app): the upstreams and the client keys, and the copy every request routes by.

    models     Upstream (base URL, protocol, key, models, compatibility switches), ModelProfile and ClientKey
    catalog    each model a client may use and what is true of it: /v1/models, and Codex's model catalog
    routing    this process's copy of the enabled upstreams and the keys seen (GATEWAY_ROUTING_TTL)
    cooldown   failing upstream endpoints tried last for a while, shared through the cache
    crypto     upstream keys at rest: Fernet keys, rotation
    fields     the encrypted model field that uses them
    bootstrap  the ``default`` upstream from UPSTREAM_BASE_URL, at start
    presets    the admin's presets for llama.cpp, vLLM, Ollama, SGLang, LM Studio, DeepSeek, OpenAI
    probe      a live server asked over the network: reach, models and context windows, capabilities
    mock       the mock LLM server: the demo, and the upstream every test scripts
    admin      the admin: upstreams (test connection, the probe, the flight recorder), model profiles, client keys
    apps       the app's config: the routing copy's signals
"""
