"""What a live upstream can do, asked the way the gateway would ask it, and which settings fit it.

"Test connection" in the admin and ``manage.py probe NAME`` run these checks, in this
order, each a small real request (at most 16 tokens):

1. ``GET /models``: the names, and the context window where the server reports one;
2. a Chat stream with ``stream_options`` (refused: asked again without);
3. a ``developer`` message;
4. a tool call (``tool_choice: required``);
5. ``reasoning_effort``: a made-up level, then ``low``. Only a server that refuses the first
   and takes the second reads the field; one that takes both ignores it, and sending it
   would make the Response claim an effort that was never applied;
6. ``POST /responses``, streamed: are its events what the OpenAI SDK's accumulator needs
   (a ``sequence_number`` on each, rising; ``output_index``/``content_index`` where they
   belong; a terminal event)?
7. where it is served: which of Codex's tool and item types it takes (a custom tool, a
   namespace, hosted web_search, a reasoning item with encrypted content in the history);
   one it refuses is rewritten for it (bridge/dialects/repaired.py), as the finding says;
8. an image in a Chat message: taken, Codex's catalog offers image input for its models.

An Anthropic Messages upstream gets its own checks instead of 2-8 (upstreams/probe/messages.py).

Each check says what it saw and, where a setting follows from it, what to set; ``applied``
sets those on the upstream (``manage.py probe NAME --apply``, the admin's second action).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from bridge.dialects import protocol_headers
from bridge.sse import decode_values
from plumbing.redact import redact_text
from upstreams.models import Upstream
from upstreams.probe.discovery import discover
from upstreams.probe.messages import MessagesAsker, messages_findings
from upstreams.probe.reach import failure_text

MAX_TOKENS = 16
TIMEOUT = 30.0
ITEM_EVENTS = ("response.output_item.added", "response.output_item.done", "response.content_part.added",
               "response.content_part.done", "response.output_text.delta", "response.output_text.done",
               "response.function_call_arguments.delta", "response.function_call_arguments.done")
CONTENT_EVENTS = ("response.content_part.added", "response.content_part.done", "response.output_text.delta",
                  "response.output_text.done")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
TOOL = {"type": "function", "function": {"name": "get_time", "description": "The current time in a time zone.",
                                         "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                                                        "required": ["zone"]}}}


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    advice: str = ""  # the setting that follows, if any
    settings: dict[str, Any] = field(default_factory=dict)  # the same, as the upstream's fields to set

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}" + (f" → {self.advice}" if self.advice else "")


@dataclass
class Report:
    upstream: str
    model: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"Upstream {self.upstream}" + (f", model {self.model}" if self.model else "")
        return [head, *(f"  {'ok ' if f.ok else 'no '} {f}" for f in self.findings)]

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting the findings recommend, as the upstream's fields."""
        return {name: value for finding in self.findings for name, value in finding.settings.items()}


def applied(upstream: Upstream, report: Report) -> dict[str, Any]:
    """Set what ``report`` recommends on ``upstream`` and save it; return what changed (field: new value)."""
    changed = {name: value for name, value in report.settings.items() if getattr(upstream, name) != value}
    for name, value in changed.items():
        setattr(upstream, name, value)
    if changed:
        upstream.save(update_fields=[*changed, "updated"])
    return changed


def responses_problems(events: list[dict[str, Any]]) -> list[str]:
    """What in a Responses stream breaks a strict client (the openai SDK's accumulator): [] when nothing."""
    problems = []
    numbers = [e.get("sequence_number") for e in events]
    counted = [n for n in numbers if isinstance(n, int)]
    if len(counted) < len(numbers):
        problems.append("events without a sequence_number")
    elif counted != sorted(set(counted)):
        problems.append("sequence numbers that do not rise")
    if any(e.get("type") in ITEM_EVENTS and not isinstance(e.get("output_index"), int) for e in events):
        problems.append("item events without an output_index")
    if any(e.get("type") in CONTENT_EVENTS and not isinstance(e.get("content_index"), int) for e in events):
        problems.append("content events without a content_index")
    if not events or events[-1].get("type") not in TERMINAL:
        problems.append("no terminal event (response.completed, .incomplete or .failed) at the end")
    return problems


class _Asker:
    def __init__(self, upstream: Upstream, model: str) -> None:
        self.upstream, self.model = upstream, model
        self.client = httpx.Client(timeout=TIMEOUT, trust_env=False,
                                   headers=protocol_headers(upstream.protocol, upstream.api_key))

    def chat(self, **fields: Any) -> httpx.Response:
        body = {"model": self.model, "messages": [{"role": "user", "content": "Say hi."}],
                self.upstream.max_tokens_field: MAX_TOKENS, **fields}
        return self.client.post(self.upstream.url("chat/completions"), json=body)

    def why(self, response: httpx.Response) -> str:
        return failure_text(response, None, self.upstream.api_key)


