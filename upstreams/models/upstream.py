"""The upstream servers staff configure, and what the Codex catalog says of their models beyond what they tell.

``rank`` orders the upstreams serving a model (the API reads them from the routing copy,
upstreams/routing.py, not per request).
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.timezone import now

from bridge.dialects import Protocol, UpstreamOptions
from upstreams.fields import EncryptedTextField

PATTERN_SPLIT = re.compile(r"[\s,]+")


class MaxTokensField(models.TextChoices):
    MAX_TOKENS = "max_tokens", "max_tokens (llama.cpp, vLLM, Ollama, DeepSeek)"
    MAX_COMPLETION_TOKENS = "max_completion_tokens", "max_completion_tokens (OpenAI)"


class UpstreamApi(models.TextChoices):
    """The API an upstream's server speaks: the dialect table's protocol (bridge/dialects/__init__.py)."""

    CHAT = "chat", "Chat Completions"
    RESPONSES = "responses", "Responses"
    ANTHROPIC = "anthropic", "Anthropic Messages"


GLOB_CHARS = "*?["


def rank(upstreams: Iterable[Upstream], model: str) -> list[Upstream]:
    """Return the upstreams (of those given) serving ``model``, best first.

    Upstreams that name the model (or a glob matching it) come before catch-alls
    (empty ``models``), so adding a catch-all never steals a model from its specific
    upstream; within each group higher ``priority`` wins, then name.
    """
    matching = [u for u in upstreams if u.serves(model)]
    return sorted(matching, key=lambda u: (u.is_catch_all, -u.priority, u.name))


class Upstream(models.Model):
    name = models.CharField(max_length=100, unique=True)
    base_url = models.CharField(
        max_length=500,
        help_text="e.g. http://127.0.0.1:8080/v1 or https://api.deepseek.com; no path means /v1.",
    )
    api = models.CharField(
        "API", max_length=16, choices=UpstreamApi.choices, default=UpstreamApi.CHAT,
        help_text="What the server speaks. Chat Completions and Anthropic Messages: /v1/responses is bridged to it; "
                  "Responses: passed through.",
    )
    keeps_state = models.BooleanField(
        default=False,
        help_text="A Responses upstream that keeps state itself (OpenAI, Azure): store, previous_response_id, "
        "conversation and background pass through to it untouched. Off: the gateway stores and expands, and "
        "sends the upstream a stateless request (what makes failover between upstreams safe).",
    )
    # Encrypted at rest (GATEWAY_ENCRYPTION_KEY); plain text in Python.
    api_key = EncryptedTextField(blank=True, help_text="Sent upstream as Authorization: Bearer; stored encrypted.")
    model_map = models.TextField(
        blank=True,
        help_text="Optional renames, one 'alias=upstream-model' per line: clients ask for the alias.",
    )
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=0, help_text="Higher wins among upstreams serving the same model.")
    weight = models.PositiveIntegerField(
        default=1, help_text="Upstreams serving a model at the same priority are a pool: each takes new sessions in "
                             "proportion to its weight (0: none), and a session stays on its member.")
    connect_timeout = models.FloatField(default=10.0, help_text="Seconds to open a connection.")
    first_byte_timeout = models.FloatField(
        default=900.0, validators=[MinValueValidator(0.1)],
        help_text="Seconds to wait for the answer to start: a long prompt's prefill on a local server can take "
                  "minutes.",
    )
    read_timeout = models.FloatField(
        default=300.0, validators=[MinValueValidator(0.0)],
        help_text="Seconds to wait between two chunks once the answer has started (0: no limit).",
    )
    # Chat Completions compatibility, used when bridging /v1/responses.
    accepts_developer_role = models.BooleanField(
        default=False, help_text="Send 'developer' messages as such instead of merging them into the system message."
    )
    replay_reasoning = models.BooleanField(
        default=False,
        help_text="Replay earlier reasoning as reasoning_content (DeepSeek needs it; Mistral rejects it).",
    )
    max_tokens_field = models.CharField(
        max_length=32, choices=MaxTokensField.choices, default=MaxTokensField.MAX_TOKENS
    )
    send_stream_options = models.BooleanField(
        default=True, help_text="Ask for usage with stream_options.include_usage (turn off for servers that reject it)."
    )
    send_reasoning_effort = models.BooleanField(
        default=False, help_text="Forward reasoning.effort: as reasoning_effort (Chat), as extended thinking with "
                                 "a budget per level (Anthropic)."
    )
    send_prompt_cache_key = models.BooleanField(
        default=False, help_text="Forward prompt_cache_key and prompt_cache_retention (OpenAI routes by them); vLLM, "
                                 "SGLang, llama.cpp and Ollama cache prefixes without a key.")
    # Anthropic Messages, used when bridging to an Anthropic upstream.
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="max output tokens",
        help_text="Anthropic upstream: max_tokens when the client sets no cap (Messages requires one); empty: the "
                  "model's known limit (Claude), else 16384.")
    prompt_caching = models.BooleanField(
        default=True, help_text="Anthropic upstream: mark the stable prefix (tools, system, the conversation so far) "
                                "for the prompt cache, so each turn reads the last one's prefix.")
    compaction_model = models.CharField(
        max_length=200, blank=True,
        help_text="The model (the upstream's own name) that summarizes a conversation when a client compacts it "
                  "(Codex's remote compaction, /v1/responses/compact); empty: the model the client uses.",
    )
    # What a Responses upstream takes of Codex's tools and items (the probe finds out): what it
    # does not is rewritten for it (bridge/dialects/repaired.py).
    accepts_custom_tools = models.BooleanField(
        default=True, help_text="Responses upstream: takes custom (freeform) and local_shell tools; off: sent as "
                                "one-string functions and turned back.")
    accepts_namespace_tools = models.BooleanField(
        default=True, help_text="Responses upstream: takes namespace (MCP) tools; off: flattened names, turned back.")
    accepts_hosted_tools = models.BooleanField(
        default=True, help_text="Responses upstream: takes hosted tools (web_search...); off: left out, as the bridge "
                                "does.")
    accepts_encrypted_reasoning = models.BooleanField(
        default=True, help_text="Responses upstream: takes reasoning items with encrypted_content in the history; "
                                "off: they are left out.")
    accepts_images = models.BooleanField(
        default=False, help_text="Its models take image input: Codex's catalog then offers images for them.",
    )
    record_next = models.PositiveIntegerField(
        default=0, verbose_name="record the next exchanges",
        help_text="Flight recorder: keep the raw upstream bytes and what the client was sent for this many more "
        "requests (counts down to 0). Then `manage.py replay REQUEST_ID` or `exportfixture REQUEST_ID`.",
    )
    created = models.DateTimeField(default=now)
    updated = models.DateTimeField(auto_now=True)
    # Last: from here on the name ``models`` means this field, not django.db.models.
    models = models.TextField(
        blank=True,
        help_text="Model names or globs, separated by spaces, commas or lines (deepseek-* qwen*). "
        "Empty: serves any model (catch-all).",
    )

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def patterns(self) -> list[str]:
        return [p for p in PATTERN_SPLIT.split(self.models.strip()) if p]

    @property
    def named_models(self) -> list[str]:
        """Return the models named outright: a glob is a pattern, not a model a client can be offered."""
        return [p for p in self.patterns if not any(c in p for c in GLOB_CHARS)]

    @property
    def is_catch_all(self) -> bool:
        return not self.patterns

    @property
    def serves_by_pattern(self) -> bool:
        """Whether only the upstream's server can say which models exist (a catch-all, or globs)."""
        patterns = self.patterns
        return not patterns or any(c in p for p in patterns for c in GLOB_CHARS)

    def serves(self, model: str) -> bool:
        patterns = self.patterns
        if not patterns:
            return True
        aliases = self.aliases
        return any(fnmatch.fnmatchcase(model, p) for p in patterns) or model in aliases

    @property
    def aliases(self) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in self.model_map.splitlines() if "=" in line)
        return {alias.strip(): target.strip() for alias, target in pairs if alias.strip() and target.strip()}

    def upstream_model(self, model: str) -> str:
        """Return the name the upstream knows ``model`` by."""
        return self.aliases.get(model, model)

    def options(self, model: str | None) -> UpstreamOptions:
        """Return what this upstream accepts, for a request of ``model`` (its own name for it)."""
        return UpstreamOptions(
            model=model, accepts_developer_role=self.accepts_developer_role, replay_reasoning=self.replay_reasoning,
            max_tokens_field=self.max_tokens_field,  # type: ignore[arg-type]  # a MaxTokensField choice
            send_stream_options=self.send_stream_options, send_reasoning_effort=self.send_reasoning_effort,
            send_prompt_cache_key=self.send_prompt_cache_key,
            accepts_custom_tools=self.accepts_custom_tools, accepts_namespace_tools=self.accepts_namespace_tools,
            accepts_hosted_tools=self.accepts_hosted_tools,
            accepts_encrypted_reasoning=self.accepts_encrypted_reasoning,
            max_output_tokens=self.max_output_tokens, prompt_caching=self.prompt_caching)

    @property
    def protocol(self) -> Protocol:
        """What the upstream speaks, for the dialect table: Chat only, Responses, or Responses repaired."""
        if self.api != UpstreamApi.RESPONSES:
            return "anthropic" if self.api == UpstreamApi.ANTHROPIC else "chat"
        return "responses-repaired" if self.options(None).repairs else "responses"

    @property
    def api_base(self) -> str:
        """Return the base URL ending in the API version path, without a trailing slash.

        Users paste ``http://host:8080``, ``http://host:8080/`` or ``http://host:8080/v1``:
        all mean the same server. A base with another path (``/api/openai``) is kept as is.
        """
        parts = urlsplit(self.base_url.strip())
        path = parts.path.rstrip("/") or "/v1"
        if self.api == UpstreamApi.ANTHROPIC and not path.endswith("/v1"):
            # Anthropic-compatible providers document the base without /v1 (…/anthropic); Messages is under /v1.
            path += "/v1"
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    def url(self, endpoint: str) -> str:
        return f"{self.api_base}/{endpoint.lstrip('/')}"


