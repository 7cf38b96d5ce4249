"""The admin of upstreams (edited live, connection test, the probe, the flight recorder) and model profiles."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse

from upstreams import cooldown, presets
from upstreams.models import ModelProfile, Upstream, UpstreamApi
from upstreams.probe.capabilities import Report, applied, probe_capabilities
from upstreams.probe.reach import probe

RECORD_BATCH = 10  # the flight recorder's action: how many exchanges it records
# The admin's "View site" link opens the request log UI, the gateway's one site page.
admin.site.site_url = "/logs/"


def mask(secret: str) -> str:
    """Return a secret's shape without the secret: enough to tell two keys apart."""
    if not secret:
        return "—"
    return f"{secret[:3]}…{secret[-2:]}" if len(secret) > 12 else "••••"


class UpstreamForm(forms.ModelForm):
    # Write-only: the current key is never rendered into the page.
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")
    preset = forms.ChoiceField(required=False, choices=presets.choices, help_text=(
        "Sets the base URL (when left empty), the mode and the compatibility switches for that server; "
        "change any of them afterwards. Then run Test connection."))

    class Meta:
        model = Upstream
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["record_next"].required = False  # empty: 0, not recording
        if not self.instance.pk:  # nothing to keep or remove yet
            self.fields["base_url"].required = False  # a preset may give it
            self.fields["api_key"].help_text = ("Sent upstream as Authorization: Bearer; leave empty for a server "
                                                "that needs none. Never shown again once saved.")
            self.fields["clear_api_key"].widget = forms.HiddenInput()

    def clean_record_next(self) -> int:
        return self.cleaned_data.get("record_next") or 0

    def clean_api_key(self) -> str:
        new = self.cleaned_data.get("api_key", "")
        return new if new else (self.instance.api_key if self.instance.pk else "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_api_key"):
            cleaned["api_key"] = ""
        if cleaned.get("preset"):
            cleaned = presets.apply(cleaned["preset"], cleaned)
        if not str(cleaned.get("base_url") or "").strip():
            self.add_error("base_url", "Give the server's base URL, or choose a preset.")
        return cleaned


@admin.register(ModelProfile)
class ModelProfileAdmin(admin.ModelAdmin):
    """What Codex's catalog (GET /v1/codex/models) says of the models a name or glob matches."""

    list_display = ["pattern", "display_name", "context_window", "reasoning_levels", "verbosity", "images"]
    search_fields = ["pattern", "display_name"]
    fieldsets = [
        (None, {"fields": ["pattern", "display_name", "description"]}),
        ("What the model takes", {"fields": ["context_window", "reasoning_levels", "default_reasoning_level",
                                             "verbosity", "images"]}),
        ("Codex", {"fields": ["base_instructions", "extra"]}),
    ]


