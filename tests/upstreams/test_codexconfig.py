"""``manage.py codexconfig``: a Codex provider and a profile per served model, with the window servers report."""
from __future__ import annotations

import io
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.servers import MockUpstream
from upstreams.models import Upstream
from upstreams.probe.discovery import ModelInfo, read_models, read_ollama_context, read_props_context


def test_context_windows_are_read_where_each_server_puts_them() -> None:
    assert read_models({"data": [{"id": "qwen", "max_model_len": 32768}]}) == [ModelInfo("qwen", 32768)]  # vLLM
    assert read_models({"data": [{"id": "g", "meta": {"n_ctx_train": 8192}}]}) == [ModelInfo("g", 8192)]  # llama.cpp
    assert read_models({"data": [{"id": "m", "context_length": 4096}]}) == [ModelInfo("m", 4096)]  # LM Studio
    assert read_models({"data": [{"id": "x"}, {"no": "id"}, "junk"]}) == [ModelInfo("x", None)]
    assert read_models({"error": "nope"}) == []
    assert read_props_context({"default_generation_settings": {"n_ctx": 4096}}) == 4096
    assert read_ollama_context({"model_info": {"qwen3.context_length": 40960, "qwen3.block_count": 36}}) == 40960
    assert read_ollama_context({"model_info": {}}) is None


@pytest.fixture
def demo() -> Iterator[MockUpstream]:
    server = MockUpstream("demo")
    yield server
    server.stop()


def config(*args: str) -> str:
    out = io.StringIO()
    call_command("codexconfig", *args, stdout=out)
    return out.getvalue()


def profiles(home: Path) -> dict[str, dict[str, object]]:
    return {path.name.removesuffix(".config.toml"): tomllib.loads(path.read_text())
            for path in home.glob("*.config.toml")}


def test_it_writes_a_profile_per_model_a_glob_upstream_reports_with_its_window(
        demo: MockUpstream, transactional_db: None, tmp_path: Path) -> None:
    Upstream.objects.create(name="demo", base_url=demo.base_url, models="demo-*")
    Upstream.objects.create(name="named", base_url=demo.base_url, models="qwen3:8b", model_map="alias=demo-text",
                            priority=-1)
    Upstream.objects.create(name="off", base_url=demo.base_url, models="hidden", enabled=False)
    said = config("--write", "--codex-home", str(tmp_path), "--base-url", "http://gw.example:9000/v1")
    assert tomllib.loads((tmp_path / "config.toml").read_text())["model_providers"]["codex-gateway"] == {
        "name": "codex-gateway", "base_url": "http://gw.example:9000/v1", "env_key": "CODEX_GATEWAY_KEY",
        "wire_api": "responses", "supports_websockets": True,
        "model_catalog_url": "http://gw.example:9000/v1/codex/models"}
    written = profiles(tmp_path)
    assert set(written) == {"demo-text", "demo-tools", "demo-tools5", "demo-errors", "qwen3-8b", "alias"}
    assert written["demo-tools"] == {"model": "demo-tools", "model_provider": "codex-gateway",
                                     "model_context_window": 32768, "model_auto_compact_token_limit": 26214}
    assert written["alias"]["model_context_window"] == 32768  # the window of the model it maps to
    assert written["qwen3-8b"] == {"model": "qwen3:8b", "model_provider": "codex-gateway"}  # none reported
    assert "6 profile(s), 5 with a context window" in said


def test_write_merges_into_an_existing_config_and_backs_it_up(
        demo: MockUpstream, transactional_db: None, tmp_path: Path) -> None:
    Upstream.objects.create(name="demo", base_url=demo.base_url, models="demo-*")
    existing = '# mine\nmodel = "gpt-5"\n\n[features]\nplugins = false\n'
    (tmp_path / "config.toml").write_text(existing)
    (tmp_path / "demo-text.config.toml").write_text('model = "old"\n')
    said = config("--write", "--codex-home", str(tmp_path))
    written = (tmp_path / "config.toml").read_text()
    backups = {path.name.split(".bak-")[0]: path.read_text() for path in tmp_path.glob("*.bak-*")}
    assert backups == {"config.toml": existing, "demo-text.config.toml": 'model = "old"\n'}
    assert written.startswith("# mine\n") and "backed up" in said  # comments kept
    parsed = tomllib.loads(written)
    assert parsed["model"] == "gpt-5" and parsed["features"] == {"plugins": False}  # the user's own settings stay
    assert "codex-gateway" in parsed["model_providers"]


def test_printing_shows_every_file_it_would_write(demo: MockUpstream, transactional_db: None, tmp_path: Path) -> None:
    Upstream.objects.create(name="demo", base_url=demo.base_url, models="demo-*")
    printed = config("--codex-home", str(tmp_path))
    assert f"# {tmp_path / 'config.toml'}" in printed and f"# {tmp_path / 'demo-tools.config.toml'}" in printed
    assert 'model_context_window = 32768' in printed and not list(tmp_path.iterdir())  # nothing written
