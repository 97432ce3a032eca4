"""Feature and metric drift between a reference window and a current window.

Per feature (pooled month-end snapshots of :mod:`analysis.features` inside each window) and per
daily metric (summed over segments, one value per day), the report gives:

- **PSI** over ten quantile bins of the reference (bins merge where quantiles tie, as for counts);
- the two-sample **KS** statistic and its p-value;
- the **relative mean change** ``(mean_cur - mean_ref) / |mean_ref|`` and the guide's alert
  (``|change| > 20 %``).

Verdict (documented thresholds, :class:`Thresholds`): a feature *drifts* when its PSI is at
least 0.2 (the usual "significant shift"), or when its mean moved by at least 15 % *and* the KS
test rejects at p < 0.001 (a shift both material and not noise). Snapshots of one customer at
several month ends are not independent, so the p-value is only used together with the effect
size. ``trend`` has a mean near zero, so only its PSI counts. Daily metrics are ~30-180 values
with a narrow spread, where PSI on reference quantiles flags even a 3 % shift, so for metrics only
the mean rule counts. Exit status of ``churnsim drift``: 1 when any scored column drifts.

Seasonality is real change: the default scenario's yearly cycle moves frequency and spend by
about 20 % between June and December, and this report flags that. Compare windows in the same
season (or a year apart) to see drift only.

Feature snapshots closer than ``warmup_days`` (90) to the first transaction in the lake are
dropped: their 30/90-day windows reach back before the data starts.

By default features are compared over *active* customers (a purchase in the 90 days before the
as-of date): a population that keeps losing customers to dropout otherwise shows "drift" in every
frequency feature, which is attrition, not a change in behaviour. Lifetime and 365-day
aggregates and tenure grow with the observed history, so they are reported but not scored
(``scored=False``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.features import FEATURE_COLUMNS, compute_features, load_inputs, month_ends
from analysis.lake import read_table, window_start

__all__ = [
    "ColumnDrift",
    "DriftReport",
    "Thresholds",
    "Window",
    "drift_report",
    "ks_statistic",
    "psi",
    "score_drift",
]

log = logging.getLogger(__name__)

#: Features that grow with the observed history (not behaviour): reported, not scored.
UNSCORED = frozenset({"tenure_days", "frequency_365d", "total_spend_365d", "frequency_lifetime",
                      "total_spend_lifetime", "avg_amount", "avg_gap_days"})
SPEND_FEATURES = frozenset({"total_spend_30d", "total_spend_90d", "avg_amount_90d"})
FREQUENCY_FEATURES = frozenset({"frequency_30d", "frequency_90d", "recency_days", "trend"})
SPEND_METRICS = frozenset({"daily_avg_amount", "daily_revenue_per_active"})
FREQUENCY_METRICS = frozenset({"daily_transactions_per_active"})
#: Columns whose mean sits near zero: the relative mean change is meaningless, PSI alone decides.
PSI_ONLY = frozenset({"trend"})
#: Daily metrics (summed over segments), named ``daily_<daily_metrics column>`` plus two ratios.
METRICS = ("daily_transactions", "daily_revenue", "daily_avg_amount", "daily_purchasing_customers",
           "daily_active_customers_30d", "daily_new_customers", "daily_dropouts",
           "daily_transactions_per_active", "daily_revenue_per_active")
#: Which columns a drifted scenario parameter should move.
EXPECTED: dict[str, frozenset[str]] = {
    "spend_median": SPEND_FEATURES | SPEND_METRICS,
    "purchase_rate": FREQUENCY_FEATURES | FREQUENCY_METRICS,
    "decay_per_year": FREQUENCY_FEATURES | FREQUENCY_METRICS,
    "dropout_hazard": frozenset(),
    "dropout_per_purchase": frozenset(),
    "acquisition_mix": frozenset(),
}


@dataclass(frozen=True)
class Window:
    """Inclusive date range."""

    start: dt.date
    end: dt.date

    @classmethod
    def parse(cls, text: str) -> Window:
        """``START:END`` (ISO dates) to a window; raises ``ValueError`` naming the input."""
        try:
            a, b = text.split(":")
            w = cls(dt.date.fromisoformat(a.strip()), dt.date.fromisoformat(b.strip()))
        except ValueError:
            raise ValueError(f"window {text!r}: expected START:END as ISO dates, e.g. 2024-01-01:2024-06-30") from None
        if w.end < w.start:
            raise ValueError(f"window {text!r}: END is before START")
        return w

    def __str__(self) -> str:
        return f"{self.start}:{self.end}"


@dataclass(frozen=True)
class Thresholds:
    """When a column counts as drifted (see the module docstring)."""

    psi: float = 0.2
    mean_change: float = 0.15
    ks_pvalue: float = 0.001
    alert_mean_change: float = 0.20


@dataclass
class ColumnDrift:
    """Drift statistics of one feature or metric."""

    column: str
    source: Literal["feature", "metric"]
    scored: bool
    n_reference: int
    n_current: int
    mean_reference: float
    mean_current: float
    mean_change: float
    psi: float
    ks: float
    ks_pvalue: float
    alert_20pct: bool
    drift: bool


@dataclass
class DriftReport:
    reference: str
    current: str
    population: str
    thresholds: dict[str, float]
    columns: list[ColumnDrift] = field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        """Scored columns with a drift verdict."""
        return [c.column for c in self.columns if c.drift and c.scored]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flagged"] = self.flagged
        return out


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index over quantile bins of ``reference``."""
    ref, cur = _finite(reference), _finite(current)
    if not len(ref) or not len(cur):
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy.stats import ks_2samp

    ref, cur = _finite(reference), _finite(current)
    if not len(ref) or not len(cur):
        return float("nan"), float("nan")
    r = ks_2samp(ref, cur)
    return float(r.statistic), float(r.pvalue)


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x[np.isfinite(x)]


