"""The state machine that turns UpstreamEvents into Responses stream events (docs/responses-bridge.md §3).

One class, ``ResponseStream``; it does no IO and reads no clock but the one it is handed.
The Response object's fields and item shapes are bridge/response.py's; each event is built
by bridge/wire.py. What decides the next event is here.
"""
from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from typing import Any

from bridge import wire
from bridge.events import (
    Compacted,
    Finished,
    ReasoningDelta,
    ReasoningSealed,
    TextDelta,
    ToolCallDelta,
    ToolMap,
    ToolTarget,
    UpstreamEvent,
    UpstreamFailed,
    UsageReported,
)
from bridge.response import (
    OpenCall,
    OpenText,
    compaction_item,
    custom_call_item,
    custom_input,
    output_text,
    settings_of,
    shell_action,
    shell_call_item,
    usage_of,
    wants_logprobs,
)

# Rule 1: everything that decides the next Responses event lives in this file. Callers
# only move events: UpstreamEvents in through feed(), Responses events out of every verb.
#
# Theory of operation. A bridged answer is always this sequence (§3):
#
#   response.created, response.in_progress
#   per item, in the order the upstream starts them:
#     message    output_item.added, content_part.added, output_text.delta*, output_text.done,
#                content_part.done, output_item.done
#     reasoning  output_item.added, reasoning_summary_part.added, reasoning_summary_text.delta*,
#                reasoning_summary_text.done, reasoning_summary_part.done, output_item.done (a sealed
#                one, ReasoningSealed, carries encrypted_content; a redacted one is added and done only)
#     function   output_item.added, function_call_arguments.delta*, function_call_arguments.done,
#                output_item.done
#     custom     output_item.added, custom_tool_call_input.delta, .done, output_item.done (at finish)
#     compaction output_item.added and .done at once (the gateway's own compaction: Compacted)
#     shell      output_item.added, output_item.done (at finish)
#   exactly one of response.completed, response.incomplete, response.failed
#
# At most one text item (message or reasoning) is open at a time: a new kind of text, or a
# tool call, closes it. Tool calls stay open until finish() because the upstream may
# interleave their fragments; they close in upstream index order. Custom and local_shell
# calls are announced only at finish(), since their payload must be parsed whole.
#
# Legal transitions (anything else raises BridgeStateError):
#
#   phase       start()     feed()               finish()                       fail()
#   CREATED     STREAMING   -                    -                              FAILED (start events first)
#   QUEUED      STREAMING   -                    -                              FAILED (start events first)
#   STREAMING   -           STREAMING | FAILED   COMPLETED | INCOMPLETE | FAILED  FAILED
#   terminal    -           -                    -                              -
#
# A background response (``background: true``) is queued first: queue() takes CREATED to
# QUEUED with response.created and response.queued (status "queued"), and start() then
# sends only response.in_progress. cancel() ends any phase but a terminal one as CANCELLED.
# heartbeat() is allowed in STREAMING only (elsewhere it returns nothing) and stays there: a
# response.in_progress with the Response as it stands, for a client waiting on a silent
# upstream (Codex's idle timeout counts events, not SSE comments: docs/responses-bridge.md §2).


class Phase(enum.Enum):
    CREATED = "created"
    QUEUED = "queued"
    STREAMING = "streaming"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (Phase.COMPLETED, Phase.INCOMPLETE, Phase.FAILED, Phase.CANCELLED)
# finish_reason values that end the answer short; everything else non-error is a completion.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
class BridgeStateError(RuntimeError):
    """A verb was called in a phase that does not allow it: a bug in the caller."""


def _uuid_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


