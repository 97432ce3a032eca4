"""What a `run` or `append` will do to a lake: start, resume, extend, or nothing (or refuse).

:func:`decide` is one pure function of what the lake holds (a :class:`LakeStatus`, read under the
lake's lock) and what the command asks for (a :class:`Request`). It reads and writes nothing, so
the writer (:mod:`sim.execute.runs`) calls it with the lock held and every branch is testable without a
lake. Targets are absolute (the last month the lake must hold), so a command retried after it
finished finds nothing to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from sim.engine.state import RunState
from sim.errors import ScenarioError, StorageError
from sim.model.rates import TargetScales
from sim.scenario import Scenario, scenario_from_dict

__all__ = ["LakeStatus", "Plan", "Request", "decide", "parse_until"]

Action = Literal["start", "resume", "extend", "complete"]


@dataclass
class LakeStatus:
    """What a lake holds, read without writing anything."""

    path: Path
    has_tables: bool
    state: RunState | None
    meta: dict[str, Any] | None
    intent: dict[str, Any] | None
    table_scenario_digest: str | None
    damaged: str | None = None
    """One line naming a file that cannot be read and what to do about it."""
    incompatible: str | None = None
    """Why a state made by another package version cannot be continued (``state`` is then None)."""

    @property
    def finished(self) -> bool:
        if self.state is None or self.state.period is None:
            return False
        target = (self.intent or {}).get("target_period")
        return target is None or self.state.period.index >= target


@dataclass(frozen=True)
class Request:
    """What a command asks of a lake."""

    command: Literal["run", "append"]
    scenario: Scenario | None = None
    """run: the scenario; append: new parameters from the next month (None: carry on)."""
    target: int | None = None
    """run: the index (0-based) of the last month to simulate."""
    months: int | None = None
    """append: this many months more (relative: a retry after success appends them again)."""
    until: str | None = None
    """append: the last month the lake must hold, ``YYYY-MM`` (absolute: safe to retry)."""


@dataclass(frozen=True)
class Plan:
    """The decision: what to write, from where, up to which month."""

    action: Action
    scenario: Scenario
    target: int
    """Index (0-based) of the last month the lake will hold."""
    until: str
    """That month, ``YYYY-MM``: the retry-safe ``append --until`` for this plan."""
    state: RunState | None = None
    """Continue from this state; None: from the initial state (``complete``: the lake's state)."""
    scales: TargetScales | None = None
    """For a start: the target scales already recorded (None: solve them)."""
    clear: bool = False
    """Remove what the lake holds first (``--overwrite``)."""


_UNTIL = re.compile(r"(\d{4})-(\d{2})")


def parse_until(text: str) -> str:
    """Check an ``--until`` month (``YYYY-MM``) and return it."""
    m = _UNTIL.fullmatch(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ScenarioError(f"--until: expected a month as YYYY-MM, e.g. 2024-06 (got {text!r})")
    return m.group(0)


def _probe(s: Scenario) -> RunState:
    """A state before the first month, to walk the calendar with (no customers)."""
    return RunState(scenario=s, scales=TargetScales(), initial_size=0, next_customer_id=1, next_transaction_id=1)


def _period_label(state: RunState, index: int) -> str:
    """The label of month ``index``, walking on from ``state`` as the engine will."""
    while state.period is None or state.period.index < index:
        state = replace(state, period=state.next_period())
    return state.period.label


def _until_index(state: RunState, until: str) -> int:
    """Index of the last month labelled ``until`` or earlier, walking on from ``state``."""
    while True:
        nxt = state.next_period()
        if nxt.label > until:
            return state.period.index
        state = replace(state, period=nxt)


def decide(status: LakeStatus, request: Request, *, mode: Literal["error", "overwrite"] = "error") -> Plan:
    """Start, resume, extend or do nothing, for ``request`` on a lake in ``status``; or refuse.

    Raises:
        StorageError: the lake holds something the request must not touch (or cannot be read).
        ScenarioError: the request itself is malformed (e.g. an append scenario that cannot continue).
    """
    if request.command == "run":
        return _decide_run(status, request, mode)
    if mode != "error":
        raise ValueError(f"mode: {request.command} has no {mode!r} mode")
    return _decide_append(status, request)


def _decide_run(status: LakeStatus, req: Request, mode: str) -> Plan:
    s, want = req.scenario, req.target
    assert s is not None and want is not None
    lake = status.path
    until = _period_label(_probe(s), want)
    if mode == "overwrite":
        return Plan("start", s, want, until, clear=True)
    if status.damaged:
        raise StorageError(status.damaged)
    if not status.has_tables and status.meta is None:
        return Plan("start", s, want, until)  # an intent alone: nothing was written under it
    if status.incompatible:
        raise StorageError(f"{lake}: {status.incompatible}; pass --overwrite to replace it")
    intent = status.intent or {}
    command = intent.get("command")
    digests = {status.table_scenario_digest, (status.meta or {}).get("scenario_digest"),
               intent.get("scenario_digest") if command == "run" else None} - {None}
    if digests != {s.digest()}:
        theirs = ", ".join(sorted(digests - {s.digest()}))
        raise StorageError(f"{lake}: holds a run of another scenario (digest {theirs}; this one is {s.digest()}); "
                           "pass --overwrite to replace it")
    state = status.state
    at = state.period.index if state is not None else None
    if command == "run":
        goal = intent["target_period"]
        if goal == want:
            if at == want:
                return Plan("complete", s, want, until, state=state)
            scales = TargetScales(**intent["calibration"]) if state is None and "calibration" in intent else None
            return Plan("resume", s, want, until, state=state, scales=scales)
        if at == goal:
            raise StorageError(f"{lake}: holds a finished run of this scenario (through {state.period.end}); "
                               "use `churnsim append` to add months, or --overwrite to replace it")
        raise StorageError(f"{lake}: holds an interrupted run of this scenario heading for "
                           f"{_period_label(_probe(s), goal)} ({goal + 1} months, not {want + 1}); rerun it with "
                           f"--months {goal + 1} to finish it, or --overwrite to replace it")
    if command == "append":
        end = state.period.end if state is not None else "?"
        raise StorageError(f"{lake}: holds this scenario through {end}, appended to; use `churnsim append` "
                           "to continue it, or --overwrite to replace it")
    # No record of the command that made the lake (intent.json deleted): only its state says how far it got.
    if at == want:
        return Plan("complete", s, want, until, state=state)
    through = f"through {state.period.label}" if state is not None else "part of its first month"
    raise StorageError(f"{lake}: holds this scenario ({through}) and no record of the run that made it "
                       "(_churnsim/intent.json); continue it with `churnsim append --until YYYY-MM`, "
                       "or pass --overwrite to replace it")


def _decide_append(status: LakeStatus, req: Request) -> Plan:
    lake = status.path
    if status.damaged:
        raise StorageError(status.damaged)
    if status.meta is None:
        raise StorageError(f"{lake}: no churnsim state to append to; start with `churnsim run`")
    if status.incompatible or status.state is None:
        raise StorageError(f"{lake}: {status.incompatible}")
    state = status.state
    at = state.period.index
    intent = status.intent or {}
    pending = intent.get("command") == "append" and at < intent["target_period"]
    pending_scenario = scenario_from_dict(intent["scenario"], source="intent") if pending else None
    if req.scenario is not None:
        _check_continuable(state.scenario, req.scenario)
        if pending_scenario is not None and req.scenario.digest() != pending_scenario.digest():
            label = _period_label(replace(state, scenario=pending_scenario), intent["target_period"])
            raise StorageError(f"{lake}: an interrupted append under scenario {pending_scenario.name!r} is heading "
                               f"for {label}; finish it first (`churnsim append --lake {lake} --until {label}`)")
    scenario = req.scenario or pending_scenario or state.scenario
    walker = replace(state, scenario=scenario)
    if req.until is not None:
        if req.until < state.period.label:
            raise StorageError(f"{lake}: --until {req.until} is before the lake's last month, {state.period.label}; "
                               "an append cannot remove months")
        target = _until_index(walker, req.until)
    elif pending:
        target = intent["target_period"]
    else:
        target = at + (req.months or 1)
    until = _period_label(walker, target)
    if target <= at:
        return Plan("complete", scenario, at, state.period.label, state=state)
    return Plan("resume" if pending else "extend", scenario, target, until, state=walker)


def _check_continuable(old: Scenario, new: Scenario) -> None:
    for path, a, b in (("population.shard_size", old.population.shard_size, new.population.shard_size),
                       ("calendar.start_date", old.calendar.start_date, new.calendar.start_date)):
        if a != b:
            raise ScenarioError(f"append --scenario: {path}: expected {a} (the lake's value; a population "
                                f"cannot change it mid-run) (got {b})")
