"""Checks across fields, run once after a scenario is built."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sim.contracts import CATEGORIES, ISSUE_KINDS, MAX_EXPERIMENTS, MAX_INTERVENTIONS, TIERS
from sim.scenario.hints import did_you_mean, fail
from sim.scenario.schema import SEGMENT_NAMES, Scenario, Target

__all__ = ["check_scenario"]


def check_scenario(s: Scenario, src: str) -> None:
    segs = s.population.segments
    total = sum(seg.share for seg in segs.values())
    if abs(total - 1.0) > 1e-6:
        fail(src, "population.segments.*.share", round(total, 6), "shares summing to 1")
    for name, seg in segs.items():
        p = f"population.segments.{name}"
        if not (18 <= seg.age[0] and seg.age[1] <= 100):
            fail(src, f"{p}.age", list(seg.age), "ages within [18, 100]")
        if seg.tenure_months[0] < 0:
            fail(src, f"{p}.tenure_months", list(seg.tenure_months), "non-negative months")
        if seg.app_share + seg.store_share > 1:
            fail(src, f"{p}.store_share", seg.store_share, "app_share + store_share <= 1")
    acq = s.population.acquisition
    if acq.share > segs["new_customer"].share + 1e-9:
        fail(src, "population.acquisition.share", acq.share,
              f"at most population.segments.new_customer.share ({segs['new_customer'].share})")
    if acq.mix is not None:
        _check_mix(src, "population.acquisition.mix", acq.mix)
    elif segs["new_customer"].share > 0 and sum(segs[k].share for k in SEGMENT_NAMES[:3]) <= 0:
        fail(src, "population.acquisition.mix", None,
              "a graduation mix when young_active, mid_stable and senior_declining all have share 0")
    _check_tiers(src, "population.changes.tier_thresholds", s.population.changes.tier_thresholds)
    weights = s.population.category_weights
    for k, v in weights.items():
        if k not in CATEGORIES:
            fail(src, f"population.category_weights.{k}", v, "one of " + ", ".join(CATEGORIES) + did_you_mean(k, CATEGORIES))
        if v < 0:
            fail(src, f"population.category_weights.{k}", v, "a non-negative weight")
    if sum(weights.values()) <= 0:
        fail(src, "population.category_weights", dict(weights), "at least one positive weight")
    cal = s.calendar
    if (cal.days is None) == (cal.months is None):
        fail(src, "calendar", {"days": cal.days, "months": cal.months}, "exactly one of days or months")
    if len(s.seasonality.weekly) != 7 or min(s.seasonality.weekly) < 0:
        fail(src, "seasonality.weekly", list(s.seasonality.weekly), "7 non-negative multipliers, Monday first")
    end = s.end_date
    for i, h in enumerate(s.seasonality.holidays):
        _check_date(src, f"seasonality.holidays[{i}].date", h.date, cal.start_date, None)
    for key, items, most in (("interventions", s.interventions, MAX_INTERVENTIONS),
                             ("experiments", s.experiments, MAX_EXPERIMENTS)):
        if len(items) > most:
            fail(src, key, len(items), f"at most {most} {key}")
    names: set[str] = set()
    for i, iv in enumerate(s.interventions):
        p = f"interventions[{i}]"
        _check_name(src, f"{p}.name", iv.name, names)
        _check_date(src, f"{p}.start", iv.start, cal.start_date, None)
        _check_target(src, f"{p}.target", iv.target)
    for i, d in enumerate(s.drifts):
        p = f"drifts[{i}]"
        _check_name(src, f"{p}.name", d.name, names)
        _check_date(src, f"{p}.start", d.start, cal.start_date, None)
        if d.segment is not None and d.segment not in SEGMENT_NAMES:
            fail(src, f"{p}.segment", d.segment, _segment_hint(d.segment))
        if d.parameter == "acquisition_mix":
            if d.mix is None:
                fail(src, f"{p}.mix", None, "a mix of segment shares for parameter acquisition_mix")
            _check_mix(src, f"{p}.mix", d.mix)
    for i, e in enumerate(s.experiments):
        p = f"experiments[{i}]"
        _check_name(src, f"{p}.name", e.name, names)
        _check_date(src, f"{p}.assign_date", e.assign_date, cal.start_date, end)
        _check_target(src, f"{p}.eligible", e.eligible)
    if s.corruption.rates:
        for k, v in s.corruption.rates.items():
            if k not in ISSUE_KINDS:
                hint = did_you_mean(k, ISSUE_KINDS)
                fail(src, f"corruption.rates.{k}", v, "one of " + ", ".join(ISSUE_KINDS) + hint)
            if not 0 <= v <= 0.5:
                fail(src, f"corruption.rates.{k}", v, "a number in [0, 0.5]")


def _segment_hint(name: str) -> str:
    hint = did_you_mean(name, SEGMENT_NAMES)
    return "a segment, one of " + ", ".join(SEGMENT_NAMES) + hint


def _check_target(src: str, path: str, t: Target) -> None:
    if t.segment is not None and t.segment not in SEGMENT_NAMES:
        fail(src, f"{path}.segment", t.segment, _segment_hint(t.segment))


def _check_mix(src: str, path: str, mix: Mapping[str, float]) -> None:
    for k, v in mix.items():
        if k not in SEGMENT_NAMES[:3]:
            fail(src, f"{path}.{k}", v, "a graduation segment: young_active, mid_stable or senior_declining")
        if v < 0:
            fail(src, f"{path}.{k}", v, "a non-negative share")
    if abs(sum(mix.values()) - 1) > 1e-6:
        fail(src, path, dict(mix), "shares summing to 1")


def _check_tiers(src: str, path: str, thresholds: Mapping[str, float]) -> None:
    upper = TIERS[1:]
    for k, v in thresholds.items():
        if k not in upper:
            fail(src, f"{path}.{k}", v, "one of " + ", ".join(upper) + did_you_mean(k, upper))
        if v <= 0:
            fail(src, f"{path}.{k}", v, "a positive spend per month")
    if set(thresholds) != set(upper):
        fail(src, path, dict(thresholds), "a threshold for each of " + ", ".join(upper))
    values = [thresholds[k] for k in upper]
    if values != sorted(values) or len(set(values)) != len(values):
        fail(src, path, dict(thresholds), "thresholds rising from silver to platinum")


def _check_name(src: str, path: str, name: str, seen: set[str]) -> None:
    if name in seen:
        fail(src, path, name, "a name not used by another intervention, drift or experiment")
    seen.add(name)


def _check_date(src: str, path: str, d: dt.date, lo: dt.date, hi: dt.date | None) -> None:
    if d < lo or (hi is not None and d > hi):
        bound = f"[{lo}, {hi}]" if hi else f"on or after calendar.start_date ({lo})"
        fail(src, path, d.isoformat(), f"a date {bound}")
