"""What every dialect is: how a Responses request is said to one kind of upstream, and how its answer is read."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from bridge.events import ToolMap, UpstreamEvent

Wire: TypeAlias = Literal["chat", "responses", "anthropic"]
ChunkReader: TypeAlias = Callable[[Any], list[UpstreamEvent]]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamOptions:
    """What the upstream accepts; the defaults work on llama.cpp, vLLM, Ollama and DeepSeek."""

    model: str | None = None  # the name the upstream knows the model by (model map); None: as asked
    accepts_developer_role: bool = False
    replay_reasoning: bool = False
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    send_stream_options: bool = True
    send_reasoning_effort: bool = False
    send_prompt_cache_key: bool = False  # a Chat server that routes by it (OpenAI's Chat Completions)
    # A Responses upstream's tool and item types (the probe finds them); one it does not take is
    # rewritten by bridge/dialects/repaired.py.
    accepts_custom_tools: bool = True  # custom (freeform) and local_shell tools, and their calls
    accepts_namespace_tools: bool = True
    accepts_hosted_tools: bool = True  # web_search, file_search, mcp...
    accepts_encrypted_reasoning: bool = True  # reasoning items with encrypted_content in the history
    # An Anthropic upstream: the output cap sent when the client sets none (Messages requires one;
    # None: the model's known limit), and whether the prompt's stable prefix is marked for its cache.
    max_output_tokens: int | None = None
    prompt_caching: bool = True

    @property
    def repairs(self) -> bool:
        """Whether a Responses request must be repaired for this upstream (it refuses some of Codex's tools)."""
        return not (self.accepts_custom_tools and self.accepts_namespace_tools and self.accepts_hosted_tools
                    and self.accepts_encrypted_reasoning)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamRequest:
    """The body to send upstream, the map that restores tool calls in a translated answer, and what was left out.

    ``unsent`` names the settings the client asked for that the upstream was not sent, by
    their place in the Responses request (``"reasoning.effort"``): the Response object then
    states the value in force, not the one asked for.
    """

    body: dict[str, Any]
    tools: ToolMap = field(default_factory=dict)
    unsent: frozenset[str] = frozenset()
    # The gateway asked a Chat stream for usage the client did not ask for: its usage chunk is
    # the gateway's, taken out of what the client is sent (bridge/tap.py).
    usage_added: bool = False
    # Headers the request needs beyond the dialect's own (an Anthropic beta a feature asked for).
    headers: dict[str, str] = field(default_factory=dict)
    # What was left out that the request does not show, for the audit row's notes.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """One upstream protocol, as one table entry (``bridge.dialects.DIALECTS``).

    A dialect that translates reads the answer into UpstreamEvents (``read_chunk`` for
    each streamed chunk, ``read_body`` for a whole JSON answer) for ResponseStream; one
    that does not is relayed byte for byte, and ``wire`` says what those bytes are. A
    protocol whose chunks refer to earlier ones (Anthropic's content blocks by index) gives
    ``new_reader`` instead of ``read_chunk``: a fresh reader per answer.
    """

    name: str
    endpoint: str  # the upstream path, under its base URL
    wire: Wire  # what the upstream answers in
    to_request: Callable[[dict[str, Any], UpstreamOptions], UpstreamRequest]
    read_chunk: ChunkReader | None = None
    read_body: ChunkReader | None = None
    new_reader: Callable[[], ChunkReader] | None = None
    # Raises InvalidRequestError for what the client asked that this dialect cannot honour.
    check: Callable[[dict[str, Any]], None] = lambda body: None
    # What a translated answer is said in to the client: Responses events, or Chat chunks
    # (bridge/chat_stream.py) for a Chat client on an upstream that is translated.
    answers: Literal["responses", "chat"] = "responses"

    @property
    def translates(self) -> bool:
        return self.read_body is not None

    def reader(self) -> ChunkReader:
        """Return the reader of one streamed answer's chunks (a new one for a stateful protocol)."""
        if self.new_reader is not None:
            return self.new_reader()
        assert self.read_chunk is not None, f"{self.name} does not translate"
        return self.read_chunk
