"""Simulated time: epoch days, monthly periods and seasonality.

Engine time is float days since 1970-01-01 (UTC), so a date is ``floor(t)`` and a timestamp is
``t * 86400`` seconds: no conversion tables, and dates are exact.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from sim.scenario.schema import Calendar, Seasonality

__all__ = ["Period", "epoch_day", "horizon_end", "horizon_periods", "next_period", "seasonal_factor"]

_EPOCH = dt.date(1970, 1, 1)


def epoch_day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _month_end(d: dt.date) -> dt.date:
    first_next = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


def horizon_end(cal: Calendar) -> dt.date:
    """Last simulated day of the scenario's horizon (inclusive)."""
    if cal.days is not None:
        return cal.start_date + dt.timedelta(days=cal.days - 1)
    end = cal.start_date
    for _ in range(cal.months or 0):
        end = _month_end(end) + dt.timedelta(days=1)
    return end - dt.timedelta(days=1)


class Period:
    """One monthly batch: days ``[start, end]`` inclusive; ``index`` counts from the run's start."""

    __slots__ = ("end", "index", "start")

    def __init__(self, index: int, start: dt.date, end: dt.date) -> None:
        self.index, self.start, self.end = index, start, end

    @property
    def t0(self) -> float:
        return float(epoch_day(self.start))

    @property
    def t1(self) -> float:
        """Exclusive end in engine time (midnight after the last day)."""
        return float(epoch_day(self.end) + 1)

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"

    def __repr__(self) -> str:
        return f"Period({self.index}, {self.start}, {self.end})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Period) and (self.index, self.start, self.end) == (other.index, other.start, other.end)


def next_period(prev: Period | None, *, start: dt.date, limit: dt.date | None = None) -> Period:
    """The period after ``prev`` (or the first, at ``start``): to its month's end or ``limit``."""
    first = start if prev is None else prev.end + dt.timedelta(days=1)
    end = _month_end(first)
    if limit is not None and first <= limit < end:
        end = limit
    return Period(0 if prev is None else prev.index + 1, first, end)


def horizon_periods(cal: Calendar) -> list[Period]:
    """The scenario's monthly periods, the last one cut at the horizon's end."""
    end = horizon_end(cal)
    out = [next_period(None, start=cal.start_date, limit=end)]
    while out[-1].end < end:
        out.append(next_period(out[-1], start=cal.start_date, limit=end))
    return out


def seasonal_factor(t: np.ndarray, season: Seasonality) -> np.ndarray:
    """Weekly x yearly x holiday intensity multiplier at engine times ``t``."""
    day = np.floor(t).astype(np.int64)
    weekly = np.asarray(season.weekly, dtype=np.float64)
    weekly = weekly / weekly.mean()
    f = weekly[(day + 3) % 7]  # 1970-01-01 was a Thursday; Monday is index 0
    if season.yearly_amplitude:
        days = day.astype("datetime64[D]")
        doy = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
        f = f * (1.0 + season.yearly_amplitude * np.cos(2 * np.pi * (doy - season.yearly_peak_day) / 365.25))
    for h in season.holidays:
        d0 = epoch_day(h.date)
        f = np.where((day >= d0) & (day < d0 + h.days), f * h.multiplier, f)
    return f


def seasonal_bound(season: Seasonality, t0: float, t1: float) -> float:
    """The maximum of :func:`seasonal_factor` over the days of ``[t0, t1)`` (for thinning)."""
    days = np.arange(np.floor(t0), np.ceil(t1))
    return float(seasonal_factor(days, season).max()) if len(days) else 1.0
