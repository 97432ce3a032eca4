"""The Delta lake: monthly commits, resume, append, exactly once.

Layout of a lake directory::

    raw_customers/ raw_transactions/ customer_labels/ daily_metrics/   the four tables (Delta)
    _churnsim/state/        engine state after the last finished month (Delta, overwritten monthly)
    _churnsim/scenario.json the scenario in force (ground truth for drift and A/B analysis)
    _churnsim/intent.json   what the current run/append set out to do (its last month)
    _churnsim/lock          flock'd by the process writing the lake (see :mod:`sim.lock`)

Commit protocol (Delta has no multi-table transaction). For month ``k`` (1-based), each table is
committed with the application transaction ``("churnsim", k)``; before writing, the table's
``transaction_version("churnsim")`` is read and a table that already holds month ``k`` is skipped.
The state is committed last, with the same application transaction. A crash anywhere leaves the
state at month ``k - 1`` and some tables at ``k``: the rerun re-simulates month ``k`` from the state
(deterministically, the same bytes), skips the tables that have it and writes the others. So every
month lands in every table exactly once. The intent file makes a rerun of an interrupted
``append --months N`` end where the uninterrupted one would have.

Every command takes the lake's lock first, then reads the lake's status and decides what to do
(:func:`sim.plan.decide`) with the lock held, so two commands never act on one status.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError

from sim.batch.tables import TABLES, month_tables
from sim.engine.state import RunState, initial_state
from sim.engine.step import ShardRunner, local_runner, step
from sim.errors import ScenarioError
from sim.lake.lock import lake_lock
from sim.lake.plan import LakeStatus, Plan, Request, decide, parse_until
from sim.lake.read import read_delta
from sim.model.agents import Agents
from sim.model.calendar import Period, horizon_periods
from sim.model.rates import TargetScales
from sim.scenario import Scenario, scenario_from_dict

__all__ = ["STATE_FORMAT", "LakeStatus", "MonthWritten", "Plan", "append", "lake_status", "optimize", "run"]

log = logging.getLogger(__name__)

APP_ID = "churnsim"
MANIFEST_TABLE = "quality_manifest"
# A lake of another format is refused before a month is written. 2: customer_labels carries
# experiment_arms (a map), not experiment_arm; a month of the new schema cannot join a format-1 table.
STATE_FORMAT = 2
_META_KEY = "churnsim"


def _package_version() -> str:
    from sim import __version__

    return __version__


def _compatible(version: str) -> bool:
    return version.split(".")[:2] == _package_version().split(".")[:2]


@dataclass
class MonthWritten:
    """What one month put in the lake (passed to the progress callback)."""

    period: Period
    rows: dict[str, int]
    skipped: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- fault injection

_points = 0


def _checkpoint(point: str) -> None:
    """Die here if ``CHURNSIM_DIE_AT`` says so (tests kill the writer at every point)."""
    global _points
    _points += 1
    die_at = os.environ.get("CHURNSIM_DIE_AT")
    if die_at and int(die_at) == _points:
        log.error("CHURNSIM_DIE_AT=%s: dying at %s", die_at, point)
        os._exit(137)


# --------------------------------------------------------------------------- state (de)serialisation


def _state_table(state: RunState) -> pa.Table:
    parts = []
    for shard, agents in sorted(state.shards.items()):
        cols = agents.columns()
        cols["flags"] = cols["flags"].view(np.int64)  # Delta has no unsigned integers
        t = pa.table({"shard": np.full(len(agents), shard, np.int32), **cols})
        parts.append(t)
    return pa.concat_tables(parts) if parts else pa.table({"shard": pa.array([], pa.int32())})


def _meta(state: RunState) -> dict[str, Any]:
    p = state.period
    return {
        "state_format": STATE_FORMAT,
        "package_version": _package_version(),
        "scenario": state.scenario.to_dict(),
        "scenario_digest": state.scenario.digest(),
        "seed": state.scenario.seed,
        "calibration": asdict(state.scales),
        "initial_size": state.initial_size,
        "next_customer_id": state.next_customer_id,
        "next_transaction_id": state.next_transaction_id,
        "period": None if p is None else {"index": p.index, "start": p.start.isoformat(), "end": p.end.isoformat()},
        "shards": sorted(state.shards),
    }


def _state_from(table: pa.Table, meta: dict[str, Any]) -> RunState:
    scenario = scenario_from_dict(meta["scenario"], source="lake state")
    shards: dict[int, Agents] = {k: Agents.empty() for k in meta["shards"]}
    if table.num_rows:
        shard_col = table.column("shard").to_numpy()
        cols = {name: table.column(name).to_numpy() for name in table.column_names if name != "shard"}
        cols["flags"] = cols["flags"].astype(np.int64).view(np.uint64)
        order = np.argsort(shard_col, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_col[order])) + 1
        for chunk in np.split(order, bounds):
            shards[int(shard_col[chunk[0]])] = Agents.from_columns({k: v[chunk] for k, v in cols.items()})
    p = meta["period"]
    period = None if p is None else Period(p["index"], dt.date.fromisoformat(p["start"]), dt.date.fromisoformat(p["end"]))
    return RunState(scenario=scenario, scales=TargetScales(**meta["calibration"]),
                    initial_size=meta["initial_size"], next_customer_id=meta["next_customer_id"],
                    next_transaction_id=meta["next_transaction_id"], period=period, shards=shards)


# --------------------------------------------------------------------------- reading a lake


def _internal(lake: Path) -> Path:
    return lake / "_churnsim"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    """Atomic: a reader sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# What reading a damaged file or Delta log can raise: JSON and Arrow errors are ValueErrors.
