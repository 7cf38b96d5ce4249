"""The upstream's protocol becomes a choice (chat, responses, anthropic): every upstream keeps what it spoke."""
from __future__ import annotations

from typing import Any

from django.db import migrations, models


def to_api(apps: Any, schema_editor: Any) -> None:
    Upstream = apps.get_model("upstreams", "Upstream")
    Upstream.objects.filter(supports_responses=True).update(api="responses")


def to_switch(apps: Any, schema_editor: Any) -> None:
    Upstream = apps.get_model("upstreams", "Upstream")
    Upstream.objects.filter(api="responses").update(supports_responses=True)


class Migration(migrations.Migration):
    dependencies = [("upstreams", "0010_responses_tool_repair")]

    operations = [
        migrations.AddField(
            model_name="upstream", name="api",
            field=models.CharField(
                "API", max_length=16, default="chat",
                choices=[("chat", "Chat Completions"), ("responses", "Responses"), ("anthropic", "Anthropic Messages")],
                help_text="What the server speaks. Chat Completions and Anthropic Messages: /v1/responses is bridged "
                          "to it; Responses: passed through."),
        ),
        migrations.RunPython(to_api, to_switch),
        migrations.RemoveField(model_name="upstream", name="supports_responses"),
        migrations.AlterField(
            model_name="upstream", name="send_reasoning_effort",
            field=models.BooleanField(
                default=False, help_text="Forward reasoning.effort: as reasoning_effort (Chat), as extended thinking "
                                         "with a budget per level (Anthropic)."),
        ),
        migrations.AddField(
            model_name="upstream", name="max_output_tokens",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="max output tokens",
                help_text="Anthropic upstream: max_tokens when the client sets no cap (Messages requires one); empty: "
                          "the model's known limit (Claude), else 16384."),
        ),
        migrations.AddField(
            model_name="upstream", name="prompt_caching",
            field=models.BooleanField(
                default=True,
                help_text="Anthropic upstream: mark the stable prefix (tools, system, the conversation so far) for the "
                          "prompt cache, so each turn reads the last one's prefix."),
        ),
    ]
