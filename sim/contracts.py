"""The data's contracts, in one place: names, codes and bounds every layer agrees on.

The engine writes them, the lake stores them, validation checks them and analysis reads them;
none of these numbers is a model parameter (those are scenario keys).
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_WINDOW_DAYS", "AGE_MAX", "AGE_MIN", "AMOUNT_CAP", "CATEGORIES", "CHANNELS", "CHURN_WINDOW_DAYS",
    "EXPERIMENT_BIT0", "ISSUE_KINDS", "MAX_EXPERIMENTS", "MAX_INTERVENTIONS", "NEW_CUSTOMER", "SEGMENTS",
    "CHANGE_TYPES", "TIERS",
]

# The guide's four segments, in the order of their int8 codes in engine state.
SEGMENTS: tuple[str, ...] = ("young_active", "mid_stable", "senior_declining", "new_customer")
NEW_CUSTOMER = SEGMENTS.index("new_customer")
CHANNELS: tuple[str, ...] = ("web", "app", "store")
# Loyalty tiers (bronze, the signup tier, needs no spend) and the kinds of customer_history rows, in code order.
TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
CHANGE_TYPES: tuple[str, ...] = ("signup", "segment", "tier", "address", "email")
CATEGORIES: tuple[str, ...] = (
    "groceries", "fashion", "electronics", "home", "beauty", "sports", "books", "travel",
)

# The guide's validation rules.
AGE_MIN, AGE_MAX = 18, 100
AMOUNT_CAP = 5000.0

# The guide's churn rule (no purchase in 60 days) and the daily metrics' activity window.
CHURN_WINDOW_DAYS = 60
ACTIVE_WINDOW_DAYS = 30

# Each customer's effect flags are one 64-bit word: bits 0..31 interventions, then two bits
# (treatment, control) per experiment.
MAX_INTERVENTIONS = 32
MAX_EXPERIMENTS = 16
EXPERIMENT_BIT0 = MAX_INTERVENTIONS  # experiment e: treatment bit EXPERIMENT_BIT0 + 2e, control + 1

# Defects that corruption injects and validation finds.
ISSUE_KINDS: tuple[str, ...] = ("null_age", "invalid_age", "negative_amount", "duplicate_transaction", "before_signup",
                                "after_end", "orphan_transaction", "malformed_email", "amount_over_cap", "late_arrival")