_UNREADABLE = (DeltaError, OSError, ValueError, KeyError, TypeError, pa.ArrowException)


def _read_intent(path: Path) -> dict[str, Any] | None:
    intent = _read_json(path)
    if intent is not None and not (isinstance(intent, dict) and intent.get("command") in ("run", "append")
                                   and isinstance(intent.get("target_period"), int)
                                   and (intent["command"] == "run" or isinstance(intent.get("scenario"), dict))):
        raise ValueError("not a churnsim intent (expected command, target_period and, for append, scenario)")
    return intent


def lake_status(lake: str | Path) -> LakeStatus:
    """Inspect a lake (read-only). A file that cannot be read is reported in ``damaged``, not raised."""
    lake = Path(lake)
    damaged: list[str] = []
    intent_path = _internal(lake) / "intent.json"
    try:
        intent = _read_intent(intent_path)
    except _UNREADABLE as exc:
        intent = None
        damaged.append(f"{intent_path}: unreadable ({_first_line(exc)}); it records what the last run or append "
                       "set out to do: restore it, or delete it and continue with `churnsim append --until YYYY-MM`, "
                       "or rerun `churnsim run` with --overwrite")
    state = meta = None
    incompatible = None
    state_path = _internal(lake) / "state"
    try:
        if DeltaTable.is_deltatable(str(state_path)):
            dt_ = DeltaTable(str(state_path))
            meta = json.loads(dt_.history(1)[0][_META_KEY])
            if meta.get("state_format") != STATE_FORMAT or not _compatible(meta.get("package_version", "")):
                incompatible = (f"made by churnsim {meta.get('package_version')} (state format "
                                f"{meta.get('state_format')}); this is {_package_version()}, which cannot continue it")
            else:
                state = _state_from(read_delta(dt_), meta)
    except _UNREADABLE as exc:
        state = meta = None
        damaged.append(f"{state_path}: unreadable ({_first_line(exc)}); the lake cannot be continued without it: "
                       "restore it, or rerun `churnsim run` with --overwrite to make the lake again")
    has_tables = False
    digest = None
    for t in TABLES:
        try:
            if not DeltaTable.is_deltatable(str(lake / t)):
                continue
            has_tables = True
            if digest is None:
                first = [h for h in DeltaTable(str(lake / t)).history() if _META_KEY in h]
                if first:
                    digest = json.loads(first[-1][_META_KEY]).get("scenario_digest")
        except _UNREADABLE as exc:
            has_tables = True
            damaged.append(f"{lake / t}: unreadable ({_first_line(exc)}); restore it, or rerun `churnsim run` "
                           "with --overwrite to make the lake again")
    return LakeStatus(lake, has_tables, state, meta, intent, digest,
                      damaged=damaged[0] if damaged else None, incompatible=incompatible)


