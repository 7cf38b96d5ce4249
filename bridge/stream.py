"""The state machine that turns UpstreamEvents into Responses stream events (docs/responses-bridge.md §3).

One class, ``ResponseStream``; it does no IO and reads no clock but the one it is handed.
"""
from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import BridgeError
from bridge.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolMap,
    ToolTarget,
    UpstreamEvent,
    UpstreamFailed,
    UsageReported,
)
from bridge.values import is_int, is_number

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
#                reasoning_summary_text.done, reasoning_summary_part.done, output_item.done
#     function   output_item.added, function_call_arguments.delta*, function_call_arguments.done,
#                output_item.done
#     custom     output_item.added, custom_tool_call_input.delta, .done, output_item.done (at finish)
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
# What the Response object says about the request (Open Responses `ResponseResource`: every field
# is required, so each one is always there). The rule is that it states what was used:
#   - a setting the upstream is sent, or that is the gateway's own (store, metadata...), echoes the
#     request's value when it has the right type, else the default the OpenAI API documents;
#   - a setting the upstream was not sent carries the value in force instead of the one asked for:
#     SETTINGS_IN_FORCE for those the bridge never passes on (a client asking for priority service
#     learns it got the default), the dialect's `unsent` for those it left out this time (a
#     reasoning effort the upstream is not configured to take is null).
# The upstream's own default may differ from the documented one when the client sent none (a
# llama.cpp or vLLM model's generation config can set its own temperature); the gateway cannot
# know it, so the documented default is what it states.
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
SETTINGS_IN_FORCE: dict[str, Any] = {
    "service_tier": "default",  # no dialect passes a tier on: the upstream serves in its only one
    "max_tool_calls": None,  # no limit is enforced on the upstream's calls
}
TRUNCATION_MODES = ("auto", "disabled")
# The `include` entry that asks for the answer's log probabilities. As in the OpenAI API,
# `top_logprobs` alone only sets how many alternatives each token gets, and brings none back.
LOGPROBS = "message.output_text.logprobs"


def wants_logprobs(request: dict[str, Any]) -> bool:
    """Whether a Responses request asks for its answer's log probabilities."""
    include = request.get("include")
    return isinstance(include, list) and LOGPROBS in include


class BridgeStateError(RuntimeError):
    """A verb was called in a phase that does not allow it: a bug in the caller."""


def _uuid_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


@dataclass(slots=True)
class _Text:
    """An open message or reasoning item."""

    id: str
    output_index: int
    chunks: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None  # a message's tokens, when the client asked for them

    def ref(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.output_index}

    def text(self) -> str:
        return "".join(self.chunks)