def probe_capabilities(upstream: Upstream) -> Report:
    """Run the checks against ``upstream``'s server; never raise (a check that cannot run says why)."""
    report = Report(upstream.name)
    listed = discover(upstream)
    if listed:
        windows = ", ".join(f"{m.id} ({m.context_window} tokens)" if m.context_window else m.id for m in listed[:8])
        report.findings.append(Finding("models", True, f"{len(listed)} listed: {windows}"))
    else:
        report.findings.append(Finding("models", False, "GET /models listed none",
                                       "name the models in the upstream's settings"))
    named = [*upstream.named_models, *upstream.aliases.values()]
    report.model = named[0] if named else (listed[0].id if listed else None)
    if report.model is None:
        report.findings.append(Finding("chat", False, "no model to ask: none named, none listed"))
        return report
    if upstream.api == "anthropic":
        messages = MessagesAsker(upstream, report.model, TIMEOUT)
        with _connection(report, upstream, messages.client):
            report.findings += [Finding(*found) for found in messages_findings(messages)]
        return report
    asker = _Asker(upstream, report.model)
    with _connection(report, upstream, asker.client):
        _chat_checks(asker, report)
        if _responses_check(asker, report):
            _tool_checks(asker, report)
        _image_check(asker, report)
    return report


@contextmanager
def _connection(report: Report, upstream: Upstream, client: httpx.Client) -> Iterator[None]:
    """Run checks on ``client``, closed after; a connection that fails is a finding, its key redacted."""
    try:
        yield
    except httpx.HTTPError as exc:
        report.findings.append(Finding("connection", False, redact_text(f"{type(exc).__name__}: {exc}",
                                                                       [upstream.api_key])))
    finally:
        client.close()


def _chat_checks(asker: _Asker, report: Report) -> None:
    if _stream_checks(asker, report):
        _developer_check(asker, report)
        if _tools_check(asker, report):
            _effort_check(asker, report)


def _stream_checks(asker: _Asker, report: Report) -> bool:
    """A Chat stream with ``stream_options`` (and without, if refused), and whether it streams reasoning.

    False when the server does not stream at all: nothing else is worth asking.
    """
    add = report.findings.append
    streamed = _stream(asker, report)
    if streamed is None:
        return False
    chunks = [c for c in decode_values(streamed.content) if isinstance(c, dict)]
    deltas = [choice.get("delta") or {} for c in chunks for choice in c.get("choices") or []
              if isinstance(choice, dict)]
    add(Finding("chat stream", bool(chunks), f"{len(chunks)} chunk(s)" + (", usage reported" if any(
        c.get("usage") for c in chunks) else ", no usage")))
    if any(d.get("reasoning_content") or d.get("reasoning") for d in deltas if isinstance(d, dict)):
        add(Finding("reasoning", True, "streams reasoning (reasoning_content / reasoning): shown as reasoning items"))
    return True


def _stream(asker: _Asker, report: Report) -> httpx.Response | None:
    """Return a Chat stream: asked with ``stream_options``, or without when the server refuses them (None: neither)."""
    add = report.findings.append
    streamed = asker.chat(stream=True, stream_options={"include_usage": True})
    if streamed.status_code < 400:
        add(Finding("stream_options", True, "accepted"))
        return streamed
    retried = asker.chat(stream=True)
    if retried.status_code >= 400:
        add(Finding("chat stream", False, asker.why(retried)))
        return None
    add(Finding("stream_options", False, f"refused ({asker.why(streamed)})", "turn off “send stream_options”",
                {"send_stream_options": False}))
    return retried


def _developer_check(asker: _Asker, report: Report) -> None:
    developer = asker.chat(messages=[{"role": "developer", "content": "Answer in one word."},
                                     {"role": "user", "content": "Say hi."}])
    if developer.status_code < 400:
        report.findings.append(Finding("developer role", True, "accepted", "“accept developer role” may be on"))
    else:
        report.findings.append(Finding("developer role", False, f"refused ({asker.why(developer)})",
                                       "keep “accept developer role” off (the bridge sends it as system)",
                                       {"accepts_developer_role": False}))


def _tools_check(asker: _Asker, report: Report) -> bool:
    """A required tool call; False when the server refuses tools (nothing after is worth asking)."""
    add = report.findings.append
    tools = asker.chat(tools=[TOOL], tool_choice="required",
                       messages=[{"role": "user", "content": "What time is it in Paris? Use the tool."}])
    if tools.status_code >= 400:
        add(Finding("tool calls", False, f"refused ({asker.why(tools)})", "Codex needs tool calls"))
        return False
    try:
        message = (tools.json().get("choices") or [{}])[0].get("message") or {}
    except (ValueError, AttributeError, IndexError):
        message = {}
    if message.get("tool_calls"):
        add(Finding("tool calls", True, "called the tool"))
    else:
        add(Finding("tool calls", False, "answered without calling the tool",
                    "check the server's tool-call support (llama.cpp: --jinja; vLLM: --enable-auto-tool-choice)"))
    return True


