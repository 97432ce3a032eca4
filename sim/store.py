"""The Delta lake: monthly commits, resume, append, exactly once.

Layout of a lake directory::

    raw_customers/ raw_transactions/ customer_labels/ daily_metrics/   the four tables (Delta)
    _churnsim/state/        engine state after the last finished month (Delta, overwritten monthly)
    _churnsim/scenario.json the scenario in force (ground truth for drift and A/B analysis)
    _churnsim/intent.json   what the current run/append set out to do (its last month)
    _churnsim/lock          the pid of the process writing the lake

Commit protocol (Delta has no multi-table transaction). For month ``k`` (1-based), each table is
committed with the application transaction ``("churnsim", k)``; before writing, the table's
``transaction_version("churnsim")`` is read and a table that already holds month ``k`` is skipped.
The state is committed last, with the same application transaction. A crash anywhere leaves the
state at month ``k - 1`` and some tables at ``k``: the rerun re-simulates month ``k`` from the state
(deterministically, the same bytes), skips the tables that have it and writes the others. So every
month lands in every table exactly once. The intent file makes a rerun of an interrupted
``append --months N`` end where the uninterrupted one would have.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from sim.calendar import Period, horizon_periods
from sim.customer import Agents
from sim.engine import Calibration, RunState, ShardRunner, initial_state, local_runner, step
from sim.errors import ScenarioError, StorageError
from sim.records import TABLES, month_tables
from sim.scenario import Scenario, scenario_from_dict

__all__ = ["STATE_FORMAT", "LakeStatus", "MonthWritten", "append", "lake_status", "optimize", "run"]

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


@dataclass
class LakeStatus:
    """What a lake holds, read without writing anything."""

    path: Path
    has_tables: bool
    state: RunState | None
    meta: dict[str, Any] | None
    intent: dict[str, Any] | None
    table_scenario_digest: str | None

    @property
    def finished(self) -> bool:
        if self.state is None or self.state.period is None:
            return False
        target = (self.intent or {}).get("target_period")
        return target is None or self.state.period.index >= target


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
        "calibration": asdict(state.calibration),
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
    return RunState(scenario=scenario, calibration=Calibration(**meta["calibration"]),
                    initial_size=meta["initial_size"], next_customer_id=meta["next_customer_id"],
                    next_transaction_id=meta["next_transaction_id"], period=period, shards=shards)


def _read_parquet_files(dt_: DeltaTable) -> pa.Table:
    import pyarrow.dataset as ds

    schema = pa.schema(dt_.schema().to_arrow())
    files = dt_.file_uris()
    return ds.dataset(files, format="parquet", schema=schema).to_table() if files else schema.empty_table()


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


def lake_status(lake: str | Path) -> LakeStatus:
    """Inspect a lake (read-only)."""
    lake = Path(lake)
    has_tables = any(DeltaTable.is_deltatable(str(lake / t)) for t in TABLES)
    state = meta = None
    state_path = _internal(lake) / "state"
    if DeltaTable.is_deltatable(str(state_path)):
        dt_ = DeltaTable(str(state_path))
        meta = json.loads(dt_.history(1)[0][_META_KEY])
        if meta.get("state_format") != STATE_FORMAT or not _compatible(meta.get("package_version", "")):
            state = None
        else:
            state = _state_from(_read_parquet_files(dt_), meta)
    digest = None
    for t in TABLES:
        if DeltaTable.is_deltatable(str(lake / t)):
            hist = DeltaTable(str(lake / t)).history()
            first = [h for h in hist if _META_KEY in h]
            if first:
                digest = json.loads(first[-1][_META_KEY]).get("scenario_digest")
            break
    return LakeStatus(lake, has_tables, state, meta, _read_json(_internal(lake) / "intent.json"), digest)


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def _lock(lake: Path) -> Iterator[None]:
    """One writer per lake. A lock left by a killed process (dead pid) is taken over."""
    path = _internal(lake) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()}:{os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = path.read_text().strip() if path.exists() else ""
            host, _, pid = holder.partition(":")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                log.warning("taking over the lock of dead process %s", pid)
                path.unlink(missing_ok=True)
                continue
            raise StorageError(f"{lake}: another churnsim process ({holder or 'unknown'}) is writing this lake; "
                               f"wait for it to finish (or remove {path} if it is gone)") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip() == me:
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
) -> RunState:
    """Simulate ``scenario`` month by month into ``lake``; a rerun of an interrupted run resumes it.

    Args:
        scenario: the validated scenario.
        lake: lake directory (created if missing).
        months: months to simulate (default: the scenario's horizon).
        overwrite: replace a lake that holds another or a finished run.
        runner: how shards are executed (see :mod:`sim.parallel`).
        progress: called after each committed month.

    Raises:
        StorageError: the lake holds a finished or different run and ``overwrite`` is False,
            or another process is writing it.
        InfeasibleTargetError: the scenario's targets cannot be met (nothing is written).
    """
    from sim.targets import calibrate

    lake = Path(lake)
    if months is not None and months < 1:
        raise ScenarioError(f"months: expected a positive number of months (got {months})")
    horizon = len(horizon_periods(scenario.calendar))
    target = (months if months is not None else horizon) - 1
    status = lake_status(lake)
    same = (status.meta or {}).get("scenario_digest", status.table_scenario_digest) == scenario.digest()
    resumable = (status.has_tables or status.state is not None) and same and (status.intent or {}).get("command") == "run"
    # A state of another format (or package version) reads as None: such a lake cannot be resumed.
    resumable = resumable and (status.meta is None or status.state is not None)
    if status.has_tables or status.state is not None:
        if overwrite:
            pass
        elif not resumable:
            raise StorageError(f"{lake}: holds a run of another scenario (or another package version); "
                               "pass --overwrite to replace it")
        elif status.finished:
            raise StorageError(f"{lake}: holds a finished run of this scenario (through "
                               f"{status.state.period.end}); use `churnsim append` to add months, "
                               "or --overwrite to replace it")
    resume = resumable and not overwrite
    if resume and status.state is not None:
        state = status.state
        target = status.intent["target_period"]
        log.info("resuming the interrupted run after %s", state.period.label if state.period else "start")
    elif resume and status.meta is None and status.intent:
        state = initial_state(scenario, Calibration(**status.intent["calibration"]))
        target = status.intent["target_period"]
    else:
        calibration = calibrate(scenario)  # may refuse the targets: before the lake is touched
        state = initial_state(scenario, calibration)
    with _lock(lake):
        if overwrite and not resume:
            for name in (*TABLES, MANIFEST_TABLE, "_churnsim/state", "_churnsim/intent.json", "_churnsim/scenario.json"):
                p = lake / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        _write_json(_internal(lake) / "scenario.json", scenario.to_dict())
        _write_json(_internal(lake) / "intent.json", {
            "command": "run", "target_period": target, "scenario_digest": scenario.digest(),
            "calibration": asdict(state.calibration)})
        carry = _from_ipc((status.meta or {}).get("carry")) if resume else None
        return _advance(lake, state, target, runner=runner, progress=progress, carry=carry)


def append(
    lake: str | Path = "./lake",
    *,
    months: int = 1,
    scenario: Scenario | None = None,
    runner: ShardRunner = local_runner,
    progress: Callable[[MonthWritten], None] | None = None,
) -> RunState:
    """Continue the lake's population for ``months`` more months.

    With ``scenario`` the population carries on under the new parameters from the next month
    (production drift, month by month). A rerun of an interrupted append finishes it instead of
    adding ``months`` again.
    """
    lake = Path(lake)
    if months < 1:
        raise ScenarioError(f"months: expected a positive number of months (got {months})")
    status = lake_status(lake)
    if status.meta is None:
        raise StorageError(f"{lake}: no churnsim state to append to; start with `churnsim run`")
    if status.state is None:
        raise StorageError(f"{lake}: made by churnsim {status.meta.get('package_version')} "
                           f"(state format {status.meta.get('state_format')}); this is {_package_version()}, "
                           "which cannot continue it")
    state = status.state
    intent = status.intent or {}
    unfinished = intent.get("command") == "append" and state.period.index < intent.get("target_period", -1)
    if unfinished:
        target = intent["target_period"]
        state = replace(state, scenario=scenario_from_dict(intent["scenario"], source="intent"))
        log.info("finishing the interrupted append (to month %d) before anything else", target + 1)
    else:
        target = state.period.index + months
        if scenario is not None:
            _check_continuable(state.scenario, scenario)
            state = replace(state, scenario=scenario)
    with _lock(lake):
        _write_json(_internal(lake) / "intent.json", {
            "command": "append", "target_period": target, "scenario": state.scenario.to_dict()})
        _write_json(_internal(lake) / "scenario.json", state.scenario.to_dict())
        return _advance(lake, state, target, runner=runner, progress=progress, carry=_from_ipc(status.meta.get("carry")))


def _check_continuable(old: Scenario, new: Scenario) -> None:
    for path, a, b in (("population.shard_size", old.population.shard_size, new.population.shard_size),
                       ("calendar.start_date", old.calendar.start_date, new.calendar.start_date)):
        if a != b:
            raise ScenarioError(f"append --scenario: {path}: expected {a} (the lake's value; a population "
                                f"cannot change it mid-run) (got {b})")


# --------------------------------------------------------------------------- maintenance


def _files(path: Path) -> tuple[int, int]:
    dt_ = DeltaTable(str(path))
    uris = dt_.file_uris()
    return len(uris), sum(os.path.getsize(u.removeprefix("file://")) for u in uris)


def optimize(lake: str | Path = "./lake", *, retention_hours: int = 168) -> dict[str, dict[str, int]]:
    """Compact small files (z-order transactions by customer), checkpoint, vacuum old files.

    Returns files and bytes per table before and after.
    """
    lake = Path(lake)
    out: dict[str, dict[str, int]] = {}
    with _lock(lake):
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