class ResponseStream:
    """Turn one upstream answer (as UpstreamEvents) into one Responses stream.

    `created_at` is the Unix time the IO side read when the request arrived (pass
    `time.time()`); `clock` is read once, when the response reaches a terminal state, for
    its `completed_at` (pass `time.time`). Without them, `created_at` is 0 and `completed_at`
    is `created_at`, so tests stay deterministic. `new_id(prefix)` makes every id, so tests
    can pass a counter. `tools` is the dialect's tool map (what the upstream was offered)
    and `unsent` the settings it did not pass on (``UpstreamRequest.unsent``). `response_id`:
    the id a background response was given before its upstream was asked (else a new one).
    """

    def __init__(self, *, model: str, tools: ToolMap | None = None, request: dict[str, Any] | None = None,
                 new_id: Callable[[str], str] = _uuid_id, created_at: float | None = None,
                 clock: Callable[[], float] | None = None, unsent: frozenset[str] = frozenset(),
                 response_id: str | None = None) -> None:
        self.phase = Phase.CREATED
        self._model = model
        self._tools = tools or {}
        self._settings = settings_of(request or {}, set(self._tools.values()), unsent)
        self._logprobs = wants_logprobs(request or {})
        self._new_id = new_id
        self._created_at = int(created_at or 0)
        self._clock = clock
        self._completed_at: int | None = None
        self._id = response_id or new_id("resp_")
        self._sequence_number = 0
        self._next_output_index = 0
        self._output: dict[int, dict[str, Any]] = {}  # done items by output_index
        self._message: OpenText | None = None
        self._reasoning: OpenText | None = None
        self._calls: dict[int, OpenCall] = {}
        self._live_call: int | None = None  # the one call whose arguments stream as they come
        self._finish_reason: str | None = None
        self._finished = False
        self._usage: dict[str, Any] | None = None
        self._reported: UsageReported | None = None
        self._error: dict[str, str] | None = None
        self._incomplete_reason: str | None = None

    # -- public verbs ------------------------------------------------------------------

    def queue(self) -> list[dict[str, Any]]:
        """Return the events that open a background response, before its upstream is asked."""
        self._require(Phase.CREATED, "queue")
        self.phase = Phase.QUEUED
        return [self._created(), wire.queued(self._next(), self.response)]

    def queued_as(self, opening: list[dict[str, Any]]) -> None:
        """Carry on a background response that another ResponseStream queued (``opening``: its queue() events).

        The response is queued before the upstream is chosen; the one that answers is
        known only then, and with it what it was offered (the tool map).
        """
        self._require(Phase.CREATED, "queued_as")
        self.phase = Phase.QUEUED
        self._sequence_number = len(opening)

    def start(self) -> list[dict[str, Any]]:
        """Return the events that open the response (after queue(): only response.in_progress)."""
        if self.phase is Phase.QUEUED:
            self.phase = Phase.STREAMING
            return [wire.in_progress(self._next(), self.response)]
        self._require(Phase.CREATED, "start")
        self.phase = Phase.STREAMING
        return [self._created(), wire.in_progress(self._next(), self.response)]

    def feed(self, event: UpstreamEvent) -> list[dict[str, Any]]:
        """Return the Responses events one upstream event causes."""
        self._require(Phase.STREAMING, f"feed({type(event).__name__})")
        if isinstance(event, TextDelta):
            return self._on_text(event.text, event.logprobs)
        if isinstance(event, ReasoningDelta):
            return self._on_reasoning(event.text)
        if isinstance(event, ReasoningSealed):
            return self._on_reasoning_sealed(event.encrypted_content)
        if isinstance(event, ToolCallDelta):
            return self._on_tool_call(event)
        if isinstance(event, Finished):
            # The last reason wins; None means the upstream ended without naming one.
            self._finished, self._finish_reason = True, event.reason
            return []
        if isinstance(event, UsageReported):
            self._usage, self._reported = usage_of(event), event
            return []
        if isinstance(event, UpstreamFailed):
            return self.fail(event.code, event.message)
        if isinstance(event, Compacted):
            return self._on_compacted(event.encrypted_content)
        raise TypeError(f"feed() takes an UpstreamEvent, not {event!r}")

    def heartbeat(self) -> list[dict[str, Any]]:
        """Return a ``response.in_progress`` for a client waiting on a silent upstream; nothing outside STREAMING."""
        if self.phase is not Phase.STREAMING:
            return []
        return [wire.in_progress(self._next(), self.response)]

    def finish(self) -> list[dict[str, Any]]:
        """Return the closing events once the upstream stream has ended, [DONE] or not.

        An upstream that stopped before a finish_reason broke off: that is reported as a
        failure, never as a (truncated) completion.
        """
        self._require(Phase.STREAMING, "finish")
        if not self._finished:
            return self.fail("upstream_protocol_error", "The upstream stream ended before a finish_reason was sent.")
        nameless = sorted(call.index for call in self._calls.values() if not call.name)
        if nameless:
            return self.fail("upstream_protocol_error", f"The upstream sent tool call {nameless[0]} without a name.")
        self._incomplete_reason = INCOMPLETE_REASONS.get(self._finish_reason or "")
        status = "incomplete" if self._incomplete_reason else "completed"
        events = self._close_text(status)
        for call in self._in_item_order():
            events += self._close_call(call, status)
        if self._incomplete_reason:
            self._end(Phase.INCOMPLETE)
            return [*events, self._terminal()]
        self._end(Phase.COMPLETED)
        return [*events, self._terminal()]

    def fail(self, code: str, message: str) -> list[dict[str, Any]]:
        """Return the events that end the response as failed, closing open items as incomplete.

        Before start() the opening events come first, so the client still sees a whole stream.
        """
        events = self._close_open("fail")
        self._error = {"code": code, "message": message}
        self._end(Phase.FAILED)
        return [*events, self._terminal()]

    def cancel(self) -> list[dict[str, Any]]:
        """Return the events that end a background response cancelled by its client (POST .../cancel).

        Open items close as incomplete. Neither the OpenAI API nor Open Responses has a
        ``response.cancelled`` event: the stream ends with ``response.failed``, whose
        Response says ``status: "cancelled"`` (and no error), as GET then does.
        """
        events = self._close_open("cancel")
        self._end(Phase.CANCELLED)
        return [*events, self._terminal()]

    def _close_open(self, verb: str) -> list[dict[str, Any]]:
        """Return the events that start the response if it has not started, and close its open items."""
        events = self.start() if self.phase in (Phase.CREATED, Phase.QUEUED) else []
        self._require(Phase.STREAMING, verb)
        events += self._close_text("incomplete")
        for call in self._in_item_order():
            if call.output_index is not None:  # calls never announced are dropped
                events += self._close_call(call, "incomplete")
        return events

    @property
    def response(self) -> dict[str, Any]:
        """Return the Response object as it stands (complete once the phase is terminal)."""
        status = self.phase.value if self.phase in (*TERMINAL, Phase.QUEUED) else "in_progress"
        return {
            "id": self._id,
            "object": "response",
            "created_at": self._created_at,
            "completed_at": self._completed_at,
            "status": status,
            "model": self._model,
            "output": [self._output[index] for index in sorted(self._output)],
            "usage": self._usage if self.phase in TERMINAL else None,
            "error": self._error,
            "incomplete_details": {"reason": self._incomplete_reason} if self._incomplete_reason else None,
            **self._settings,  # built once per stream, never changed: snapshots may share it
        }

    @property
    def usage(self) -> dict[str, Any] | None:
        """Return the usage in Responses shape, or None if the upstream reported none."""
        return self._usage

    @property
    def reported_usage(self) -> UsageReported | None:
        """Return the usage as the upstream reported it (None for what it left out), for the audit row."""
        return self._reported

    @property
    def tool_call_count(self) -> int:
        """Return how many tool calls have been announced to the client."""
        return sum(1 for call in self._calls.values() if call.output_index is not None)

    # -- transitions -------------------------------------------------------------------

    def _end(self, phase: Phase) -> None:
        self.phase = phase
        self._completed_at = int(self._clock()) if self._clock is not None else self._created_at

    def _require(self, phase: Phase, verb: str) -> None:
        if self.phase is not phase:
            raise BridgeStateError(f"{verb} is not allowed in phase {self.phase.name}")

    def _on_text(self, text: str, logprobs: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
        if not text:
            return []
        events = self._close_reasoning("completed")
        if self._message is None:
            self._message = OpenText(id=self._new_id("msg_"), output_index=self._take_output_index(),
                                  logprobs=[] if self._logprobs else None)
            events += [self._item_added(self._message.message_item("in_progress"), self._message.output_index)]
            events += [self._content_part_added(self._message)]
        self._message.chunks.append(text)
        given = list(logprobs) if self._message.logprobs is not None else []
        if self._message.logprobs is not None:
            self._message.logprobs += given
        return [*events, wire.output_text_delta(self._next(), self._message.ref(), text, given)]

    def _on_compacted(self, encrypted_content: str) -> list[dict[str, Any]]:
        """A compaction item, whole at once: added and done (what remote compaction expects as the only output)."""
        events = self._close_text("completed")
        index = self._take_output_index()
        item = compaction_item(self._new_id("cmp_"), encrypted_content)
        return [*events, self._item_added(item, index), self._item_done(item, index)]

    def _on_reasoning(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        events = self._open_reasoning() if self._reasoning is None else []
        assert self._reasoning is not None
        if not self._reasoning.chunks:
            events += [wire.summary_part_added(self._next(), self._reasoning.ref())]
        self._reasoning.chunks.append(text)
        return [*events, wire.summary_text_delta(self._next(), self._reasoning.ref(), text)]

    def _on_reasoning_sealed(self, encrypted_content: str) -> list[dict[str, Any]]:
        """End the open reasoning item with ``encrypted_content``; with none open, one with no text (redacted)."""
        events = self._open_reasoning() if self._reasoning is None else []
        assert self._reasoning is not None
        self._reasoning.encrypted_content = encrypted_content
        return events + self._close_reasoning("completed")

    def _open_reasoning(self) -> list[dict[str, Any]]:
        events = self._close_message("completed")
        self._reasoning = OpenText(id=self._new_id("rs_"), output_index=self._take_output_index())
        return [*events, self._item_added(self._reasoning.reasoning_item(None), self._reasoning.output_index)]

    def _on_tool_call(self, delta: ToolCallDelta) -> list[dict[str, Any]]:
        # A new call ends the open text item; a late fragment of a known call does not.
        events = self._close_text("completed") if delta.index not in self._calls else []
        call = self._calls.setdefault(delta.index, OpenCall(index=delta.index))
        # id and name are set once: servers that repeat them on every fragment must not
        # produce "read_fileread_file".
        if delta.call_id and call.call_id is None:
            call.call_id = delta.call_id
        if delta.name and call.name is None:
            call.name = delta.name
            call.target = self._tools.get(delta.name)  # unknown names stay plain function calls
        call.arguments.append(delta.arguments)
        if call.name is None or (call.target and call.target.kind != "function"):
            return events  # announced once the name is known, or at finish()
        pending = delta.arguments
        if call.output_index is None:
            if self._live_call is not None and self._live_call != call.index:
                # One item at a time, as the OpenAI API streams: a call the upstream interleaves
                # with the live one waits, whole, for finish() (clients such as LangChain start
                # a new call whenever output_index goes back).
                return events
            self._live_call = call.index
            events.append(self._announce_function(call))
            pending = "".join(call.arguments)  # fragments that came before the name
        return [*events, wire.arguments_delta(self._next(), call.ref(), pending)] if pending else events

    def _in_item_order(self) -> list[OpenCall]:
        """The calls in the order they close: the announced (live) one first, then those waiting, by index."""
        return sorted(self._calls.values(), key=lambda call: (call.output_index is None, call.output_index or 0,
                                                              call.index))

    def _announce_function(self, call: OpenCall) -> dict[str, Any]:
        index = self._announce(call, "fc_")
        return self._item_added(call.function_item("", "in_progress"), index)

    def _announce(self, call: OpenCall, prefix: str) -> int:
        """Give a call its item id, output_index and (if the upstream sent none) call_id."""
        call.id = self._new_id(prefix)
        call.output_index = self._take_output_index()
        if call.call_id is None:
            call.call_id = self._new_id("call_")
        return call.output_index

    def _close_text(self, status: str) -> list[dict[str, Any]]:
        return self._close_reasoning(status) + self._close_message(status)

    def _close_message(self, status: str) -> list[dict[str, Any]]:
        message, self._message = self._message, None
        if message is None:
            return []
        events = [self._output_text_done(message), self._content_part_done(message)]
        return [*events, self._item_done(message.message_item(status), message.output_index)]

    def _close_reasoning(self, status: str) -> list[dict[str, Any]]:
        reasoning, self._reasoning = self._reasoning, None
        if reasoning is None:
            return []
        item = reasoning.reasoning_item(status)
        events = [wire.summary_text_done(self._next(), reasoning.ref(), reasoning.text()),
                  wire.summary_part_done(self._next(), reasoning.ref(), reasoning.text())] if reasoning.chunks else []
        return [*events, self._item_done(item, reasoning.output_index)]

    def _close_call(self, call: OpenCall, status: str) -> list[dict[str, Any]]:
        """Return the events that finish one call, announcing it first if it waited for finish()."""
        arguments = "".join(call.arguments) or "{}"
        target = call.target
        if target and target.kind == "local_shell" and call.output_index is None:
            action = shell_action(arguments)
            if action is not None:
                return self._close_shell(call, action, status)
            call.target = None  # unreadable: pass it on as a plain function call rather than guess
        elif target and target.kind == "custom" and call.output_index is None:
            return self._close_custom(call, target, custom_input(arguments), status)
        # A call that waited (interleaved, or a local_shell call passed on as a function) comes whole.
        events = [self._announce_function(call), wire.arguments_delta(self._next(), call.ref(), arguments)] \
            if call.output_index is None else []
        assert call.output_index is not None
        item = call.function_item(arguments, status)
        done = wire.arguments_done(self._next(), call.ref(), call.target.name if call.target else call.name, arguments)
        return [*events, done, self._item_done(item, call.output_index)]

    def _close_shell(self, call: OpenCall, action: dict[str, Any], status: str) -> list[dict[str, Any]]:
        index = self._announce(call, "lsh_")
        added = self._item_added(shell_call_item(call.id, call.call_id, action, "in_progress"), index)
        return [added, self._item_done(shell_call_item(call.id, call.call_id, action, status), index)]

    def _close_custom(self, call: OpenCall, target: ToolTarget, text: str, status: str) -> list[dict[str, Any]]:
        index = self._announce(call, "ctc_")
        return [
            self._item_added(custom_call_item(call.id, call.call_id, target, "", "in_progress"), index),
            wire.custom_input_delta(self._next(), call.ref(), text),
            wire.custom_input_done(self._next(), call.ref(), text),
            self._item_done(custom_call_item(call.id, call.call_id, target, text, status), index),
        ]

    def _take_output_index(self) -> int:
        index, self._next_output_index = self._next_output_index, self._next_output_index + 1
        return index

    # -- events: numbered here, built by bridge/wire.py -----------------------------------

    def _next(self) -> int:
        number = self._sequence_number
        self._sequence_number += 1
        return number

    def _created(self) -> dict[str, Any]:
        return wire.created(self._next(), self.response)

    def _terminal(self) -> dict[str, Any]:
        return wire.terminal(self._next(), self.response)

    def _item_added(self, item: dict[str, Any], output_index: int) -> dict[str, Any]:
        return wire.item_added(self._next(), output_index, item)

    def _item_done(self, item: dict[str, Any], output_index: int) -> dict[str, Any]:
        self._output[output_index] = item
        return wire.item_done(self._next(), output_index, item)

    def _content_part_added(self, message: OpenText) -> dict[str, Any]:
        part = output_text("", [] if message.logprobs is not None else None)
        return wire.content_part_added(self._next(), message.ref(), part)

    def _output_text_done(self, message: OpenText) -> dict[str, Any]:
        return wire.output_text_done(self._next(), message.ref(), message.text(), message.logprobs or [])

    def _content_part_done(self, message: OpenText) -> dict[str, Any]:
        return wire.content_part_done(self._next(), message.ref(), output_text(message.text(), message.logprobs))
