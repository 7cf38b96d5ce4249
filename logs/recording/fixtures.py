"""A flight recording as data: read from its row (``Recording``), written to and read from a JSON test fixture.

The recorder that makes them is logs/recording/recorder.py, the replay that runs them api/replay.py;
this is the format between, readable in a bug report: text where the bytes are UTF-8,
base64 where not, each network read of the upstream's answer apart.
"""
from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from logs.models import Recording

FIXTURE_VERSION = 1
# Where exportfixture writes; tests/api/test_recorded_fixtures.py replays every file there.
FIXTURES = Path(settings.BASE_DIR) / "tests" / "fixtures" / "recordings"


def split_reads(data: bytes, lengths: list[int]) -> list[bytes]:
    """The network reads ``data`` came in, from their lengths (how a recording keeps them)."""
    reads, at = [], 0
    for length in lengths:
        reads.append(data[at:at + length])
        at += length
    return reads


class NoRecording(LookupError):
    pass


def recorded_by_id(request_id: str) -> Recorded:
    """Return the latest recording of ``request_id``; NoRecording says how to make one when there is none."""
    row = Recording.objects.filter(request_id=request_id).first()
    if row is None:
        raise NoRecording(f"No recording of request {request_id}. Set 'record the next exchanges' on its upstream "
                          "in the admin (the flight recorder), then send the request again.")
    return Recorded.from_row(row)


@dataclass
class Recorded:
    """A recording as a replay needs it, read from the database or from a fixture file."""

    request_id: str
    endpoint: str
    dialect: str
    options: dict[str, Any]
    client_request: dict[str, Any]
    routed_request: dict[str, Any] | None  # None: the client's, unchanged
    upstream_request: dict[str, Any] | None
    upstream_status: int
    upstream_headers: dict[str, str]
    reads: list[bytes]
    client_body: bytes
    cut: list[str]

    @classmethod
    def from_row(cls, row: Recording) -> Recorded:
        reads = split_reads(bytes(row.upstream_body), row.upstream_reads)
        return cls(row.request_id, row.endpoint, row.dialect, row.options, _object(row.client_request),
                   _object(row.routed_request) if row.routed_request else None,
                   _object(row.upstream_request) if row.upstream_request else None, row.upstream_status or 200,
                   dict(row.upstream_headers), reads, bytes(row.client_body), list(row.cut))

    def fixture(self) -> dict[str, Any]:
        """The recording as a JSON test fixture."""
        return {"version": FIXTURE_VERSION, "request_id": self.request_id, "endpoint": self.endpoint,
                "dialect": self.dialect, "options": self.options, "client_request": self.client_request,
                "routed_request": self.routed_request, "upstream_request": self.upstream_request,
                "upstream": {"status": self.upstream_status, "headers": self.upstream_headers,
                             "reads": [_text_or_base64(read) for read in self.reads]},
                "client_body": _text_or_base64(self.client_body), "cut": self.cut}

    def accepting(self, sent: dict[str, Any], client_body: bytes) -> Recorded:
        """This recording with what today's gateway sends in place of what was recorded (``replay --accept``)."""
        return dataclasses.replace(self, upstream_request=sent, client_body=client_body)

    def fixture_bytes(self) -> bytes:
        return orjson.dumps(self.fixture(), option=orjson.OPT_INDENT_2) + b"\n"

    @property
    def file_name(self) -> str:
        """The fixture's file name: the request id, with what a file name cannot hold replaced."""
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.request_id)[:100] + ".json"

    @classmethod
    def from_fixture(cls, data: dict[str, Any]) -> Recorded:
        if data.get("version") != FIXTURE_VERSION:
            raise ValueError(f"fixture version {data.get('version')!r}: this gateway reads version {FIXTURE_VERSION}")
        upstream = data["upstream"]
        return cls(data["request_id"], data["endpoint"], data["dialect"], data["options"], data["client_request"],
                   data.get("routed_request"), data.get("upstream_request"), upstream["status"],
                   upstream["headers"], [_bytes_of(read) for read in upstream["reads"]],
                   _bytes_of(data["client_body"]), list(data.get("cut", [])))




def _object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

def _text_or_base64(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}

def _bytes_of(value: str | dict[str, str]) -> bytes:
    return base64.b64decode(value["base64"]) if isinstance(value, dict) else value.encode()