def _effort_check(asker: _Asker, report: Report) -> None:
    made_up = asker.chat(reasoning_effort="not-a-level")
    low = asker.chat(reasoning_effort="low")
    if low.status_code >= 400:
        report.findings.append(Finding("reasoning_effort", False, f"refused ({asker.why(low)})",
                                       "keep “send reasoning effort” off", {"send_reasoning_effort": False}))
    elif made_up.status_code >= 400:
        report.findings.append(Finding("reasoning_effort", True, "read: a made-up level is refused, low is taken",
                                       "turn on “send reasoning effort”", {"send_reasoning_effort": True}))
    else:
        report.findings.append(Finding(
            "reasoning_effort", False, "ignored: a made-up level is taken as well as low",
            "keep “send reasoning effort” off (the Response would claim an effort the server never applied)",
            {"send_reasoning_effort": False}))


def _responses_check(asker: _Asker, report: Report) -> bool:
    upstream = asker.upstream
    answer = asker.client.post(upstream.url("responses"), json={
        "model": asker.model, "input": "Say hi.", "stream": True, "max_output_tokens": MAX_TOKENS})
    bridge = {"api": "chat"}
    if answer.status_code >= 400:
        advice = "set its API to Chat Completions (bridge)" if upstream.api == "responses" else ""
        report.findings.append(Finding("/v1/responses", False, f"not served ({asker.why(answer)})", advice, bridge))
        return False
    events = [e for e in decode_values(answer.content) if isinstance(e, dict)]
    problems = responses_problems(events)
    if problems:
        report.findings.append(Finding(
            "/v1/responses", False, f"served, but its stream has {'; '.join(problems)}",
            "keep bridging (API: Chat Completions): this server's /v1/responses breaks the OpenAI SDK's "
            "accumulator", bridge))
        return False
    report.findings.append(Finding("/v1/responses", True, f"a well-formed stream ({len(events)} events)",
                               "passthrough works (API: Responses); bridging works too"))
    return True


FUNCTION = {"type": "function", "name": "get_time", "description": "The current time in a time zone.",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
# What each of Codex's tool and item types looks like in a request, and the switch it decides.
TOOL_CHECKS: list[tuple[str, str, dict[str, Any]]] = [
    ("custom tools", "accepts_custom_tools", {"tools": [
        {"type": "custom", "name": "apply_patch", "description": "Patch files."}]}),
    ("namespace tools", "accepts_namespace_tools", {"tools": [
        {"type": "namespace", "name": "clock", "description": "Time tools.", "tools": [FUNCTION]}]}),
    ("hosted tools", "accepts_hosted_tools", {"tools": [{"type": "web_search"}]}),
    ("encrypted reasoning", "accepts_encrypted_reasoning", {"input": [
        {"type": "reasoning", "id": "rs_probe", "summary": [], "encrypted_content": "gAAAAABprobe"},
        {"type": "message", "role": "user", "content": "Say hi."}]}),
]


def _tool_checks(asker: _Asker, report: Report) -> None:
    """Which of Codex's tool and item types the server takes; what it refuses is repaired in passthrough."""
    for check, setting, fields in TOOL_CHECKS:
        answer = asker.client.post(asker.upstream.url("responses"), json={
            "model": asker.model, "input": "Say hi.", "max_output_tokens": MAX_TOKENS, **fields})
        if answer.status_code >= 400:
            report.findings.append(Finding(check, False, f"refused ({asker.why(answer)})",
                                           f"turn “{_label(setting)}” off: the gateway rewrites them",
                                           {setting: False}))
        else:
            report.findings.append(Finding(check, True, "taken", "", {setting: True}))


# A 1x1 transparent PNG: the smallest image a server must decode to answer.
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ"
         "RU5ErkJggg==")


def _image_check(asker: _Asker, report: Report) -> None:
    """Whether the server's model takes an image: Codex's catalog offers image input only then."""
    answer = asker.chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What colour is this pixel?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]}])
    if answer.status_code >= 400:
        report.findings.append(Finding("images", False, f"refused ({asker.why(answer)})",
                                       "keep “accepts images” off", {"accepts_images": False}))
    else:
        report.findings.append(Finding("images", True, "an image was taken", "turn “accepts images” on",
                                       {"accepts_images": True}))


def _label(setting: str) -> str:
    return setting.replace("_", " ")
