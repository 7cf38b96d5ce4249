"""The admin of client keys (the secret shown once; scope, team, budget; use and spend), teams and prices.

Each key's and team's row shows what it spent in its budget's current period, beside the
budget: one grouped query per page, over the rows' (client_key, -started) and (team, -started)
indexes.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.timezone import now

from plumbing.ratelimit import parse_rate
from upstreams.models import Budgeted, BudgetPeriod, ClientKey, Price, Team, period_at, usd

BUDGET_FIELDS = ["token_budget", "usd_budget", "budget_period"]


def this_period() -> Q:
    """Rows of the current period of their owner's budget (each owner has its own): a Sum's filter."""
    at, found = now(), Q(budget_period=BudgetPeriod.TOTAL)
    for kind in (BudgetPeriod.DAY, BudgetPeriod.WEEK, BudgetPeriod.MONTH):
        found |= Q(budget_period=kind, requestlog__started__gte=period_at(kind, at).start)
    return found


def with_spend(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """The owners (keys or teams) with what they spent this period: tokens and dollars."""
    period = this_period()
    return queryset.annotate(input_period=Sum("requestlog__input_tokens", filter=period),
                             output_period=Sum("requestlog__output_tokens", filter=period),
                             cost_period=Sum("requestlog__cost", filter=period))


def spend_text(owner: Budgeted) -> str:
    """``12,345 / 100,000 tokens · $0.42 / $5.00`` (this period), without limits where none is set."""
    tokens = (getattr(owner, "input_period", None) or 0) + (getattr(owner, "output_period", None) or 0)
    cost: Decimal = getattr(owner, "cost_period", None) or Decimal(0)
    parts = [f"{tokens:,}" + (f" / {owner.token_budget:,}" if owner.token_budget is not None else "") + " tokens",
             usd(cost) + (f" / {usd(owner.usd_budget)}" if owner.usd_budget is not None else "")]
    return " · ".join(parts)


class ClientKeyForm(forms.ModelForm):
    class Meta:
        model = ClientKey
        fields = ["name", "active", "rate_limit", "models", "expires", "team", *BUDGET_FIELDS, "reserve_tokens"]

    def clean_rate_limit(self) -> str:
        text = self.cleaned_data.get("rate_limit", "").strip()
        try:
            parse_rate(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return text


@admin.register(ClientKey)
class ClientKeyAdmin(admin.ModelAdmin):
    form = ClientKeyForm
    list_display = ["name", "active", "spend_period", "requests_day", "tokens_day", "team", "requests_total",
                    "last_used", "prefix", "rate_limit", "created"]

    class Media:
        css = {"all": ["upstreams/admin-lists.css"]}
    list_filter = ["active", "team", "budget_period"]
    search_fields = ["name", "prefix", "team__name"]
    readonly_fields = ["prefix", "created", "last_used"]
    fieldsets = [
        (None, {"fields": ["name", "active", "prefix", "created", "last_used"]}),
        ("Scope", {"fields": ["models", "expires", "rate_limit"]}),
        ("Budget", {"fields": ["team", *BUDGET_FIELDS, "reserve_tokens"],
                    "description": "Tokens and/or US dollars per period (UTC calendar: a day from 00:00, a week from "
                                   "Monday, a month from the 1st; or in total); its team's budget applies too. A "
                                   "spent budget is refused with 429 usage_limit_reached until it resets "
                                   "(insufficient_quota for a total)."}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClientKey]:
        # One grouped query for the page; the (client_key, -started) index serves the 24-hour count.
        day_ago = now() - timedelta(days=1)
        recent = Q(requestlog__started__gte=day_ago)
        return with_spend(super().get_queryset(request).select_related("team")).annotate(
            request_count=Count("requestlog"), request_count_day=Count("requestlog", filter=recent),
            input_day=Sum("requestlog__input_tokens", filter=recent),
            output_day=Sum("requestlog__output_tokens", filter=recent))

    @admin.display(description="Spent this period", ordering="cost_period")
    def spend_period(self, obj: ClientKey) -> str:
        """What the key spent in its budget's current period, of its budget; linked to its usage."""
        return format_html('<a href="{}">{}</a> <small>({})</small>', reverse("logs:usage_key", args=[obj.name]),
                           spend_text(obj), obj.budget_period)

    @admin.display(description="Tokens (24 h)", ordering="output_day")
    def tokens_day(self, obj: ClientKey) -> str:
        """Input and output tokens of the last day, linked to the key's use over time (/logs/keys/<name>/)."""
        tokens_in, tokens_out = obj.input_day or 0, obj.output_day or 0  # type: ignore[attr-defined]
        if not tokens_in and not tokens_out:
            return "—"
        return format_html('<a href="{}">{} in · {} out</a>', reverse("logs:key", args=[obj.name]),
                           f"{tokens_in:,}", f"{tokens_out:,}")

    @admin.display(description="Requests (24 h)", ordering="request_count_day")
    def requests_day(self, obj: ClientKey) -> str:
        url = reverse("logs:list") + "?" + urlencode({"key": obj.name, "since": "24h"})
        return format_html('<a href="{}">{}</a>', url, obj.request_count_day)  # type: ignore[attr-defined]

    @admin.display(description="Requests (all)", ordering="request_count")
    def requests_total(self, obj: ClientKey) -> str:
        url = reverse("logs:list") + "?" + urlencode({"key": obj.name})
        return format_html('<a href="{}">{}</a>', url, obj.request_count)  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: ClientKey, form: forms.Form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        secret = ClientKey.objects.issue(obj)
        super().save_model(request, obj, form, change)
        # Shown once, on the next page; only the hash is stored.
        messages.warning(request, f"New key for {obj.name}: {secret} — copy it now, it is not shown again.")


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "spend_period", "key_count", "created"]
    list_filter = ["budget_period"]
    search_fields = ["name"]
    fields = ["name", *BUDGET_FIELDS]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        # The key count as a subquery: a join with the keys would multiply the sums of the rows.
        keys = ClientKey.objects.filter(team=OuterRef("pk")).order_by().values("team").annotate(n=Count("pk"))
        return with_spend(super().get_queryset(request)).annotate(key_count=Subquery(keys.values("n")))

    @admin.display(description="Spent this period", ordering="cost_period")
    def spend_period(self, obj: Team) -> str:
        return format_html('<a href="{}">{}</a> <small>({})</small>', reverse("logs:usage_team", args=[obj.name]),
                           spend_text(obj), obj.budget_period)

    @admin.display(description="Keys", ordering="key_count")
    def key_count(self, obj: Team) -> str:
        url = reverse("admin:upstreams_clientkey_changelist") + "?" + urlencode({"team__id__exact": obj.pk})
        return format_html('<a href="{}">{}</a>', url, obj.key_count or 0)  # type: ignore[attr-defined]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["pattern", "input", "cached_input", "output", "updated"]
    search_fields = ["pattern"]
    fields = ["pattern", "input", "cached_input", "output"]
