"""Tests for bridge.sse: the SSE frames the gateway writes."""
from __future__ import annotations

import json

import pytest

from bridge.sse import DONE, encode_data, encode_event


def test_sse_encode_event_writes_event_and_compact_data_lines() -> None:
    """A Responses event becomes `event: <type>` plus one compact `data:` line and a blank line."""
    event = {"type": "response.output_text.delta", "sequence_number": 3, "delta": "Hi"}
    assert encode_event(event) == (
        b'event: response.output_text.delta\n'
        b'data: {"type":"response.output_text.delta","sequence_number":3,"delta":"Hi"}\n\n'
    )


def test_sse_keeps_non_ascii_as_utf8() -> None:
    """Non-ASCII text is sent as UTF-8, not as \\u escapes."""
    frame = encode_event({"type": "response.output_text.delta", "delta": "你好世界！"})
    assert "你好世界！".encode() in frame
    assert b"\\u" not in frame


@pytest.mark.parametrize("text", ["line 1\nline 2", "a\r\nb", "\n\ndata: fake\n\n", "tab\tand \"quotes\""])
def test_sse_newlines_in_text_never_break_the_frame(text: str) -> None:
    """Newlines inside values are JSON-escaped, so each event stays one data line."""
    frame = encode_event({"type": "response.output_text.delta", "delta": text})
    event_line, data_line, blank, end = frame.split(b"\n")
    assert (event_line, blank, end) == (b"event: response.output_text.delta", b"", b"")
    assert json.loads(data_line.removeprefix(b"data: "))["delta"] == text


def test_sse_encode_data_writes_a_data_only_frame() -> None:
    """Chat chunks are framed with `data:` alone."""
    assert encode_data({"error": {"message": "é"}}) == 'data: {"error":{"message":"é"}}\n\n'.encode()


def test_sse_done_marker() -> None:
    """The Chat stream terminator is the literal [DONE]."""
    assert DONE == b"data: [DONE]\n\n"