class ByPattern:
    """A row that applies to the models its ``pattern`` names: a model name, or a glob (qwen3-*)."""

    pattern: str

    @property
    def is_glob(self) -> bool:
        return any(c in self.pattern for c in GLOB_CHARS)

    def matches(self, model: str) -> bool:
        return fnmatch.fnmatchcase(model, self.pattern) if self.is_glob else model == self.pattern


def best_for(model: str, rows: Iterable[ByPattern]) -> Any:
    """The row of ``rows`` that applies to ``model``: its own name's, else the longest glob matching it."""
    matching = [row for row in rows if row.matches(model)]
    return max(matching, key=lambda row: (not row.is_glob, len(row.pattern)), default=None)


class ModelProfile(ByPattern, models.Model):
    """What the Codex model catalog says of the models a name or glob matches, beyond what their upstream tells.

    Blank fields leave the catalog's own value (upstreams/catalog.py); ``extra`` is merged last,
    for any other field of Codex's catalog entry.
    """

    pattern = models.CharField(
        max_length=200, unique=True,
        help_text="A model name, or a glob (qwen3-*): a name beats a glob, a longer glob a shorter one.",
    )
    display_name = models.CharField(max_length=200, blank=True)
    description = models.CharField(max_length=500, blank=True)
    context_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens; empty: what the upstream's server reports.")
    reasoning_levels = models.CharField(
        max_length=200, blank=True,
        help_text="Reasoning efforts the model takes (low medium high); empty: low medium high where the "
                  "upstream forwards reasoning effort, none elsewhere; 'none': none.")
    default_reasoning_level = models.CharField(max_length=32, blank=True, help_text="Empty: medium, if offered.")
    verbosity = models.BooleanField(default=False, help_text="The model reads text.verbosity.")
    images = models.BooleanField(null=True, blank=True, help_text="Image input; unknown: the upstream's setting.")
    base_instructions = models.TextField(
        blank=True,
        help_text="Codex's base prompt for this model; empty: the gateway's own (upstreams/instructions.md).")
    extra = models.JSONField(default=dict, blank=True,
                             help_text="Any other fields of Codex's catalog entry, as a JSON object, set last.")

    class Meta:
        ordering = ["pattern"]

    def __str__(self) -> str:
        return self.pattern
