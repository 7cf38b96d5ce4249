"""Replay a flight recording (logs/recording/) through today's code, and move recordings to and from fixtures.

The replay is one more consumer of the pipeline that serves live traffic (api/pipeline/relay.py):
the dialect builds the upstream request again from the client's, and the recorded reads are
fed, one by one as they came off the socket, through an ``httpx.Response`` to the same
translation or relay as a live answer. What differs from the
recording is shown as a unified diff, after evening out what changes on every run (the ids
the gateway makes up, clocks). A fixture is the same recording as a JSON file: readable text
where the bytes are UTF-8, base64 where not.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from api.http.errors import error_response
from api.pipeline import client
from api.pipeline.plan import Reply
from api.pipeline.relay import Relay, Translation, pipeline_for
from bridge.dialects import DIALECTS, Dialect, UpstreamOptions
from bridge.events import UsageReported
from bridge.sse import decode_values
from logs.audit.exchange import Ending
from logs.recording.fixtures import Recorded
from upstreams.probe.capabilities import responses_problems

# The ids the gateway makes up (bridge/stream.py) and its clocks: they differ from one run to the next.
_MADE_UP_ID = re.compile(rb"\b(resp|msg|rs|fc|call|ctc)_[0-9a-f]{32}\b")
_CLOCK = re.compile(rb'"(created_at|completed_at|created)":\s*[0-9.]+')


def dialect_named(name: str) -> Dialect:
    for dialect in DIALECTS.values():
        if dialect.name == name:
            return dialect
    raise ValueError(f"no dialect named {name!r} in this gateway")


@dataclass
class Replay:
    """What today's code makes of a recording, against what happened then."""

    sent: dict[str, Any]  # the upstream request today's dialect builds
    sent_diff: list[str]  # that request, against the one recorded
    client_diff: list[str]  # what the client would be sent today, against what it was sent
    replayed: bytes  # what the client would be sent today
    findings: list[str]

    @property
    def same(self) -> bool:
        return not self.sent_diff and not self.client_diff

    def lines(self) -> list[str]:
        out = [f"note: {finding}" for finding in self.findings]
        if self.same:
            return [*out, "no difference: today's gateway sends the upstream and the client what it sent then"]
        if self.sent_diff:
            out += ["The upstream request differs:", *self.sent_diff]
        if self.client_diff:
            out += ["What the client is sent differs:", *self.client_diff]
        return out


class _Progress:
    """Stands in for the request's Exchange (the pipeline's Progress): it counts, and writes no audit row."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.usage: UsageReported | None = None
        self.tool_calls = 0

    def mark_first_byte(self) -> None:
        pass


class _Reads(httpx.AsyncByteStream):
    """The recorded reads, handed out as the socket handed them out."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            yield read


async def replay(recorded: Recorded) -> Replay:
    """Run a recording through today's code: the upstream request built again, the answer translated or relayed."""
    dialect = dialect_named(recorded.dialect)
    sent = dialect.to_request(recorded.routed_request or recorded.client_request,
                              UpstreamOptions(**recorded.options))
    findings = [f"the recorded {name.replace('_', ' ')} was cut at GATEWAY_RECORDING_MAX_BYTES: the replay "
                "is not faithful past that point" for name in recorded.cut]
    sent_diff = []
    if recorded.upstream_request is not None:
        sent_diff = _diff(_pretty(recorded.upstream_request), _pretty(sent.body), "upstream request (recorded)",
                          "upstream request (today)")
    response = httpx.Response(recorded.upstream_status, headers=recorded.upstream_headers,
                              stream=_Reads(recorded.reads), request=httpx.Request("POST", "http://recorded/"))
    progress = _Progress(recorded.request_id)
    asked = recorded.client_request
    if recorded.upstream_status >= 400:
        replayed = error_response(await client.status_error(response)).content
    else:
        replayed = await _answered(Reply(None, dialect, sent, response), asked, progress)
        if dialect.wire == "responses" and client.is_event_stream(response):
            sent_events = [value for value in decode_values(b"".join(recorded.reads)) if isinstance(value, dict)]
            if problems := responses_problems(sent_events):
                findings.append(f"the upstream's own Responses stream has {'; '.join(problems)}: bridge it "
                                "(API: Chat Completions) and clients get a well-formed stream")
    client_diff = _diff(_normalized(recorded.client_body), _normalized(replayed), "client (recorded)",
                        "client (today)")
    return Replay(sent.body, sent_diff, client_diff, replayed, findings)


async def _answered(reply: Reply, asked: dict[str, Any], progress: _Progress) -> bytes:
    """What the client is sent today: the answer streamed, or whole (a failure as its error), as live."""
    ending = Ending()
    pipeline = pipeline_for(reply, asked, None, progress, ending)
    if isinstance(pipeline, Relay):
        await pipeline.first()
        return b"".join([part async for part in pipeline.chunks()])
    assert isinstance(pipeline, Translation)
    encoded = b"".join([part async for part in pipeline.chunks()])
    if asked.get("stream"):
        return encoded
    if pipeline.failed and ending.error is not None:  # answered as an error, as live
        return error_response(ending.error).content
    return orjson.dumps(pipeline.response)


def _normalized(body: bytes) -> list[str]:
    """A body as lines to compare: one per SSE event, or the JSON indented; made-up ids and clocks evened out."""
    names: dict[bytes, bytes] = {}

    def rename(match: re.Match[bytes]) -> bytes:
        return names.setdefault(match.group(0), match.group(1) + b"_" + str(len(names) + 1).encode())

    body = _CLOCK.sub(lambda m: b'"' + m.group(1) + b'":0', _MADE_UP_ID.sub(rename, body))
    if body.lstrip().startswith((b"{", b"[")):
        try:
            return _pretty(orjson.loads(body))
        except orjson.JSONDecodeError:
            pass
    values = decode_values(body)
    if not values:
        return body.decode("utf-8", "replace").splitlines()
    return [value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
            for value in values]


def _pretty(value: Any) -> list[str]:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()


def _diff(before: list[str], after: list[str], before_name: str, after_name: str) -> list[str]:
    return list(difflib.unified_diff(before, after, before_name, after_name, lineterm="", n=2))
