"""What an upstream can tell us, as plain values: the machine's input, whatever the upstream's protocol.

A dialect's reader (``dialects/chat.py``) turns raw chunks into these; ``stream.py`` turns
these into Responses events. The tool map says what the upstream's function names stand for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeAlias


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    """A piece of the assistant's visible answer, with its tokens' log probabilities when they were asked for.

    Each is ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}``:
    the same shape in Chat and in Responses.
    """

    text: str
    logprobs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningDelta:
    """A piece of the model's reasoning (`reasoning_content` or `reasoning` upstream)."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningSealed:
    """The reasoning just streamed ends here, with what the next turn must send back (``encrypted_content``).

    Anthropic's thinking blocks end with a signature, and a redacted block is nothing but
    opaque data: each becomes one reasoning item (an empty one for redacted thinking).
    """

    encrypted_content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta:
    """A fragment of the tool call at upstream position `index`.

    `call_id` and `name` are set on the first fragment and may be repeated on later ones;
    the machine keeps the first value it sees. `arguments` fragments are concatenated.
    """

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """The upstream gave a `finish_reason` (None: it ended the answer without naming one)."""

    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReported:
    """Token counts; None for a detail the upstream did not report."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamFailed:
    """The upstream reported an error mid-stream, or sent something we cannot read."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Compacted:
    """The conversation, compacted: one ``compaction`` output item carrying it, opaque to the client.

    Not from an upstream's stream: the gateway's compaction (api/compaction/) says it after
    summarizing the conversation through the upstream.
    """

    encrypted_content: str


UpstreamEvent: TypeAlias = (TextDelta | ReasoningDelta | ReasoningSealed | ToolCallDelta | Finished | UsageReported
                            | UpstreamFailed | Compacted)


ToolKind: TypeAlias = Literal["function", "custom", "local_shell"]


class ToolTarget(NamedTuple):
    """What an upstream function name stands for on the Responses side."""

    kind: ToolKind
    name: str
    namespace: str | None = None


# Upstream function name -> the tool the client declared: dialects that flatten every tool
# into a function (Chat has nothing else) build it; ResponseStream restores the calls with it.
ToolMap: TypeAlias = dict[str, ToolTarget]
