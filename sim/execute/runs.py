"""Runs into a lake: ``run`` and ``append``, each deciding under the lake's lock what to write, then writing it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from sim.batch.tables import TABLES
from sim.engine.state import RunState, ShardMonth, initial_state
from sim.engine.step import ShardRunner, local_runner
from sim.errors import ScenarioError
from sim.execute.drive import drive
from sim.execute.targets import solve_targets
from sim.lake.faults import checkpoint
from sim.lake.lock import lake_lock
from sim.lake.plan import LakeStatus, Plan, Request, decide, parse_until
from sim.lake.sink import MANIFEST_TABLE, DeltaSink, MonthWritten, plain_batch
from sim.lake.state import from_ipc, internal_dir
from sim.lake.status import lake_dir, lake_status, write_json
from sim.model.calendar import Period, horizon_periods
from sim.quality.corrupt import corrupt_month
from sim.scenario import Scenario

__all__ = ["append", "corrupting_batch", "run"]

log = logging.getLogger(__name__)


def run(
    scenario: Scenario,
    lake: str | Path = "./lake",
    *,
    months: int | None = None,
    overwrite: bool = False,
    runner: ShardRunner = local_runner,
    progress: Callable[[MonthWritten], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> RunState:
    """Simulate ``scenario`` month by month into ``lake``; a rerun of an interrupted run resumes it.

    A rerun of a finished run (same scenario and months) is complete: it writes nothing.

    Args:
        scenario: the validated scenario.
        lake: lake directory (created if missing).
        months: months to simulate (default: the scenario's horizon).
        overwrite: replace a lake that holds another or a finished run.
        runner: how shards are executed (see :mod:`sim.execute.parallel`).
        progress: called after each committed month.
        on_plan: called with the decision (taken under the lake's lock) before anything is written.

    Raises:
        StorageError: the lake holds a finished or different run and ``overwrite`` is False,
            or another process is writing it, or it cannot be read.
        InfeasibleTargetError: the scenario's targets cannot be met (nothing is written).
        ScenarioError: ``lake`` is, or is inside, a Delta table.
    """
    lake = lake_dir(lake)
    if months is not None and months < 1:
        raise ScenarioError(f"months: expected a positive number of months (got {months})")
    target = (months if months is not None else len(horizon_periods(scenario.calendar))) - 1
    request = Request("run", scenario, target=target)
    with lake_lock(lake, command="run"):
        status = lake_status(lake)
        plan = decide(status, request, mode="overwrite" if overwrite else "error")
        state = _carry_out(lake, plan, status, command="run", runner=runner, progress=progress, on_plan=on_plan)
    checkpoint("after the lock")  # tests: killed after the last commit, before the command reports
    return state


def append(
    lake: str | Path = "./lake",
    *,
    months: int | None = None,
    until: str | None = None,
    scenario: Scenario | None = None,
    runner: ShardRunner = local_runner,
    progress: Callable[[MonthWritten], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> RunState:
    """Continue the lake's population: ``months`` more months, or up to month ``until``.

    ``until`` (``YYYY-MM``, the last month the lake must hold) is safe to retry: when the lake holds
    it already, nothing is written. ``months`` (default 1) counts from the lake's last month, so a
    retry after success appends them again. With ``scenario`` the population carries on under the
    new parameters from the next month (production drift, month by month). A rerun of an
    interrupted append finishes it instead of adding ``months`` again.

    Raises:
        StorageError: no state to continue, another process is writing, ``until`` is before the
            lake's last month, or the lake cannot be read.
        ScenarioError: bad ``months``/``until``, a scenario that cannot continue the population, or
            ``lake`` is, or is inside, a Delta table.
    """
    lake = lake_dir(lake)
    if months is not None and until is not None:
        raise ScenarioError(f"--months and --until: expected one of them (got --months {months} and --until {until})")
    if months is not None and months < 1:
        raise ScenarioError(f"months: expected a positive number of months (got {months})")
    request = Request("append", scenario, months=months, until=None if until is None else parse_until(until))
    with lake_lock(lake, command="append"):
        status = lake_status(lake)
        plan = decide(status, request)
        state = _carry_out(lake, plan, status, command="append", runner=runner, progress=progress, on_plan=on_plan)
    checkpoint("after the lock")
    return state


def _carry_out(lake: Path, plan: Plan, status: LakeStatus, *, command: str, runner: ShardRunner,
               progress: Callable[[MonthWritten], None] | None, on_plan: Callable[[Plan], None] | None) -> RunState:
    """Write what ``plan`` says (with the lock held): record the intent, then the months."""
    if on_plan:
        on_plan(plan)
    if plan.action == "complete":
        log.info("%s already holds %s: nothing to write", lake, plan.until)
        return plan.state
    if plan.state is None:
        # Calibrating may refuse the targets: before anything is removed or written.
        state = initial_state(plan.scenario, plan.scales or solve_targets(plan.scenario))
        carry = history_carry = None
    else:
        state = plan.state
        carry = from_ipc((status.meta or {}).get("carry"))
        history_carry = from_ipc((status.meta or {}).get("history_carry"))
        if plan.action == "resume":
            log.info("finishing the interrupted command after %s (to %s)", state.period.label, plan.until)
    if plan.clear:
        for name in (*TABLES, MANIFEST_TABLE, "_churnsim/state", "_churnsim/intent.json", "_churnsim/scenario.json"):
            p = lake / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if command == "run":
        intent = {"command": "run", "target_period": plan.target, "scenario_digest": plan.scenario.digest(),
                  "calibration": asdict(state.scales), "until": plan.until}
    else:
        intent = {"command": "append", "target_period": plan.target, "scenario": plan.scenario.to_dict(),
                  "until": plan.until}
    write_json(internal_dir(lake) / "intent.json", intent)
    write_json(internal_dir(lake) / "scenario.json", plan.scenario.to_dict())
    sink = DeltaSink(lake, batch=corrupting_batch, carry=carry, history_carry=history_carry, progress=progress)
    corruption = plan.scenario.corruption
    # Workers that can write their shards' files write them (the coordinator only commits), unless
    # the month is corrupted: the defects are injected into whole tables on the coordinator.
    write_into = getattr(runner, "write_into", None)
    if write_into is None or corruption.rate > 0 or corruption.rates:
        return drive(state, plan.target, runner=runner, sink=sink)
    write_into(lake)
    try:
        return drive(state, plan.target, runner=runner, sink=sink)
    finally:
        write_into(None)


def corrupting_batch(before: RunState, period: Period, months: list[ShardMonth],
                     carry: pa.Table | None) -> tuple[dict[str, pa.Table], pa.Table | None]:
    """The month's tables, with the scenario's defects injected and recorded in ``quality_manifest``."""
    tables, carry = plain_batch(before, period, months, carry)
    corruption = before.scenario.corruption
    if corruption.rate > 0 or corruption.rates:
        tables, manifest, carry = corrupt_month(tables, period=period, seed=before.scenario.seed, rate=corruption.rate,
                                                rates=corruption.rates, carry=carry)
        tables = {**tables, MANIFEST_TABLE: manifest}
    return tables, carry