def _lake_dir(lake: str | Path) -> Path:
    """``lake``, refused (before anything is written) when it is, or is inside, a Delta table."""
    lake = Path(lake)
    resolved = lake.resolve()
    for p in (resolved, *resolved.parents):
        if (p / "_delta_log").is_dir():
            where = "is the Delta table" if p == resolved else "is inside the Delta table"
            parent = p.parent.parent if p.parent.name == "_churnsim" else p.parent
            raise ScenarioError(f"{lake}: expected a lake directory (the one that holds the tables); it {where} {p} "
                                f"(did you mean {parent}?)")
    return lake


# --------------------------------------------------------------------------- writing months


def _ipc(table: pa.Table | None) -> str | None:
    if table is None:
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


def _from_ipc(text: str | None) -> pa.Table | None:
    return None if text is None else pa.ipc.open_stream(base64.b64decode(text)).read_all()


def _commit_month(lake: Path, before: RunState, after: RunState, period: Period, months: list,
                  *, carry: pa.Table | None) -> tuple[MonthWritten, pa.Table | None]:
    month_no = period.index + 1
    tables = month_tables(before, period, months)
    corruption = after.scenario.corruption
    extra: dict[str, pa.Table] = {}
    if corruption.rate > 0 or corruption.rates:
        from sim.quality import corrupt_month

        tables, manifest, carry = corrupt_month(
            tables, period=period, seed=after.scenario.seed, rate=corruption.rate,
            rates=corruption.rates, carry=carry)
        extra[MANIFEST_TABLE] = manifest
    meta_common = {"scenario_digest": after.scenario.digest(), "seed": after.scenario.seed,
                   "package_version": _package_version(), "month": period.label, "period_index": period.index}
    written = MonthWritten(period, {})
    tables = {**tables, **extra}
    for name in (*TABLES, *extra):
        path = str(lake / name)
        if DeltaTable.is_deltatable(path) and (DeltaTable(path).transaction_version(APP_ID) or 0) >= month_no:
            written.skipped.append(name)
            continue
        _checkpoint(f"before {name} {period.label}")
        write_deltalake(path, tables[name], mode="append", commit_properties=CommitProperties(
            custom_metadata={_META_KEY: json.dumps(meta_common)},
            app_transactions=[Transaction(APP_ID, month_no)]))
        written.rows[name] = tables[name].num_rows
        _checkpoint(f"after {name} {period.label}")
    state_path = str(_internal(lake) / "state")
    meta = {**_meta(after), "carry": _ipc(carry)}
    write_deltalake(state_path, _state_table(after), mode="overwrite", schema_mode="overwrite",
                    commit_properties=CommitProperties(custom_metadata={_META_KEY: json.dumps(meta)},
                                                       app_transactions=[Transaction(APP_ID, month_no)]))
    _checkpoint(f"after state {period.label}")
    return written, carry


