"""sim.model.changes: the tier rule, the trailing spend, the change clocks and their keyed draws."""

from __future__ import annotations

import math

import numpy as np

from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period, horizon_periods
from sim.model.changes import ADDRESS, EMAIL, MonthStart, _moves_and_emails, _review, _tier_up, month_changes
from sim.model.rates import TargetScales
from sim.scenario import scenario_from_dict

THRESHOLDS = np.array([75.0, 150.0, 300.0])


def test_tiers_go_up_at_a_threshold_and_down_only_below_its_share():
    spend = np.array([0.0, 74.9, 75.0, 149.0, 150.0, 299.0, 300.0, 1e6])
    assert _tier_up(spend, THRESHOLDS).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # Held at gold (2): kept down to 0.8 x 150 = 120, then down to the highest tier still kept.
    gold = np.full(6, 2, np.int8)
    got = _review(gold, np.array([400.0, 150.0, 120.0, 119.9, 61.0, 59.0]), THRESHOLDS, 0.8)
    assert got.tolist() == [3, 2, 2, 1, 1, 0]
    # Ratio 1: no hysteresis, the tier is what the spend reaches.
    spend = np.random.default_rng(1).uniform(0, 400, 1000)
    tier = np.random.default_rng(2).integers(0, 4, 1000).astype(np.int8)
    assert np.array_equal(_review(tier, spend, THRESHOLDS, 1.0), _tier_up(spend, THRESHOLDS))


def _one_customer(n: int = 1) -> Agents:
    ids = np.arange(1, n + 1, dtype=np.int64)
    return Agents.from_columns({"customer_id": ids, "segment": np.ones(n, np.int8), "since": np.full(n, 18_000.0),
                                "last": np.full(n, np.nan), "dropout": np.full(n, np.nan),
                                "graduate_at": np.full(n, np.nan), "grad_to": np.full(n, -1, np.int8)})


def test_a_steady_spend_converges_to_its_monthly_amount():
    s = scenario_from_dict({"population": {"changes": {"move_rate_per_year": 0, "email_change_rate_per_year": 0}}})
    ag = _one_customer()
    tiers = []
    for p in _periods(36):
        days = np.arange(p.t0, p.t1, 3.0) + 0.5  # 10 a day -> about 304 a month
        buys = Purchases(np.ones(len(days), np.int64), days, np.full(len(days), 30.0), np.ones(len(days), np.int8),
                         np.zeros(len(days), np.int8), np.zeros(len(days), np.int8))
        start = MonthStart(ag.segment.copy(), ag.graduate_at.copy(), np.array([p.index == 0]), np.zeros(1, bool))
        month_changes(s, TargetScales(), p, start, ag, buys)
        tiers.append(int(ag.tier[0]))
    assert math.isclose(ag.spend[0], 10 * 365.25 / 12, rel_tol=0.05)  # whole purchases: 10 or 11 a month
    assert tiers[0] == 0 and tiers[-1] == 3 and tiers == sorted(tiers)  # climbs through the tiers, never back
    assert ag.version[0] == 1 + 3  # signup, then one row per tier reached


def _periods(n: int) -> list[Period]:
    s = scenario_from_dict({"calendar": {"start_date": "2022-01-01", "months": n}})
    return horizon_periods(s.calendar)


def _changes(s, ag: Agents, periods: list[Period], *, joined_first: bool = True):
    """Each month's (customer index, change type, time) from the clock, which ``ag`` carries on."""
    out = []
    for k, p in enumerate(periods):
        joined = np.full(len(ag), joined_first and k == 0)
        idx, kind, t = _moves_and_emails(s, ag, p, joined)
        ag.moves += np.bincount(idx, weights=kind == ADDRESS, minlength=len(ag)).astype(np.int16)
        ag.emails += np.bincount(idx, weights=kind == EMAIL, minlength=len(ag)).astype(np.int16)
        out.append((idx, kind, t))
    return out


def test_moves_and_emails_come_at_their_yearly_rates_only_while_live():
    s = scenario_from_dict({"population": {"changes": {"move_rate_per_year": 0.6, "email_change_rate_per_year": 0.3}}})
    n = 100_000
    ag = _one_customer(n)
    ag.dropout[: n // 2] = 18_500.0  # the first half left long ago
    periods = _periods(6)
    twin = Agents.from_columns({k: v.copy() for k, v in ag.columns().items()})
    months = _changes(s, ag, periods)
    live = n // 2
    for (idx, kind, t), p in zip(months, periods, strict=True):
        assert (idx >= n // 2).all()
        assert ((t >= p.t0) & (t < p.t1)).all()
        years = (p.t1 - p.t0) / 365.25
        for code, rate in ((ADDRESS, 0.6), (EMAIL, 0.3)):
            want = live * rate * years  # an exact Poisson process: every change counts, not only a month's first
            assert abs(np.sum(kind == code) - want) < 4 * math.sqrt(want)
    again = _changes(s, twin, periods)
    for x, y in zip(months, again, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(x, y, strict=True))
    np.testing.assert_array_equal(ag.change_clock, twin.change_clock)


def test_a_month_may_hold_several_changes_as_a_poisson_process_does():
    s = scenario_from_dict({"population": {"changes": {"move_rate_per_year": 8, "email_change_rate_per_year": 4}}})
    n = 50_000
    ag = _one_customer(n)
    p = _periods(1)[0]
    [(idx, _, t)] = _changes(s, ag, [p])
    lam = 12 * (p.t1 - p.t0) / 365.25  # about one change a month
    per = np.bincount(idx, minlength=n)
    for k in range(4):
        want = n * math.exp(-lam) * lam ** k / math.factorial(k)
        assert abs(np.sum(per == k) - want) < 4 * math.sqrt(want), k
    order = np.lexsort((t, idx))
    same = idx[order][1:] == idx[order][:-1]
    assert same.any() and (np.diff(t[order])[same] > 0).all()  # a customer's changes one after another


def test_a_new_rate_applies_from_its_first_month():
    """The clock carries exposure, not a time: customers who joined under a zero rate change from
    the first month a scenario sets one (as after ``append --scenario``)."""
    off = scenario_from_dict({"population": {"changes": {"move_rate_per_year": 0, "email_change_rate_per_year": 0}}})
    on = scenario_from_dict({"population": {"changes": {"move_rate_per_year": 6, "email_change_rate_per_year": 0}}})
    n = 20_000
    ag = _one_customer(n)
    periods = _periods(4)
    assert all(len(m[0]) == 0 for m in _changes(off, ag, periods[:2]))
    assert np.isfinite(ag.change_clock).all() and (ag.change_clock > 0).all()
    later = _changes(on, ag, periods[2:], joined_first=False)
    for (idx, kind, _), p in zip(later, periods[2:], strict=True):
        want = n * 6 * (p.t1 - p.t0) / 365.25
        assert abs(len(idx) - want) < 4 * math.sqrt(want) and (kind == ADDRESS).all()
