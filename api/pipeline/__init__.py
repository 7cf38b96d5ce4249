"""From upstream reads to what a client receives: one pipeline, and the foreground answer that consumes it.

    client      talking to upstreams over HTTP: pooled clients, errors mapped once, answers read as events
    silence     the wait between two chunks, kept apart from the wait for the first byte
    listing     what the upstreams' servers list: the models a key may use, with their windows
    pools       the members of a pool (same model, same priority) in a request's order: its session's, or least loaded
    plan        where a request goes: the upstreams serving its model, best first; failover until one replies
    relay       the one pipeline: an upstream's answer relayed or translated, kept, watched, ended
    foreground  the answer a waiting client gets, streamed or whole (and the warm-up, from no upstream)
    chat        a translated answer said to a Chat Completions client (Chat chunks, or one completion)
"""