def compare(name: str, ref: np.ndarray, cur: np.ndarray, *, source: Literal["feature", "metric"],
            scored: bool, thresholds: Thresholds) -> ColumnDrift:
    """One column's statistics and verdict."""
    r, c = _finite(ref), _finite(cur)
    m_ref = float(r.mean()) if len(r) else float("nan")
    m_cur = float(c.mean()) if len(c) else float("nan")
    change = (m_cur - m_ref) / abs(m_ref) if m_ref else float("nan")
    value = psi(r, c)
    ks, p = ks_statistic(r, c)
    material = abs(change) >= thresholds.mean_change and p < thresholds.ks_pvalue and name not in PSI_ONLY
    shifted = value >= thresholds.psi and source == "feature"
    return ColumnDrift(name, source, scored, len(r), len(c), m_ref, m_cur, change, value, ks, p,
                       bool(abs(change) > thresholds.alert_mean_change), bool(shifted or material))


def window_features(
    lake: str | Path, window: Window, *, version: int | None = None,
    population: Literal["active", "all"] = "active", warmup_days: int = 90,
) -> pd.DataFrame:
    """Pooled month-end feature snapshots inside ``window`` (the window's end if it has none).

    Raises:
        ValueError: every snapshot falls inside the warm-up after the first transaction.
    """
    customers, transactions = load_inputs(lake, version=version)
    first = window_start(lake, version=version) or pd.to_datetime(transactions["transaction_date"]).min().date()
    ready = first + dt.timedelta(days=warmup_days)
    dates = [d for d in (month_ends(window.start, window.end) or [window.end]) if d >= ready]
    if not dates:
        raise ValueError(f"window {window}: features need {warmup_days} days of history and the simulation "
                         f"starts on {first}; use a window ending on or after {ready}")
    feats = compute_features(customers, transactions, dates)
    if population == "active":
        feats = feats[feats["frequency_90d"] > 0]
    return feats


def window_metrics(lake: str | Path, window: Window, *, version: int | None = None) -> pd.DataFrame:
    """Daily metrics inside ``window``, summed over segments, with per-active ratios."""
    dm = read_table(lake, "daily_metrics", version=version).to_pandas(date_as_object=False)
    dm = dm[(dm["metric_date"] >= pd.Timestamp(window.start)) & (dm["metric_date"] <= pd.Timestamp(window.end))]
    cols = ["transactions", "revenue", "purchasing_customers", "active_customers_30d", "new_customers", "dropouts"]
    day = dm.groupby("metric_date")[cols].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        day["avg_amount"] = day["revenue"] / day["transactions"]
        day["transactions_per_active"] = day["transactions"] / day["active_customers_30d"]
        day["revenue_per_active"] = day["revenue"] / day["active_customers_30d"]
    return day.replace([np.inf, -np.inf], np.nan).add_prefix("daily_")


