"""The scenario language: one frozen dataclass per block of a scenario file, each field's default and range."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sim.contracts import CATEGORIES, SEGMENTS
from sim.scenario.defaults import CATEGORY_WEIGHTS

__all__ = [
    "Acquisition",
    "Calendar",
    "Changes",
    "Corruption",
    "Drift",
    "Experiment",
    "Heterogeneity",
    "Holiday",
    "Intervention",
    "Population",
    "SCHEMA_VERSION",
    "SEGMENT_NAMES",
    "Scenario",
    "Seasonality",
    "Segment",
    "Target",
    "Targets",
    "Treatment",
]

SCHEMA_VERSION = 1


SEGMENT_NAMES = SEGMENTS


def _rng(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "open_lo": open_lo}


@dataclass(frozen=True)
class Segment:
    """One customer segment. Rates are per simulated day; money is in currency units."""

    share: float = field(default=0.25, metadata=_rng(0, 1))
    age: tuple[int, int] = (23, 33)
    tenure_months: tuple[float, float] = (6, 24)
    purchase_rate: float = field(default=0.05, metadata=_rng(0, 50, open_lo=True))
    decay_per_year: float = field(default=0.1, metadata=_rng(0, 20))
    spend_median: float = field(default=50.0, metadata=_rng(0, 5000, open_lo=True))
    spend_sigma: float = field(default=0.6, metadata=_rng(0, 3))
    dropout_hazard: float = field(default=0.001, metadata=_rng(0, 1))
    # BG/NBD-style dropout: the chance of leaving right after each repeat purchase (mean over customers).
    dropout_per_purchase: float = field(default=0.0, metadata=_rng(0, 1))
    regularity: float = field(default=1.0, metadata=_rng(1, 100))
    # Gamma shape of this segment's rate multipliers; unset: population.heterogeneity.shape.
    heterogeneity_shape: float | None = field(default=None, metadata=_rng(0.1, 1000))
    app_share: float = field(default=0.3, metadata=_rng(0, 1))
    store_share: float = field(default=0.3, metadata=_rng(0, 1))


@dataclass(frozen=True)
class Heterogeneity:
    """Customer-level variation inside a segment."""

    shape: float = field(default=6.0, metadata=_rng(0.1, 1000))
    spend_correlation: float = field(default=0.3, metadata=_rng(-2, 2))
    spend_sigma: float = field(default=0.35, metadata=_rng(0, 3))
    # Customers' dropout_per_purchase ~ Beta(c * mean, c * (1 - mean)); unset: the segment's mean for all.
    dropout_concentration: float | None = field(default=None, metadata=_rng(0, 1_000_000, open_lo=True))


@dataclass(frozen=True)
class Acquisition:
    """New customers arriving over the horizon; they start as ``new_customer``."""

    share: float = field(default=0.08, metadata=_rng(0, 1))
    graduation_days: float = field(default=90.0, metadata=_rng(1, 3650))
    # Each graduation lands uniformly within this many days either side of graduation_days.
    graduation_jitter_days: float = field(default=14.0, metadata=_rng(0, 365))
    mix: Mapping[str, float] | None = None
    window_days: int | None = field(default=None, metadata=_rng(1, 36_500))
    # Within the window, the share acquired by fraction x of it is x ** (1 / window_shape): 1 is
    # uniform, above 1 front-loaded, below 1 back-loaded.
    window_shape: float = field(default=1.0, metadata=_rng(0, 10, open_lo=True))
    first_purchase_at_signup: bool = False


@dataclass(frozen=True)
class Changes:
    """How customers' attributes change over time (the ``customer_history`` table)."""

    # Moves and e-mail changes per customer per year (at most one of each a month).
    move_rate_per_year: float = field(default=0.085, metadata=_rng(0, 12))
    email_change_rate_per_year: float = field(default=0.03, metadata=_rng(0, 12))
    # Trailing spend (currency per month, decayed with this half-life) a tier needs; bronze needs nothing.
    tier_thresholds: Mapping[str, float] = field(
        default_factory=lambda: {"silver": 75.0, "gold": 150.0, "platinum": 300.0})
    spend_half_life_months: float = field(default=6.0, metadata=_rng(0, 120, open_lo=True))
    # A tier is kept until trailing spend falls below this share of its threshold (hysteresis).
    tier_downgrade_ratio: float = field(default=0.8, metadata=_rng(0, 1))
    # Share of changes recorded late, and the most days after the batch's month end they arrive.
    late_share: float = field(default=0.05, metadata=_rng(0, 1))
    late_max_days: float = field(default=30.0, metadata=_rng(0, 365, open_lo=True))


