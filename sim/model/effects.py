"""Interventions and experiments as effects on the customers they reach, and the moments the world changes."""

from __future__ import annotations

from dataclasses import dataclass

from sim.contracts import EXPERIMENT_BIT0, SEGMENTS
from sim.model.calendar import Period, epoch_day
from sim.scenario import Scenario

__all__ = ["Effect", "breakpoints", "effects_of"]


@dataclass(frozen=True)
class Effect:
    bit: int
    t_start: float
    t_end: float
    segment: int | None
    inactive_days: float | None
    intensity: float
    hazard: float
    spend: float


def effects_of(s: Scenario) -> list[Effect]:
    out = []
    for j, iv in enumerate(s.interventions):
        t = float(epoch_day(iv.start))
        seg = None if iv.target.segment is None else SEGMENTS.index(iv.target.segment)
        out.append(Effect(j, t, t + iv.days, seg, iv.target.inactive_days,
                           iv.intensity_multiplier, iv.hazard_multiplier, iv.spend_multiplier))
    for e, ex in enumerate(s.experiments):
        t = float(epoch_day(ex.assign_date))
        tr = ex.treatment
        seg = None if ex.eligible.segment is None else SEGMENTS.index(ex.eligible.segment)
        out.append(Effect(EXPERIMENT_BIT0 + 2 * e, t, t + tr.days, seg, ex.eligible.inactive_days,
                           tr.intensity_multiplier, tr.hazard_multiplier, tr.spend_multiplier))
    return out


def breakpoints(s: Scenario, period: Period) -> list[tuple[float, str, object]]:
    """Times inside the month where the world changes, with what changes."""
    pts: list[tuple[float, str, object]] = []
    for eff in effects_of(s):
        pts.append((eff.t_start, "effect_start", eff))
        pts.append((eff.t_end, "effect_end", eff))
    for d in s.drifts:
        if d.parameter == "acquisition_mix":
            continue
        t = float(epoch_day(d.start))
        step = d.ramp_step_days
        steps = [t] if d.shape == "step" else [t + k for k in range(0, d.ramp_days + step, step)]
        pts.extend((x, "drift", d) for x in steps)
    return sorted((p for p in pts if period.t0 <= p[0] < period.t1), key=lambda p: p[0])
