"""The budget options ``createapikey`` and ``team`` share: --token-budget, --usd-budget, --budget-period."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import CommandError, CommandParser

from upstreams.models import BudgetPeriod


def add_budget_arguments(parser: CommandParser) -> None:
    parser.add_argument("--token-budget", type=int, default=None,
                        help="tokens (input + output) per budget period; default: no limit")
    parser.add_argument("--usd-budget", default=None, help="US dollars per budget period, at the models' prices "
                                                           "(manage.py setprice); default: no limit")
    parser.add_argument("--budget-period", choices=BudgetPeriod.values, default=None,
                        help="day, week (from Monday), month (from the 1st), all from 00:00 UTC, or total "
                             "(never resets); default: month")


def budget_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The budget fields the options set (only those given), checked."""
    fields: dict[str, Any] = {}
    if options["token_budget"] is not None:
        if options["token_budget"] < 0:
            raise CommandError("--token-budget must be 0 or more tokens")
        fields["token_budget"] = options["token_budget"]
    if options["usd_budget"] is not None:
        fields["usd_budget"] = dollars(options["usd_budget"], "--usd-budget")
    if options["budget_period"] is not None:
        fields["budget_period"] = options["budget_period"]
    return fields


def dollars(text: str, option: str) -> Decimal:
    """``text`` as a non-negative amount of dollars (``5``, ``0.15``, ``$2.50``)."""
    try:
        amount = Decimal(str(text).strip().lstrip("$"))
    except InvalidOperation:
        raise CommandError(f"{option} {text!r} is not an amount like 2.50") from None
    if not amount.is_finite() or amount < 0:
        raise CommandError(f"{option} must be 0 or more dollars")
    return amount
