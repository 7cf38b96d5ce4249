"""Tests for bridge.sse: the SSE frames the gateway writes and the decoder of upstream streams."""
from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sse import SSEDecoder, encode_data, encode_event


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


# --- decoding ----------------------------------------------------------------------------------

STREAM = (b'data: {"a": 1}\n\n: keep-alive\n\ndata:{"b": "\xe4\xbd\xa0"}\r\n\r\n'
          b"event: x\nid: 7\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n")
EXPECTED = [b'{"a": 1}', b'{"b": "\xe4\xbd\xa0"}', b"line one\nline two", b"[DONE]"]


def decode(pieces: list[bytes]) -> list[bytes]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


@pytest.mark.parametrize("pieces", [
    pytest.param([STREAM], id="whole"),
    pytest.param([STREAM[i:i + 1] for i in range(len(STREAM))], id="one-byte-at-a-time"),
    pytest.param([STREAM.replace(b"\n", b"\r\n")], id="crlf"),
    pytest.param([STREAM.replace(b"\n", b"\r")], id="cr"),
    pytest.param([c for c in [STREAM.replace(b"\n", b"\r\n")[i:i + 3] for i in range(0, 400, 3)] if c],
                 id="crlf-split-everywhere"),
])
def test_decoder_finds_the_same_events_however_the_stream_is_split(pieces: list[bytes]) -> None:
    assert decode(pieces) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12),
       st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_decoder_finds_the_same_events_wherever_the_reads_split(cuts: list[int], newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    bounds = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
    assert decode([stream[a:b] for a, b in itertools.pairwise(bounds)]) == EXPECTED


def test_decoder_keeps_a_final_event_without_its_blank_line() -> None:
    assert decode([b"data: a\n\ndata: [DONE]"]) == [b"a", b"[DONE]"]


def test_decoder_ignores_comments_and_empty_events() -> None:
    assert decode([b": ping\n\n\n\nevent: only\n\n"]) == []
