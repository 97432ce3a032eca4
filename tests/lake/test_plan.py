"""The decision to start, resume, extend, do nothing or refuse: a pure function, tested without a lake."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import asdict
from pathlib import Path

import pytest

from sim import ScenarioError, StorageError, scenario_from_dict
from sim.engine.state import RunState
from sim.lake.plan import LakeStatus, Request, decide, parse_until
from sim.model.calendar import horizon_periods
from sim.model.rates import TargetScales

S = scenario_from_dict({"name": "p", "seed": 3, "calendar": {"start_date": "2024-01-01", "months": 6},
                        "population": {"size": 1000, "shard_size": 500}})
LAKE = Path("L")


def _state(index: int, s=S) -> RunState:
    return RunState(scenario=s, scales=TargetScales(), initial_size=1000, next_customer_id=1001,
                    next_transaction_id=1, period=horizon_periods(s.calendar)[index])


def _run_lake(at: int | None, goal: int, *, s=S) -> LakeStatus:
    """A lake made by `run` heading for month ``goal`` whose state is at month ``at`` (None: no state yet)."""
    state = None if at is None else _state(at, s)
    meta = None if at is None else {"scenario_digest": s.digest()}
    intent = {"command": "run", "target_period": goal, "scenario_digest": s.digest(),
              "calibration": asdict(TargetScales(1.5, 0.5))}
    return LakeStatus(LAKE, True, state, meta, intent, s.digest())


def _appended(at: int, goal: int, *, s=S) -> LakeStatus:
    intent = {"command": "append", "target_period": goal, "scenario": s.to_dict()}
    return LakeStatus(LAKE, True, _state(at, s), {"scenario_digest": s.digest()}, intent, S.digest())


def test_an_empty_lake_starts_and_overwrite_always_starts_afresh():
    empty = LakeStatus(LAKE, False, None, None, None, None)
    plan = decide(empty, Request("run", S, target=2))
    assert (plan.action, plan.target, plan.until, plan.state, plan.clear) == ("start", 2, "2024-03", None, False)
    for status in (empty, _run_lake(5, 5), LakeStatus(LAKE, True, None, None, None, "other", damaged="bad")):
        assert decide(status, Request("run", S, target=1), mode="overwrite").clear


def test_a_run_retried_after_it_finished_is_complete_and_another_horizon_refuses():
    status = _run_lake(2, 2)
    plan = decide(status, Request("run", S, target=2))
    assert plan.action == "complete" and plan.state is status.state
    with pytest.raises(StorageError, match=r"holds a finished run of this scenario \(through 2024-03-31\)"):
        decide(status, Request("run", S, target=3))


def test_an_interrupted_run_resumes_to_its_own_target_only():
    plan = decide(_run_lake(0, 2), Request("run", S, target=2))
    assert plan.action == "resume" and plan.state.period.index == 0 and plan.target == 2
    first = decide(_run_lake(None, 2), Request("run", S, target=2))  # killed inside the first month
    assert first.state is None and first.scales == TargetScales(1.5, 0.5)
    with pytest.raises(StorageError, match=r"heading for 2024-03 \(3 months, not 5\); rerun it with --months 3"):
        decide(_run_lake(0, 2), Request("run", S, target=4))


def test_another_scenario_or_package_or_damage_refuses():
    other = scenario_from_dict({**S.to_dict(), "seed": 4})
    with pytest.raises(StorageError, match=f"holds a run of another scenario \\(digest {S.digest()}; this one is "):
        decide(_run_lake(2, 2), Request("run", other, target=2))
    old = LakeStatus(LAKE, True, None, {"scenario_digest": S.digest()}, None, S.digest(), incompatible="made by X")
    with pytest.raises(StorageError, match="^L: made by X; pass --overwrite"):
        decide(old, Request("run", S, target=2))
    damaged = LakeStatus(LAKE, True, None, None, None, S.digest(), damaged="L/_churnsim/intent.json: unreadable")
    for request in (Request("run", S, target=2), Request("append", until="2024-04")):
        with pytest.raises(StorageError, match="^L/_churnsim/intent.json: unreadable$"):
            decide(damaged, request)


def test_append_until_is_absolute():
    status = _run_lake(2, 2)
    assert decide(status, Request("append", until="2024-03")).action == "complete"
    plan = decide(status, Request("append", until="2024-05"))
    assert (plan.action, plan.target, plan.until) == ("extend", 4, "2024-05")
    with pytest.raises(StorageError, match=r"--until 2024-02 is before the lake's last month, 2024-03"):
        decide(status, Request("append", until="2024-02"))
    months = decide(status, Request("append", months=2))
    assert (months.target, months.until) == (4, "2024-05")  # the --until `append --months 2` prints


def test_an_interrupted_append_is_finished_by_months_and_until_alike():
    status = _appended(3, 5)
    assert decide(status, Request("append", months=2)).target == 5  # not 3 + 2 more
    assert decide(status, Request("append", until="2024-06")).target == 5
    assert decide(status, Request("append", until="2024-04")).action == "complete"  # holds it already
    drifted = scenario_from_dict({**S.to_dict(), "name": "drift"})
    with pytest.raises(StorageError, match=r"an interrupted append under scenario 'p' is heading for 2024-06; "
                                           r"finish it first \(`churnsim append --lake L --until 2024-06`\)"):
        decide(status, Request("append", drifted, until="2024-06"))
    moved = scenario_from_dict({**S.to_dict(), "calendar": {"start_date": "2024-02-01", "months": 6}})
    with pytest.raises(ScenarioError, match="calendar.start_date: expected 2024-01-01"):
        decide(_run_lake(2, 2), Request("append", moved, months=1))


def test_append_past_a_days_horizon_walks_the_engines_months():
    """A horizon cut mid-month is followed by the rest of that month: --until names the last of them."""
    s = scenario_from_dict({**S.to_dict(), "calendar": {"start_date": "2024-01-01", "days": 45}})
    state = _state(1, s)  # 2024-02-01 .. 2024-02-14
    assert state.period.end == dt.date(2024, 2, 14)
    status = LakeStatus(LAKE, True, state, {"scenario_digest": s.digest()},
                        {"command": "run", "target_period": 1, "scenario_digest": s.digest()}, s.digest())
    plan = decide(status, Request("append", until="2024-03"))
    assert (plan.target, plan.until) == (3, "2024-03")  # rest of February, then March


def test_decide_is_pure():
    status = _appended(3, 5)
    intent, state = copy.deepcopy(status.intent), status.state
    assert decide(status, Request("append", months=1)) == decide(status, Request("append", months=1))
    assert status.intent == intent and status.state is state and state.period.index == 3


@pytest.mark.parametrize("text", ["2024-6", "2024-13", "June", "2024-06-01"])
def test_until_must_be_a_month(text):
    with pytest.raises(ScenarioError, match=r"--until: expected a month as YYYY-MM"):
        parse_until(text)
