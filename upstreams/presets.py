"""Starting points for the servers in the README's recipes: the base URL and the switches that fit each.

Chosen on a new upstream's form (admin), they fill in the base URL when it is left empty
and set the mode and compatibility switches; every value can be changed afterwards, and
*Test connection* (upstreams/probe/capabilities.py) says whether they fit the server as it runs.
"""
from __future__ import annotations

from typing import Any

# The fields each preset sets; the others keep the form's values.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama.cpp": ("llama.cpp (llama-server)", {"base_url": "http://127.0.0.1:8080/v1", "api": "chat",
                                               "accepts_developer_role": False, "max_tokens_field": "max_tokens",
                                               "send_stream_options": True}),
    "vllm": ("vLLM (on port 8001: 8000 is the gateway's)", {
        "base_url": "http://127.0.0.1:8001/v1", "api": "chat", "max_tokens_field": "max_tokens",
        "send_stream_options": True}),
    "ollama": ("Ollama", {"base_url": "http://127.0.0.1:11434/v1", "api": "chat",
                          "accepts_developer_role": False, "max_tokens_field": "max_tokens",
                          "send_stream_options": True}),
    "sglang": ("SGLang", {"base_url": "http://127.0.0.1:30000/v1", "api": "chat",
                          "max_tokens_field": "max_tokens", "send_stream_options": True}),
    "lmstudio": ("LM Studio", {"base_url": "http://127.0.0.1:1234/v1", "api": "chat",
                               "max_tokens_field": "max_tokens", "send_stream_options": True}),
    "deepseek": ("DeepSeek (hosted)", {"base_url": "https://api.deepseek.com/v1", "api": "chat",
                                       "models": "deepseek-chat deepseek-reasoner", "max_tokens_field": "max_tokens",
                                       "send_stream_options": True}),
    "openai": ("OpenAI (hosted; Responses passed through)", {
        "base_url": "https://api.openai.com/v1", "api": "responses", "accepts_developer_role": True,
        "max_tokens_field": "max_completion_tokens", "send_reasoning_effort": True, "send_prompt_cache_key": True}),
    # Anthropic Messages: Claude, and the Anthropic-compatible endpoints of other providers (their
    # documented base URLs; /v1/messages is added).
    "anthropic": ("Anthropic (Claude, Messages API)", {
        "base_url": "https://api.anthropic.com", "api": "anthropic", "models": "claude-*",
        "send_reasoning_effort": True, "prompt_caching": True}),
    "deepseek-anthropic": ("DeepSeek (Anthropic-compatible)", {
        "base_url": "https://api.deepseek.com/anthropic", "api": "anthropic",
        "models": "deepseek-chat deepseek-reasoner", "send_reasoning_effort": False}),
    "moonshot-anthropic": ("Moonshot Kimi (Anthropic-compatible)", {
        "base_url": "https://api.moonshot.ai/anthropic", "api": "anthropic", "models": "kimi-*",
        "send_reasoning_effort": False}),
    "minimax-anthropic": ("MiniMax (Anthropic-compatible)", {
        "base_url": "https://api.minimax.io/anthropic", "api": "anthropic", "models": "MiniMax-*",
        "send_reasoning_effort": True}),
    "zhipu-anthropic": ("Zhipu GLM / Z.ai (Anthropic-compatible)", {
        "base_url": "https://api.z.ai/api/anthropic", "api": "anthropic", "models": "glm-*",
        "send_reasoning_effort": False}),
}


def choices() -> list[tuple[str, str]]:
    return [("", "— none: fill in the fields below —"), *((key, label) for key, (label, _) in PRESETS.items())]


def apply(preset: str, cleaned: dict[str, Any]) -> dict[str, Any]:
    """Return the form's cleaned values with ``preset``'s set (its base URL only where none was given)."""
    _, values = PRESETS[preset]
    applied = dict(cleaned)
    for name, value in values.items():
        if name in ("base_url", "models") and str(cleaned.get(name) or "").strip():
            continue
        applied[name] = value
    return applied
