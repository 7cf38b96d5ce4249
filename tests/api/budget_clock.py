"""A clock a test sets (GATEWAY_BUDGET_CLOCK=tests.api.budget_clock.now): unix seconds from BUDGET_CLOCK_FILE."""
from __future__ import annotations

import os
from pathlib import Path


def now() -> float:
    return float(Path(os.environ["BUDGET_CLOCK_FILE"]).read_text())