@dataclass(slots=True)
class _Call:
    """One upstream tool call, keyed by its upstream index."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    target: ToolTarget | None = None
    id: str | None = None  # item id, once announced
    output_index: int | None = None

    def ref(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.output_index}


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
        self._settings = _settings(request or {}, set(self._tools.values()), unsent)
        self._logprobs = wants_logprobs(request or {})
        self._new_id = new_id
        self._created_at = int(created_at or 0)
        self._clock = clock
        self._completed_at: int | None = None
        self._id = response_id or new_id("resp_")
        self._sequence_number = 0
        self._next_output_index = 0
        self._output: dict[int, dict[str, Any]] = {}  # done items by output_index
        self._message: _Text | None = None
        self._reasoning: _Text | None = None
        self._calls: dict[int, _Call] = {}
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
        return [self._created(), self._event("response.queued", response=self.response)]

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
            return [self._in_progress()]
        self._require(Phase.CREATED, "start")
        self.phase = Phase.STREAMING
        return [self._created(), self._in_progress()]

    def feed(self, event: UpstreamEvent) -> list[dict[str, Any]]:
        """Return the Responses events one upstream event causes."""
        self._require(Phase.STREAMING, f"feed({type(event).__name__})")
        if isinstance(event, TextDelta):
            return self._on_text(event.text, event.logprobs)
        if isinstance(event, ReasoningDelta):
            return self._on_reasoning(event.text)
        if isinstance(event, ToolCallDelta):
            return self._on_tool_call(event)
        if isinstance(event, Finished):
            # The last reason wins; None means the upstream ended without naming one.
            self._finished, self._finish_reason = True, event.reason
            return []
        if isinstance(event, UsageReported):
            self._usage, self._reported = _usage(event), event
            return []
        if isinstance(event, UpstreamFailed):
            return self.fail(event.code, event.message)
        raise TypeError(f"feed() takes an UpstreamEvent, not {event!r}")

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
            return [*events, self._incomplete()]
        self._end(Phase.COMPLETED)
        return [*events, self._completed()]

    def fail(self, code: str, message: str) -> list[dict[str, Any]]:
        """Return the events that end the response as failed, closing open items as incomplete.

        Before start() the opening events come first, so the client still sees a whole stream.
        """
        events = self._close_open("fail")
        self._error = {"code": code, "message": message}
        self._end(Phase.FAILED)
        return [*events, self._failed()]

    def cancel(self) -> list[dict[str, Any]]:
        """Return the events that end a background response cancelled by its client (POST .../cancel).

        Open items close as incomplete. Neither the OpenAI API nor Open Responses has a
        ``response.cancelled`` event: the stream ends with ``response.failed``, whose
        Response says ``status: "cancelled"`` (and no error), as GET then does.
        """
        events = self._close_open("cancel")
        self._end(Phase.CANCELLED)
        return [*events, self._failed()]

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
            self._message = _Text(id=self._new_id("msg_"), output_index=self._take_output_index(),
                                  logprobs=[] if self._logprobs else None)
            events += [self._item_added(self._message_item(self._message, "in_progress"), self._message.output_index)]
            events += [self._content_part_added(self._message)]
        self._message.chunks.append(text)
        given = list(logprobs) if self._message.logprobs is not None else []
        if self._message.logprobs is not None:
            self._message.logprobs += given
        return [*events, self._output_text_delta(self._message, text, given)]

    def _on_reasoning(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        events = self._close_message("completed")
        if self._reasoning is None:
            self._reasoning = _Text(id=self._new_id("rs_"), output_index=self._take_output_index())
            events += [self._item_added(self._reasoning_item(self._reasoning, None), self._reasoning.output_index)]
            events += [self._summary_part_added(self._reasoning)]
        self._reasoning.chunks.append(text)
        return [*events, self._summary_text_delta(self._reasoning, text)]

    def _on_tool_call(self, delta: ToolCallDelta) -> list[dict[str, Any]]:
        # A new call ends the open text item; a late fragment of a known call does not.
        events = self._close_text("completed") if delta.index not in self._calls else []
        call = self._calls.setdefault(delta.index, _Call(index=delta.index))
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
        return [*events, self._arguments_delta(call, pending)] if pending else events

    def _in_item_order(self) -> list[_Call]:
        """The calls in the order they close: the announced (live) one first, then those waiting, by index."""
        return sorted(self._calls.values(), key=lambda call: (call.output_index is None, call.output_index or 0,
                                                              call.index))

    def _announce_function(self, call: _Call) -> dict[str, Any]:
        index = self._announce(call, "fc_")
        return self._item_added(self._function_item(call, "", "in_progress"), index)

    def _announce(self, call: _Call, prefix: str) -> int:
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
        return [*events, self._item_done(self._message_item(message, status), message.output_index)]

    def _close_reasoning(self, status: str) -> list[dict[str, Any]]:
        reasoning, self._reasoning = self._reasoning, None
        if reasoning is None:
            return []
        item = self._reasoning_item(reasoning, status)
        events = [self._summary_text_done(reasoning), self._summary_part_done(reasoning)]
        return [*events, self._item_done(item, reasoning.output_index)]

    def _close_call(self, call: _Call, status: str) -> list[dict[str, Any]]:
        """Return the events that finish one call, announcing it first if it waited for finish()."""
        arguments = "".join(call.arguments) or "{}"
        target = call.target
        if target and target.kind == "local_shell" and call.output_index is None:
            action = _shell_action(arguments)
            if action is not None:
                index = self._announce(call, "lsh_")
                item = {"id": call.id, "type": "local_shell_call", "call_id": call.call_id, "action": action}
                added = self._item_added({**item, "status": "in_progress"}, index)
                return [added, self._item_done({**item, "status": status}, index)]
            call.target = None  # unreadable: pass it on as a plain function call rather than guess
        elif target and target.kind == "custom" and call.output_index is None:
            text = _custom_input(arguments)
            index = self._announce(call, "ctc_")
            item = {"id": call.id, "type": "custom_tool_call", "call_id": call.call_id, "name": target.name}
            item |= {"namespace": target.namespace} if target.namespace else {}
            return [
                self._item_added({**item, "input": "", "status": "in_progress"}, index),
                self._custom_input_delta(call, text),
                self._custom_input_done(call, text),
                self._item_done({**item, "input": text, "status": status}, index),
            ]
        # A call that waited (interleaved, or a local_shell call passed on as a function) comes whole.
        events = [self._announce_function(call), self._arguments_delta(call, arguments)] \
            if call.output_index is None else []
        assert call.output_index is not None
        item = self._function_item(call, arguments, status)
        return [*events, self._arguments_done(call, item), self._item_done(item, call.output_index)]

    def _take_output_index(self) -> int:
        index, self._next_output_index = self._next_output_index, self._next_output_index + 1
        return index

    # -- items: the in-progress and done forms of messages, reasoning and function calls -

    def _message_item(self, message: _Text, status: str) -> dict[str, Any]:
        content = [] if status == "in_progress" else [_output_text(message.text(), message.logprobs)]
        return {"id": message.id, "type": "message", "role": "assistant", "status": status, "content": content}

    def _reasoning_item(self, reasoning: _Text, status: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {"id": reasoning.id, "type": "reasoning", "summary": []}
        if status is None:
            return item
        text = reasoning.text()
        item["summary"] = [{"type": "summary_text", "text": text}]
        return {**item, "content": [{"type": "reasoning_text", "text": text}], "status": status}

    def _function_item(self, call: _Call, arguments: str, status: str) -> dict[str, Any]:
        # A namespaced tool must come back with its plain name and `namespace` set (§1):
        # Codex answers "unsupported call" otherwise.
        target = call.target
        name = target.name if target else call.name
        item = {"id": call.id, "type": "function_call", "call_id": call.call_id, "name": name, "arguments": arguments}
        if target and target.namespace:
            item["namespace"] = target.namespace
        return {**item, "status": status}

    # -- events: each Responses event type is built in exactly one place ---------------

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self._sequence_number, **fields}
        self._sequence_number += 1
        return event

    def _created(self) -> dict[str, Any]:
        return self._event("response.created", response=self.response)

    def _in_progress(self) -> dict[str, Any]:
        return self._event("response.in_progress", response=self.response)

    def _completed(self) -> dict[str, Any]:
        return self._event("response.completed", response=self.response)

    def _incomplete(self) -> dict[str, Any]:
        return self._event("response.incomplete", response=self.response)

    def _failed(self) -> dict[str, Any]:
        event = failed_event(self._sequence_number, self.response)
        self._sequence_number += 1
        return event

    def _item_added(self, item: dict[str, Any], output_index: int) -> dict[str, Any]:
        return self._event("response.output_item.added", output_index=output_index, item=item)

    def _item_done(self, item: dict[str, Any], output_index: int) -> dict[str, Any]:
        self._output[output_index] = item
        event = item_done_event(self._sequence_number, output_index, item)
        self._sequence_number += 1
        return event

    def _content_part_added(self, message: _Text) -> dict[str, Any]:
        part = _output_text("", [] if message.logprobs is not None else None)
        return self._event("response.content_part.added", **message.ref(), content_index=0, part=part)

    def _output_text_delta(self, message: _Text, delta: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
        return self._event("response.output_text.delta", **message.ref(), content_index=0, delta=delta,
                           logprobs=logprobs)

    def _output_text_done(self, message: _Text) -> dict[str, Any]:
        text = message.text()
        return self._event("response.output_text.done", **message.ref(), content_index=0, text=text,
                           logprobs=message.logprobs or [])

    def _content_part_done(self, message: _Text) -> dict[str, Any]:
        part = _output_text(message.text(), message.logprobs)
        return self._event("response.content_part.done", **message.ref(), content_index=0, part=part)

    def _summary_part_added(self, reasoning: _Text) -> dict[str, Any]:
        part = {"type": "summary_text", "text": ""}
        return self._event("response.reasoning_summary_part.added", **reasoning.ref(), summary_index=0, part=part)

    def _summary_text_delta(self, reasoning: _Text, delta: str) -> dict[str, Any]:
        return self._event("response.reasoning_summary_text.delta", **reasoning.ref(), summary_index=0, delta=delta)

    def _summary_text_done(self, reasoning: _Text) -> dict[str, Any]:
        text = reasoning.text()
        return self._event("response.reasoning_summary_text.done", **reasoning.ref(), summary_index=0, text=text)

    def _summary_part_done(self, reasoning: _Text) -> dict[str, Any]:
        part = {"type": "summary_text", "text": reasoning.text()}
        return self._event("response.reasoning_summary_part.done", **reasoning.ref(), summary_index=0, part=part)

    def _arguments_delta(self, call: _Call, delta: str) -> dict[str, Any]:
        return self._event("response.function_call_arguments.delta", **call.ref(), delta=delta)

    def _arguments_done(self, call: _Call, item: dict[str, Any]) -> dict[str, Any]:
        name, arguments = item["name"], item["arguments"]
        return self._event("response.function_call_arguments.done", **call.ref(), name=name, arguments=arguments)

    def _custom_input_delta(self, call: _Call, delta: str) -> dict[str, Any]:
        return self._event("response.custom_tool_call_input.delta", **call.ref(), delta=delta)

    def _custom_input_done(self, call: _Call, text: str) -> dict[str, Any]:
        return self._event("response.custom_tool_call_input.done", **call.ref(), input=text)


def item_done_event(sequence_number: int, output_index: int, item: dict[str, Any]) -> dict[str, Any]:
    """Return a ``response.output_item.done`` event; ResponseStream's, and those that close a broken relay's items."""
    return {"type": "response.output_item.done", "sequence_number": sequence_number, "output_index": output_index,
            "item": item}


def failed_event(sequence_number: int, response: dict[str, Any]) -> dict[str, Any]:
    """Return a ``response.failed`` event; ResponseStream's, and the one that ends a relayed stream that broke."""
    return {"type": "response.failed", "sequence_number": sequence_number, "response": response}