@dataclass(frozen=True)
class Population:
    size: int = field(default=10_000, metadata=_rng(1, 100_000_000))
    shard_size: int = field(default=50_000, metadata=_rng(100, 10_000_000))
    recency_scale_days: float = field(default=30.0, metadata=_rng(1, 3650))
    segments: Mapping[str, Segment] = field(default_factory=dict)
    heterogeneity: Heterogeneity = field(default_factory=Heterogeneity)
    acquisition: Acquisition = field(default_factory=Acquisition)
    changes: Changes = field(default_factory=Changes)
    # Share of purchases per category (see contracts.CATEGORIES); normalised, so weights need not sum to 1.
    category_weights: Mapping[str, float] = field(default_factory=lambda: dict(zip(CATEGORIES, CATEGORY_WEIGHTS, strict=True)))


@dataclass(frozen=True)
class Calendar:
    start_date: dt.date = dt.date(2024, 1, 1)
    days: int | None = field(default=None, metadata=_rng(1, 36_500))
    months: int | None = field(default=None, metadata=_rng(1, 1200))

    @property
    def end_date(self) -> dt.date:
        """Last day of the horizon (inclusive): ``days`` after the start, or the end of its last month."""
        if self.days is not None:
            return self.start_date + dt.timedelta(days=self.days - 1)
        end = self.start_date
        for _ in range(self.months or 0):
            end = dt.date(end.year + end.month // 12, end.month % 12 + 1, 1)  # the next month's first day
        return end - dt.timedelta(days=1)


@dataclass(frozen=True)
class Holiday:
    date: dt.date
    name: str = "holiday"
    days: int = field(default=1, metadata=_rng(1, 366))
    multiplier: float = field(default=1.5, metadata=_rng(0, 100))


@dataclass(frozen=True)
class Seasonality:
    weekly: tuple[float, ...] = (0.95, 0.95, 0.97, 1.0, 1.08, 1.15, 0.9)
    yearly_amplitude: float = field(default=0.1, metadata=_rng(0, 0.95))
    yearly_peak_day: int = field(default=350, metadata=_rng(1, 366))
    holidays: tuple[Holiday, ...] = ()


@dataclass(frozen=True)
class Target:
    """Who an intervention reaches: everyone, a segment, and/or the inactive."""

    segment: str | None = None
    inactive_days: float | None = field(default=None, metadata=_rng(0, 36_500))


@dataclass(frozen=True)
class Intervention:
    name: str
    start: dt.date
    kind: Literal["retention_campaign", "spend_shock", "outage"] = "retention_campaign"
    days: int = field(default=30, metadata=_rng(1, 36_500))
    target: Target = field(default_factory=Target)
    intensity_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    hazard_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    spend_multiplier: float = field(default=1.0, metadata=_rng(0, 100))


@dataclass(frozen=True)
class Drift:
    name: str
    parameter: Literal[
        "spend_median", "purchase_rate", "decay_per_year", "dropout_hazard", "dropout_per_purchase",
        "acquisition_mix",
    ]
    start: dt.date
    segment: str | None = None
    shape: Literal["step", "ramp"] = "step"
    ramp_days: int = field(default=60, metadata=_rng(1, 36_500))
    # A ramp moves in steps this many days apart (each a moment the world changes: cost follows them).
    ramp_step_days: int = field(default=7, metadata=_rng(1, 36_500))
    multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    mix: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Treatment:
    days: int = field(default=30, metadata=_rng(1, 36_500))
    intensity_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    hazard_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    spend_multiplier: float = field(default=1.0, metadata=_rng(0, 100))


@dataclass(frozen=True)
class Experiment:
    name: str
    assign_date: dt.date
    eligible: Target = field(default_factory=Target)
    treatment_share: float = field(default=0.5, metadata=_rng(0, 1))
    treatment: Treatment = field(default_factory=Treatment)
    note: str = ""


@dataclass(frozen=True)
class Targets:
    """Outcomes the run is calibrated to meet (the guide's ``DataConfig`` numbers)."""

    avg_transactions_per_customer: float | None = field(default=None, metadata=_rng(0, 100_000, open_lo=True))
    churn_rate: float | None = field(default=None, metadata=_rng(0, 1, open_lo=True))


@dataclass(frozen=True)
class Corruption:
    rate: float = field(default=0.0, metadata=_rng(0, 0.5))
    rates: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Scenario:
    """A whole run, as data. Build with :func:`load_scenario` or :func:`scenario_from_dict`."""

    schema_version: int = SCHEMA_VERSION
    name: str = "scenario"
    description: str = ""
    seed: int = field(default=42, metadata=_rng(0, 2**63 - 1))
    calendar: Calendar = field(default_factory=Calendar)
    seasonality: Seasonality = field(default_factory=Seasonality)
    population: Population = field(default_factory=Population)
    targets: Targets = field(default_factory=Targets)
    interventions: tuple[Intervention, ...] = ()
    drifts: tuple[Drift, ...] = ()
    experiments: tuple[Experiment, ...] = ()
    corruption: Corruption = field(default_factory=Corruption)
    notes: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; ``scenario_from_dict(s.to_dict()) == s``."""
        return _plain(self)

    def digest(self) -> str:
        """A short hash of the scenario's content, stored with every commit."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def end_date(self) -> dt.date:
        """Last simulated day (inclusive)."""
        return self.calendar.end_date


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj
