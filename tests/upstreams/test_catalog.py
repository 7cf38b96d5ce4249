"""The model catalog (upstreams/catalog.py): what each entry says of a model, and what a profile changes.

Pure: unsaved Upstream and ModelProfile objects in, dicts out. That Codex itself accepts
the entries is checked by running it (tests/test_codex_catalog.py).
"""
from __future__ import annotations

from upstreams import catalog
from upstreams.catalog import INSTRUCTIONS, ServedModel
from upstreams.models import ModelProfile, Upstream

CHAT = Upstream(pk=1, name="local", base_url="http://127.0.0.1:8080/v1", models="qwen3 qwen3-*")
RESPONSES = Upstream(pk=2, name="vllm", base_url="http://10.0.0.2/v1", api="responses", models="gpt-oss",
                     send_reasoning_effort=True, accepts_images=True)


def entry(model: ServedModel, *profiles: ModelProfile) -> dict:
    return catalog.codex_entry(model, catalog.profile_for(model.name, list(profiles)), 1)


def test_an_entry_without_a_profile_offers_apply_patch_and_claims_nothing_the_upstream_was_not_shown_to_take() -> None:
    said = entry(ServedModel("qwen3", CHAT))
    assert said["apply_patch_tool_type"] == "freeform" and said["shell_type"] == "unified_exec"
    assert (said["supported_reasoning_levels"], said["support_verbosity"]) == ([], False)
    assert "default_reasoning_level" not in said and "default_verbosity" not in said
    assert said["input_modalities"] == ["text"]
    assert "context_window" not in said  # unknown: Codex then uses its own default
    assert said["base_instructions"] == INSTRUCTIONS and "apply_patch" in INSTRUCTIONS
    assert (said["slug"], said["display_name"], said["description"]) == ("qwen3", "qwen3", "qwen3, bridged to local.")
    assert (said["visibility"], said["supported_in_api"], said["priority"]) == ("list", True, 1)


def test_an_upstream_that_takes_reasoning_effort_and_images_gets_them_offered() -> None:
    said = entry(ServedModel("gpt-oss", RESPONSES, reported_window=131072))
    assert [level["effort"] for level in said["supported_reasoning_levels"]] == ["low", "medium", "high"]
    assert said["default_reasoning_level"] == "medium"
    assert said["input_modalities"] == ["text", "image"]
    assert said["context_window"] == said["max_context_window"] == 131072
    assert said["description"] == "gpt-oss, passed through to vllm."


def test_a_profile_overrides_what_it_sets_and_leaves_the_rest() -> None:
    profile = ModelProfile(pattern="gpt-oss", context_window=65536, reasoning_levels="none", images=False,
                           verbosity=True, display_name="GPT-OSS 120B", base_instructions="Be brief.",
                           extra={"auto_compact_token_limit": 50000, "shell_type": "shell_command"})
    said = entry(ServedModel("gpt-oss", RESPONSES, reported_window=131072), profile)
    assert said["context_window"] == 65536 and said["supported_reasoning_levels"] == []
    assert "default_reasoning_level" not in said
    assert said["input_modalities"] == ["text"] and said["support_verbosity"] is True
    assert said["default_verbosity"] == "medium"
    assert (said["display_name"], said["base_instructions"]) == ("GPT-OSS 120B", "Be brief.")
    assert (said["auto_compact_token_limit"], said["shell_type"]) == (50000, "shell_command")
    levels = entry(ServedModel("qwen3", CHAT), ModelProfile(pattern="qwen3", reasoning_levels="low high",
                                                             default_reasoning_level="high"))
    assert ([x["effort"] for x in levels["supported_reasoning_levels"]], levels["default_reasoning_level"]) == (
        ["low", "high"], "high")


def test_a_models_own_profile_beats_a_glob_and_a_longer_glob_a_shorter_one() -> None:
    profiles = [ModelProfile(pattern="qwen*"), ModelProfile(pattern="qwen3-*"), ModelProfile(pattern="qwen3-coder")]
    assert catalog.profile_for("qwen3-coder", profiles).pattern == "qwen3-coder"
    assert catalog.profile_for("qwen3-8b", profiles).pattern == "qwen3-*"
    assert catalog.profile_for("qwen2", profiles).pattern == "qwen*"
    assert catalog.profile_for("llama", profiles) is None


def test_served_lists_named_models_aliases_and_reported_ones_best_upstream_first() -> None:
    low = Upstream(pk=3, name="backup", base_url="http://b/v1", models="qwen3", priority=-1, model_map="fast=qwen3")
    models = catalog.served([low, CHAT], {1: {"qwen3-8b": 40960, "llama": 8192, "qwen3": 32768}})
    assert [(m.name, m.upstream.name, m.reported_window) for m in models] == [
        ("qwen3", "local", 32768), ("qwen3-8b", "local", 40960), ("fast", "backup", None)]


def test_the_catalog_numbers_its_entries_in_the_order_served() -> None:
    said = catalog.codex_catalog([ServedModel("a", CHAT), ServedModel("b", CHAT)], [])
    assert [(m["slug"], m["priority"]) for m in said["models"]] == [("a", 1), ("b", 2)]


def test_a_claude_model_on_an_anthropic_upstream_has_its_known_window_and_thinking_levels() -> None:
    claude = Upstream(name="claude", base_url="https://api.anthropic.com", api="anthropic", send_reasoning_effort=True,
                      model_map="sonnet=claude-sonnet-4-5")
    said = entry(ServedModel("sonnet", claude))
    assert (said["context_window"], said["max_context_window"]) == (200_000, 200_000)
    assert [level["effort"] for level in said["supported_reasoning_levels"]] == ["low", "medium", "high"]
    assert "context_window" not in entry(ServedModel("kimi-k2", Upstream(name="k", base_url="x", api="anthropic")))