@admin.register(Upstream)
class UpstreamAdmin(admin.ModelAdmin):
    form = UpstreamForm
    # What staff scan for first, left; the long URL and model lists last (they wrap, at 1280 px too:
    # static/upstreams/admin-lists.css). No filter panel: it took the room of those two columns.
    list_display = ["name", "enabled", "cooling_down", "mode", "priority", "weight", "base_url", "models"]
    list_editable = ["enabled", "priority"]
    search_fields = ["name", "base_url", "models"]
    actions = ["test_connection", "test_and_apply", "record_next_exchanges"]
    # A "Test connection" button on the upstream's own page (templates/admin/upstreams/upstream/).
    change_form_template = "admin/upstreams/upstream/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        test = path("<int:pk>/test/", self.admin_site.admin_view(self.test_view), name="upstreams_upstream_test")
        return [test, *super().get_urls()]

    def test_view(self, request: HttpRequest, pk: int) -> HttpResponseRedirect:
        """Run the connection test from the upstream's page (POST) and come back to it with the findings.

        ``apply``: set what the findings recommend too, as the list's second action does.
        """
        upstream = get_object_or_404(Upstream, pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, upstream):
            raise PermissionDenied
        chosen = Upstream.objects.filter(pk=pk)
        if request.POST.get("apply"):
            self.test_and_apply(request, chosen)
        else:
            self.test_connection(request, chosen)
        return HttpResponseRedirect(reverse("admin:upstreams_upstream_change", args=[pk]))

    def get_fieldsets(self, request: HttpRequest, obj: Upstream | None = None) -> Any:
        """A new upstream's form starts with the presets."""
        if obj is not None:
            return self.fieldsets
        first = self.fieldsets[0][1]["fields"]
        return [(None, {"fields": ["preset", *first]}), *self.fieldsets[1:]]

    fieldsets = [
        (None, {"fields": ["name", "base_url", "api", "keeps_state", "api_key", "clear_api_key",
                           "models", "model_map", "enabled", "priority", "weight"]}),
        ("Timeouts", {"fields": ["connect_timeout", "first_byte_timeout", "read_timeout"]}),
        ("Models (Codex's catalog; per model: Model profiles)", {"fields": ["accepts_images", "compaction_model"]}),
        ("Flight recorder", {"fields": ["record_next"]}),
        ("Responses compatibility (passthrough): what the server takes of Codex's tools; the probe sets these", {
            "fields": ["accepts_custom_tools", "accepts_namespace_tools", "accepts_hosted_tools",
                       "accepts_encrypted_reasoning"],
        }),
        ("Chat Completions compatibility (bridge)", {
            "fields": ["accepts_developer_role", "replay_reasoning", "max_tokens_field",
                       "send_stream_options", "send_reasoning_effort", "send_prompt_cache_key"],
        }),
        ("Anthropic Messages (bridge; reasoning effort is the switch above)", {
            "fields": ["max_output_tokens", "prompt_caching"],
        }),
    ]

    @admin.action(description="Test connection and apply the recommended settings")
    def test_and_apply(self, request: HttpRequest, queryset: QuerySet[Upstream]) -> None:
        """Test connection, then set what its findings recommend (the compatibility switches, the mode)."""
        for upstream in queryset:
            report = self.test_connection(request, Upstream.objects.filter(pk=upstream.pk))
            if report is None:
                continue
            changed = applied(upstream, report)
            said = ", ".join(f"{_label(name)} → {'on' if value else 'off'}" for name, value in changed.items())
            self.message_user(request, f"Upstream {upstream.name}: " + (f"set {said}." if changed else
                                                                        "its settings already fit."))

    @admin.display(description="Cool-down")
    def cooling_down(self, obj: Upstream) -> str:
        """Endpoints skipped after repeated failures (shared cache: what every worker sees)."""
        left = cooldown.status(obj)
        return ", ".join(f"{endpoint} ({seconds}s)" for endpoint, seconds in left.items()) or "—"

    class Media:
        css = {"all": ["upstreams/admin-lists.css"]}

    @admin.display(description="Mode", ordering="api")
    def mode(self, obj: Upstream) -> str:
        """Bridged, or passed through (with what the tool repair rewrites for this server)."""
        if obj.api != UpstreamApi.RESPONSES:
            return "bridge (Messages)" if obj.api == UpstreamApi.ANTHROPIC else "bridge"
        repaired = self.repaired(obj)
        return "passthrough" if repaired == "—" else f"passthrough, repaired: {repaired}"

    @admin.display(description="Tool repair")
    def repaired(self, obj: Upstream) -> str:
        """What the passthrough rewrites for this server (bridge/dialects/repaired.py), or — when nothing."""
        if obj.api != UpstreamApi.RESPONSES:
            return "—"
        refused = [label for label, taken in (("custom", obj.accepts_custom_tools),
                                              ("namespace", obj.accepts_namespace_tools),
                                              ("hosted", obj.accepts_hosted_tools),
                                              ("encrypted reasoning", obj.accepts_encrypted_reasoning)) if not taken]
        return ", ".join(refused) or "—"

    @admin.display(description="API key")
    def masked_key(self, obj: Upstream) -> str:
        return mask(obj.api_key)

    @admin.action(description="Test connection (reach it, then check what it can do)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Upstream]) -> Report | None:
        """Reach each selected upstream with its own key, then report its capabilities and the settings to choose.

        Returns the last upstream's report (None when it could not be reached): ``test_and_apply`` uses it.
        """
        report = None
        for upstream in queryset:
            result = probe(upstream)
            # The probe's "models" finding lists them again, with their context windows: once is enough.
            said = f"{result.headline}." if result.listed else str(result)
            self.message_user(request, said, messages.SUCCESS if result.ok else messages.ERROR)
            if not result.ok:
                report = None
                continue
            report = probe_capabilities(upstream)
            for finding in report.findings:
                self.message_user(request, f"Upstream {upstream.name}: {finding}",
                                  messages.INFO if finding.ok else messages.WARNING)
        return report


    @admin.action(description=f"Record the next {RECORD_BATCH} exchanges (flight recorder)")
    def record_next_exchanges(self, request: HttpRequest, queryset: QuerySet[Upstream]) -> None:
        """Start the flight recorder (logs/recording/) on each selected upstream; each save reaches every worker."""
        for upstream in queryset:
            upstream.record_next = RECORD_BATCH
            upstream.save(update_fields=["record_next", "updated"])
            self.message_user(request, f"Upstream {upstream.name}: recording its next {RECORD_BATCH} exchanges. "
                              "Each is kept with its request log row; replay one with manage.py replay REQUEST_ID.")


def _label(name: str) -> str:
    """An upstream field's name as the form shows it."""
    return str(getattr(Upstream._meta.get_field(name), "verbose_name", name))
