"""The parameters in force at a moment: segment rates with the target scales and drifts applied."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.contracts import CATEGORIES, SEGMENTS
from sim.model.calendar import epoch_day
from sim.scenario.schema import Drift, Scenario

__all__ = ["Rates", "TargetScales", "category_cdf", "drift_weight", "rates_at"]


@dataclass(frozen=True)
class Rates:
    """Per-segment parameters in force during one block (target scales and drift applied)."""

    purchase_rate: np.ndarray
    decay_per_year: np.ndarray
    spend_median: np.ndarray
    spend_sigma: np.ndarray
    dropout_hazard: np.ndarray
    regularity: np.ndarray
    app_share: np.ndarray
    store_share: np.ndarray
    category_cdf: np.ndarray  # cumulative share of purchases per category (contracts.CATEGORIES order)
    recency_scale: float
    dropout_per_purchase: np.ndarray | None = None  # chance of leaving after each repeat purchase (mean)
    dropout_concentration: float | None = None  # Beta concentration of that chance across customers


@dataclass(frozen=True)
class TargetScales:
    """Scales (solved to meet the targets) applied to every segment's purchase rate and dropout hazard to meet the targets."""

    intensity_scale: float = 1.0
    hazard_scale: float = 1.0


def drift_weight(d: Drift, t: np.ndarray | float) -> np.ndarray:
    """How far drift ``d`` has gone at ``t``: a step is whole from its start on (the start included:
    the rules read there are the step's), a ramp grows linearly over ``ramp_days``."""
    x = np.asarray(t, float) - epoch_day(d.start)
    if d.shape == "step":
        return np.where(x >= 0, 1.0, 0.0)
    return np.clip(x / d.ramp_days, 0.0, 1.0)


def rates_at(s: Scenario, c: TargetScales, t: float) -> Rates:
    segs = [s.population.segments[name] for name in SEGMENTS]

    def col(name: str, scale: float = 1.0) -> np.ndarray:
        v = np.array([getattr(g, name) for g in segs], float) * scale
        for d in s.drifts:
            if d.parameter == name:
                w = float(drift_weight(d, t))
                f = 1.0 + (d.multiplier - 1.0) * w
                mask = np.ones(len(SEGMENTS), bool) if d.segment is None else np.array([x == d.segment for x in SEGMENTS])
                v = np.where(mask, v * f, v)
        return v

    return Rates(
        purchase_rate=col("purchase_rate", c.intensity_scale),
        decay_per_year=col("decay_per_year"),
        spend_median=col("spend_median"),
        spend_sigma=col("spend_sigma"),
        dropout_hazard=col("dropout_hazard", c.hazard_scale),
        dropout_per_purchase=np.minimum(col("dropout_per_purchase", c.hazard_scale), 1.0),
        dropout_concentration=s.population.heterogeneity.dropout_concentration,
        regularity=col("regularity"),
        app_share=col("app_share"),
        store_share=col("store_share"),
        category_cdf=category_cdf(s),
        recency_scale=s.population.recency_scale_days,
    )


def category_cdf(s: Scenario) -> np.ndarray:
    """Cumulative category shares from ``population.category_weights`` (a category left out weighs 0)."""
    w = np.array([s.population.category_weights.get(c, 0.0) for c in CATEGORIES], float)
    return np.cumsum(w / w.sum())
