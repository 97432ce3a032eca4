"""Default parameters of the guide's four segments.

Sources: shares, ages and tenures are the guide's segment table. Frequencies and spends keep the
table's order (young_active buys most often, mid_stable spends most, senior_declining buys least and
churns most, new_customer spends least); their magnitudes are ours, chosen so the uncalibrated
baseline gives roughly the guide's ~15 purchases a year per customer.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = ["CATEGORY_WEIGHTS", "DEFAULT_SEGMENTS"]

DEFAULT_SEGMENTS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType({
    "young_active": MappingProxyType({
        "share": 0.25, "age": (23, 33), "tenure_months": (6, 24),
        "purchase_rate": 0.065, "decay_per_year": 0.10,
        "spend_median": 45.0, "spend_sigma": 0.5, "dropout_hazard": 0.0006, "regularity": 5.0,
        "app_share": 0.55, "store_share": 0.10,
    }),
    "mid_stable": MappingProxyType({
        "share": 0.40, "age": (34, 50), "tenure_months": (24, 60),
        "purchase_rate": 0.05, "decay_per_year": 0.05,
        "spend_median": 110.0, "spend_sigma": 0.55, "dropout_hazard": 0.0004, "regularity": 6.0,
        "app_share": 0.30, "store_share": 0.30,
    }),
    "senior_declining": MappingProxyType({
        "share": 0.20, "age": (51, 65), "tenure_months": (36, 84),
        "purchase_rate": 0.04, "decay_per_year": 0.25,
        "spend_median": 60.0, "spend_sigma": 0.5, "dropout_hazard": 0.0025, "regularity": 4.0,
        "app_share": 0.10, "store_share": 0.55,
    }),
    "new_customer": MappingProxyType({
        "share": 0.15, "age": (25, 45), "tenure_months": (0, 3),
        "purchase_rate": 0.045, "decay_per_year": 0.20,
        "spend_median": 28.0, "spend_sigma": 0.6, "dropout_hazard": 0.0012, "regularity": 3.0,
        "app_share": 0.40, "store_share": 0.20,
    }),
})

# Share of purchases per category (contracts.CATEGORIES order): everyday goods dominate, as in
# retail baskets.
CATEGORY_WEIGHTS: tuple[float, ...] = (0.30, 0.16, 0.10, 0.14, 0.10, 0.08, 0.07, 0.05)