def stream_error(sequence_number: int, error: BridgeError) -> dict[str, Any]:
    """Return the stream's ``error`` event (Open Responses ``ErrorStreamingEvent``): a watch failed, not a response."""
    return {"type": "error", "sequence_number": sequence_number, "error": error.to_dict()["error"]}


def failed_response(response_id: str, model: str | None, code: str, message: str,
                    output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the Response object of a relayed stream that broke: only what the tap saw of it."""
    return {"id": response_id, "object": "response", "status": "failed", "model": model, "output": output or [],
            "error": {"code": code, "message": message}, "incomplete_details": None, "usage": None}


def _settings(request: dict[str, Any], offered: set[ToolTarget], unsent: frozenset[str]) -> dict[str, Any]:
    """Return the fields of the Response object that state the request's settings, as they were used."""
    reasoning = request["reasoning"] if isinstance(request.get("reasoning"), dict) else {}
    reasoning = {key: value for key, value in reasoning.items() if f"reasoning.{key}" not in unsent}
    settings = {
        "previous_response_id": _str_or_none(request.get("previous_response_id")),
        "instructions": _str_or_none(request.get("instructions")),
        "tools": _offered_tools(request.get("tools"), offered),
        "tool_choice": request["tool_choice"] if request.get("tool_choice") is not None else "auto",
        "truncation": request["truncation"] if request.get("truncation") in TRUNCATION_MODES else "disabled",
        "parallel_tool_calls": _bool(request.get("parallel_tool_calls"), default=True),
        "text": _text(request.get("text")),
        **{key: request[key] if is_number(request.get(key)) else default for key, default in SAMPLING_DEFAULTS.items()},
        "reasoning": {key: _str_or_none(reasoning.get(key)) for key in ("effort", "summary")},
        "max_output_tokens": request["max_output_tokens"] if is_int(request.get("max_output_tokens")) else None,
        # How many alternatives each token's log probability comes with (asked of the upstream
        # with the `include` entry; bridge/dialects/chat.py).
        "top_logprobs": request["top_logprobs"] if is_int(request.get("top_logprobs")) else 0,
        # `store` defaults to true, as in the API: the gateway stores responses (api/stored/).
        "store": _bool(request.get("store"), default=True),
        # Answered by a task of the gateway, watched by polling or resuming (api/background/).
        "background": _bool(request.get("background"), default=False),
        "metadata": request["metadata"] if isinstance(request.get("metadata"), dict) else {},
        # Identifiers the client attached to the request; the gateway keeps them with the answer.
        "safety_identifier": _str_or_none(request.get("safety_identifier")),
        "prompt_cache_key": _str_or_none(request.get("prompt_cache_key")),
        "user": _str_or_none(request.get("user")),  # not in Open Responses; the OpenAI API still echoes it
        # The conversation it was answered in (an id, or {"id": ...} in the request): OpenAI's field.
        "conversation": _conversation(request.get("conversation")),
    }
    return {**settings, **SETTINGS_IN_FORCE}


def _conversation(value: Any) -> dict[str, str] | None:
    conversation_id = value.get("id") if isinstance(value, dict) else value
    return {"id": conversation_id} if isinstance(conversation_id, str) and conversation_id else None


def _offered_tools(declared: Any, offered: set[ToolTarget]) -> list[dict[str, Any]]:
    """Return the declared tools the upstream was offered, in their Responses form.

    A hosted tool (web_search, file_search, mcp...) runs at OpenAI; the dialect offers the
    upstream none, so the model did not have it and it is left out.
    """
    if not isinstance(declared, list):
        return []
    tools = [_offered_tool(tool, offered) for tool in declared if isinstance(tool, dict)]
    return [tool for tool in tools if tool is not None]


def _offered_tool(tool: dict[str, Any], offered: set[ToolTarget], namespace: str | None = None
                  ) -> dict[str, Any] | None:
    kind = tool.get("type")
    if kind == "function":
        spec = tool["function"] if isinstance(tool.get("function"), dict) else tool  # also declared the Chat way
        name = spec.get("name")
        if not isinstance(name, str) or ToolTarget("function", name, namespace) not in offered:
            return None
        parameters = spec.get("parameters")
        return {"type": "function", "name": name, "description": _str_or_none(spec.get("description")) or None,
                "parameters": parameters if isinstance(parameters, dict) else None,
                # As sent: the dialect passes `strict: true` on, and says nothing otherwise.
                "strict": spec.get("strict") is True}
    name = tool.get("name")
    if kind == "custom" and isinstance(name, str) and ToolTarget("custom", name, namespace) in offered:
        return tool
    if kind == "local_shell" and namespace is None and ToolTarget("local_shell", "local_shell") in offered:
        return tool
    if kind == "namespace" and namespace is None and isinstance(name, str) and isinstance(tool.get("tools"), list):
        subtools = [_offered_tool(sub, offered, name) for sub in tool["tools"] if isinstance(sub, dict)]
        kept = [sub for sub in subtools if sub is not None]
        return {**tool, "tools": kept} if kept else None
    return None


def _text(text: Any) -> dict[str, Any]:
    """Return the text settings: the output format asked for (plain text by default), and the verbosity sent."""
    verbosity = text.get("verbosity") if isinstance(text, dict) else None
    said = {"verbosity": verbosity} if isinstance(verbosity, str) and verbosity else {}
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        return {"format": {"type": "text"}, **said}
    if fmt["type"] == "json_schema":
        # Upstreams are not asked for strict adherence unless the client said so (the Chat default).
        fmt = {"description": None, **fmt, "strict": _bool(fmt.get("strict"), default=False)}
    return {"format": fmt, **said}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any, *, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def _output_text(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An output_text part; with ``logprobs`` (asked for) it carries its tokens' log probabilities."""
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = list(logprobs)
    return part


def _usage(event: UsageReported) -> dict[str, Any]:
    """Return Responses usage; Codex needs every count as an integer, so unknown is 0."""
    return {
        "input_tokens": event.input_tokens,
        # cache_write_tokens: the openai SDK's InputTokensDetails requires it; Chat never reports it.
        "input_tokens_details": {"cached_tokens": event.cached_tokens or 0, "cache_write_tokens": 0},
        "output_tokens": event.output_tokens,
        "output_tokens_details": {"reasoning_tokens": event.reasoning_tokens or 0},
        "total_tokens": event.total_tokens,
    }


def _custom_input(arguments: str) -> str:
    """Return the freeform text of a custom tool call, or the raw arguments if not wrapped."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    text = parsed.get("input") if isinstance(parsed, dict) else None
    return text if isinstance(text, str) else arguments


def _shell_action(arguments: str) -> dict[str, Any] | None:
    """Return a local_shell `exec` action from the function arguments, or None if unreadable."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return None
    command = parsed.get("command") if isinstance(parsed, dict) else None
    if isinstance(command, str) and command:
        command = ["bash", "-lc", command]  # models often send one shell string
    if not isinstance(command, list) or not command or not all(isinstance(part, str) for part in command):
        return None
    action: dict[str, Any] = {"type": "exec", "command": command, "env": {}}
    workdir = parsed.get("workdir") or parsed.get("working_directory")
    if isinstance(workdir, str) and workdir:
        action["working_directory"] = workdir
    if is_int(parsed.get("timeout_ms")):
        action["timeout_ms"] = parsed["timeout_ms"]
    return action