def drift_report(
    lake: str | Path,
    *,
    reference: Window,
    current: Window,
    other_lake: str | Path | None = None,
    reference_version: int | None = None,
    current_version: int | None = None,
    population: Literal["active", "all"] = "active",
    thresholds: Thresholds | None = None,
) -> DriftReport:
    """Compare ``current`` with ``reference`` per feature and per daily metric.

    Args:
        lake: the reference lake.
        reference: the reference window.
        current: the current window.
        other_lake: read the current window from this lake instead (two-lake comparison).
        reference_version: Delta version of the reference lake's tables (time travel).
        current_version: Delta version for the current window.
        population: ``"active"`` (a purchase in the 90 days before each snapshot) or ``"all"``.
        thresholds: verdict thresholds; defaults to :class:`Thresholds`.

    Returns:
        A :class:`DriftReport`, one :class:`ColumnDrift` per feature and metric.
    """
    th = thresholds or Thresholds()
    cur_lake = other_lake if other_lake is not None else lake
    f_ref = window_features(lake, reference, version=reference_version, population=population)
    f_cur = window_features(cur_lake, current, version=current_version, population=population)
    report = DriftReport(str(reference), str(current), population, asdict(th))
    for col in FEATURE_COLUMNS:
        report.columns.append(compare(col, f_ref[col].to_numpy(np.float64), f_cur[col].to_numpy(np.float64),
                                      source="feature", scored=col not in UNSCORED, thresholds=th))
    m_ref = window_metrics(lake, reference, version=reference_version)
    m_cur = window_metrics(cur_lake, current, version=current_version)
    for col in METRICS:
        scored = col in SPEND_METRICS | FREQUENCY_METRICS
        report.columns.append(compare(col, m_ref[col].to_numpy(np.float64), m_cur[col].to_numpy(np.float64),
                                      source="metric", scored=scored, thresholds=th))
    log.info("drift %s -> %s: flagged %s", reference, current, report.flagged or "nothing")
    return report


def expected_columns(report: DriftReport, scenario: dict[str, Any]) -> set[str]:
    """Columns the scenario's drifts should move between the report's windows.

    A drift counts when its onset falls after the reference window starts and on or before the
    current window ends (the windows then see different regimes). ``dropout_hazard`` and
    ``acquisition_mix`` drifts move population composition rather than a behavioural feature, so
    they expect nothing in particular.
    """
    ref_start = dt.date.fromisoformat(report.reference.split(":")[0])
    cur_end = dt.date.fromisoformat(report.current.split(":")[1])
    out: set[str] = set()
    for d in scenario.get("drifts") or []:
        onset = dt.date.fromisoformat(str(d["start"]))
        if ref_start < onset <= cur_end and float(d.get("multiplier", 1.0)) != 1.0:
            out |= EXPECTED.get(d["parameter"], frozenset())
    return out


def score_drift(report: DriftReport, scenario: dict[str, Any]) -> dict[str, Any]:
    """Score a report against the scenario's ground-truth ``drifts``.

    Args:
        report: from :func:`drift_report`.
        scenario: ``Scenario.to_dict()`` (as stored in ``LAKE/_churnsim/scenario.json``).

    Returns:
        ``expected`` (columns that should move), ``flagged``, ``hits`` (expected and flagged),
        ``misses`` (expected, not flagged), ``false_alarms`` (flagged, not expected), and
        ``ok``: at least one hit per expected group and no false alarm. Drift on an unscored
        parameter expects nothing, so only false alarms count there.
    """
    expected = expected_columns(report, scenario)
    flagged = set(report.flagged)
    hits, misses, false_alarms = flagged & expected, expected - flagged, flagged - expected
    groups = [g for g in (SPEND_FEATURES, FREQUENCY_FEATURES) if g & expected]
    detected = all(g & hits for g in groups)
    return {
        "expected": sorted(expected),
        "flagged": sorted(flagged),
        "hits": sorted(hits),
        "misses": sorted(misses),
        "false_alarms": sorted(false_alarms),
        "ok": bool(detected and not false_alarms),
    }
