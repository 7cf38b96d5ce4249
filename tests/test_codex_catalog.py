"""Codex's model catalog as Codex reads it: served by a real gateway, fetched by each pinned Codex CLI.

``codex debug models`` prints the catalog Codex ends up with: with the gateway as its
``model_catalog_url`` it must list exactly the models this key may use, with what the
gateway says of them (Codex drops the whole catalog if one entry is wrong).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.codex import SETTINGS, VERSIONS, binary
from tests.servers import Gateway, MockUpstream
from upstreams.models import ModelProfile, Upstream

pytestmark = pytest.mark.codex


@pytest.fixture
def upstreams(scripted: MockUpstream) -> None:
    Upstream.objects.create(name="local", base_url=scripted.base_url, models="qwen3-coder qwen3-8b",
                            model_map="fast=qwen3-8b", send_reasoning_effort=True)
    Upstream.objects.create(name="vllm", base_url=scripted.url, models="gpt-oss", api="responses",
                            accepts_images=True, priority=-1)
    Upstream.objects.create(name="off", base_url=scripted.base_url, models="hidden", enabled=False)
    ModelProfile.objects.create(pattern="qwen3-*", context_window=40960, verbosity=True)
    ModelProfile.objects.create(pattern="gpt-oss", display_name="GPT-OSS", reasoning_levels="none",
                                extra={"auto_compact_token_limit": 30000})


def get(gateway: Gateway, key: str, path: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}{path}", headers={"authorization": f"Bearer {key}"})


def test_the_catalog_is_served_in_codex_shape_only_when_codex_asks(gateway: Gateway, upstreams: None,
                                                                    active_key: str) -> None:
    catalog = get(gateway, active_key, "/v1/codex/models").json()
    assert get(gateway, active_key, "/v1/models?client_version=0.171.0").json() == catalog
    assert list(catalog) == ["models"]
    assert [m["slug"] for m in catalog["models"]] == ["qwen3-coder", "qwen3-8b", "fast", "gpt-oss"]
    listed = get(gateway, active_key, "/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == [
        "qwen3-coder", "qwen3-8b", "fast", "gpt-oss"]
    assert {m["id"]: m.get("context_window") for m in listed["data"]} == {
        "qwen3-coder": 40960, "qwen3-8b": 40960, "fast": None, "gpt-oss": None}
    assert get(gateway, "sk-cgw-wrong", "/v1/codex/models").status_code == 401


@pytest.mark.parametrize("version", VERSIONS)
def test_each_codex_version_takes_the_gateways_catalog_from_its_url(tmp_path: Path, gateway: Gateway,
                                                                    upstreams: None, active_key: str,
                                                                    version: str) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(SETTINGS + f"""
[model_providers.gateway]
name = "gateway"
base_url = "{gateway.url}/v1"
env_key = "GATEWAY_KEY"
wire_api = "responses"
model_catalog_url = "{gateway.url}/v1/codex/models"
""")
    result = subprocess.run([str(binary(version)), "debug", "models", "-c", 'model_provider="gateway"'],
                            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODEX_HOME": str(home),
                                 "GATEWAY_KEY": active_key},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {m["slug"]: m for m in json.loads(result.stdout)["models"]}
    assert list(seen) == ["qwen3-coder", "qwen3-8b", "fast", "gpt-oss"]
    coder, oss = seen["qwen3-coder"], seen["gpt-oss"]
    assert (coder["context_window"], coder["apply_patch_tool_type"], coder["support_verbosity"]) == (
        40960, "freeform", True)
    assert [level["effort"] for level in coder["supported_reasoning_levels"]] == ["low", "medium", "high"]
    assert (oss["display_name"], oss["supported_reasoning_levels"], oss["input_modalities"]) == (
        "GPT-OSS", [], ["text", "image"])
    assert oss["auto_compact_token_limit"] == 30000
