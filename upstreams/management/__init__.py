"""The commands users run (``commands``), and what two of them share.

    budgets       the budget options of ``createapikey`` and ``team``: --token-budget, --usd-budget, --budget-period
"""