def _advance(lake: Path, state: RunState, target: int, *, runner: ShardRunner,
             progress: Callable[[MonthWritten], None] | None, carry: pa.Table | None = None) -> RunState:
    def commit(before: RunState, after: RunState, period: Period, months: list, carry: pa.Table | None):
        written, carry = _commit_month(lake, before, after, period, months, carry=carry)
        log.info("month %s committed (%s)", period.label, ", ".join(f"{k}={v}" for k, v in written.rows.items()))
        if progress:
            progress(written)
        return carry

    # Month k is committed in a writer thread while month k+1 is simulated (Delta writes release
    # the GIL). Commits stay strictly in order, one month in flight: the protocol is unchanged.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="churnsim-commit") as writer:
        pending: Future | None = None
        while state.period is None or state.period.index < target:
            after, period, months = step(state, runner=runner)
            if pending is not None:
                carry = pending.result()
            pending = writer.submit(commit, state, after, period, months, carry)
            state = after
        if pending is not None:
            pending.result()
    return state


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
        runner: how shards are executed (see :mod:`sim.parallel`).
        progress: called after each committed month.
        on_plan: called with the decision (taken under the lake's lock) before anything is written.

    Raises:
        StorageError: the lake holds a finished or different run and ``overwrite`` is False,
            or another process is writing it, or it cannot be read.
        InfeasibleTargetError: the scenario's targets cannot be met (nothing is written).
        ScenarioError: ``lake`` is, or is inside, a Delta table.
    """
    lake = _lake_dir(lake)
    if months is not None and months < 1:
        raise ScenarioError(f"months: expected a positive number of months (got {months})")
    target = (months if months is not None else len(horizon_periods(scenario.calendar))) - 1
    request = Request("run", scenario, target=target)
    with lake_lock(lake, command="run"):
        status = lake_status(lake)
        plan = decide(status, request, mode="overwrite" if overwrite else "error")
        state = _carry_out(lake, plan, status, command="run", runner=runner, progress=progress, on_plan=on_plan)
    _checkpoint("after the lock")  # tests: killed after the last commit, before the command reports
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
    lake = _lake_dir(lake)
    if months is not None and until is not None:
        raise ScenarioError(f"--months and --until: expected one of them (got --months {months} and --until {until})")
    if months is not None and months < 1:
        raise ScenarioError(f"months: expected a positive number of months (got {months})")
    request = Request("append", scenario, months=months, until=None if until is None else parse_until(until))
    with lake_lock(lake, command="append"):
        status = lake_status(lake)
        plan = decide(status, request)
        state = _carry_out(lake, plan, status, command="append", runner=runner, progress=progress, on_plan=on_plan)
    _checkpoint("after the lock")
    return state


def _carry_out(lake: Path, plan: Plan, status: LakeStatus, *, command: str, runner: ShardRunner,
               progress: Callable[[MonthWritten], None] | None, on_plan: Callable[[Plan], None] | None) -> RunState:
    """Write what ``plan`` says (with the lock held): record the intent, then the months."""
    from sim.execute.targets import solve_targets

    if on_plan:
        on_plan(plan)
    if plan.action == "complete":
        log.info("%s already holds %s: nothing to write", lake, plan.until)
        return plan.state
    if plan.state is None:
        # Calibrating may refuse the targets: before anything is removed or written.
        state = initial_state(plan.scenario, plan.scales or solve_targets(plan.scenario))
        carry = None
    else:
        state = plan.state
        carry = _from_ipc((status.meta or {}).get("carry"))
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
    _write_json(_internal(lake) / "intent.json", intent)
    _write_json(_internal(lake) / "scenario.json", plan.scenario.to_dict())
    return _advance(lake, state, plan.target, runner=runner, progress=progress, carry=carry)


# --------------------------------------------------------------------------- maintenance


def _files(path: Path) -> tuple[int, int]:
    dt_ = DeltaTable(str(path))
    uris = dt_.file_uris()
    return len(uris), sum(os.path.getsize(u.removeprefix("file://")) for u in uris)


def optimize(lake: str | Path = "./lake", *, retention_hours: int = 168) -> dict[str, dict[str, int]]:
    """Compact small files (z-order transactions by customer), checkpoint, vacuum old files.

    Returns files and bytes per table before and after.
    """
    lake = _lake_dir(lake)
    out: dict[str, dict[str, int]] = {}
    with lake_lock(lake, command="optimize"):
        for name in TABLES:
            path = lake / name
            if not DeltaTable.is_deltatable(str(path)):
                continue
            files0, bytes0 = _files(path)
            dt_ = DeltaTable(str(path))
            # Maintenance commits keep the month's app transaction, so exactly-once checks still hold.
            if name == "raw_transactions":
                dt_.optimize.z_order(["customer_id"])
            else:
                dt_.optimize.compact()
            dt_ = DeltaTable(str(path))
            dt_.create_checkpoint()
            dt_.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=retention_hours >= 168)
            files1, bytes1 = _files(path)
            out[name] = {"files_before": files0, "bytes_before": bytes0, "files_after": files1, "bytes_after": bytes1}
    return out
