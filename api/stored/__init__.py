"""The state the gateway keeps for the API's requests (the rows themselves are state/'s).

    takein  a request's stored history taken in before it is routed, references resolved
    keeper  a finished response stored (and added to its conversation) before its last event leaves
    memory  what one Responses WebSocket remembers between turns: its latest response, ``store: false`` too
    sealed  the gateway's compaction items: a summary sealed for its client key, opened when it comes back
"""
