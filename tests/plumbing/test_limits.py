"""The body limit stops reading at GATEWAY_MAX_BODY_BYTES, declared or chunked."""
from __future__ import annotations

from collections.abc import Iterator

import httpx

from tests.conftest import wait_for_log


def chunks(total: int, size: int = 256) -> Iterator[bytes]:
    yield b'{"model": "m", "input": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


def test_a_chunked_body_over_the_limit_gets_413(start_gateway, active_key: str) -> None:
    server = start_gateway(GATEWAY_MAX_BODY_BYTES="2k")
    response = httpx.post(f"{server.url}/v1/responses", content=chunks(64 * 1024),
                          headers={"authorization": f"Bearer {active_key}", "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert wait_for_log(response.headers["x-request-id"]).outcome == "rejected"


def test_a_chunked_body_under_the_limit_is_read_whole(start_gateway, active_key: str) -> None:
    server = start_gateway(GATEWAY_MAX_BODY_BYTES="8k")
    response = httpx.post(f"{server.url}/v1/responses", content=chunks(2048),
                          headers={"authorization": f"Bearer {active_key}", "content-type": "application/json"})
    assert response.status_code == 404  # parsed, then no upstream serves "m"
