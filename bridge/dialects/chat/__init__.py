"""The Chat Completions dialect: a Responses request said as a Chat request, and Chat chunks read back as events.

    fields    what the bridge does with every field of a Responses request (``check``: refuse what it cannot honour)
    request   the request: a Responses body -> a Chat body, with the tool map (``to_request``)
    tools     the tools as Chat functions: valid unique names, and the map that restores them
    messages  the input items as Chat messages, in the order strict servers enforce
    answer    the answer: Chat chunks, or a whole completion, -> UpstreamEvents (``read_chunk``)
"""
from __future__ import annotations

from bridge.dialects.base import Dialect
from bridge.dialects.chat.answer import read_chunk, read_completion
from bridge.dialects.chat.fields import check
from bridge.dialects.chat.request import to_request

DIALECT = Dialect(name="chat", endpoint="chat/completions", wire="chat", to_request=to_request,
                  read_chunk=read_chunk, read_body=read_completion, check=check)
