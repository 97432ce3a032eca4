"""The Delta sink: each month committed to the lake exactly once, engine state last.

Layout of a lake directory::

    raw_customers/ raw_transactions/ customer_labels/ daily_metrics/ customer_history/   the tables (Delta)
    _churnsim/state/        engine state after the last finished month (Delta, one file per shard, overwritten monthly)
    _churnsim/staging/      purchases between a month's two phases (stateless workers; see sim.lake.staging)
    _churnsim/scenario.json the scenario in force (ground truth for drift and A/B analysis)
    _churnsim/intent.json   what the current run/append set out to do (its last month)
    _churnsim/lock          flock'd by the process writing the lake (see :mod:`sim.lake.lock`)

Commit protocol (Delta has no multi-table transaction). For month ``k`` (1-based), each table is
committed with the application transaction ``("churnsim", k)``; before writing, the table's
``transaction_version("churnsim")`` is read and a table that already holds month ``k`` is skipped.
The state is committed last, with the same application transaction. A crash anywhere leaves the
state at month ``k - 1`` and some tables at ``k``: the rerun re-simulates month ``k`` from the state
(deterministically, the same bytes), skips the tables that have it and writes the others. So every
month lands in every table exactly once. The intent file makes a rerun of an interrupted
``append --months N`` end where the uninterrupted one would have.

Every command takes the lake's lock first, then reads the lake's status and decides what to do
(:func:`sim.lake.plan.decide`) with the lock held, so two commands never act on one status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction

from sim.batch.tables import (
    SCHEMAS,
    TABLES,
    customers_table,
    deliver_history,
    history_table,
    labels_table,
    metrics_table,
    month_tables,
    recorded_late,
    shard_transactions,
)
from sim.engine.state import RunState, ShardMonth, StoredShard, shard_agents
from sim.lake.faults import checkpoint, worker_checkpoint
from sim.lake.files import DataFile, commit_files, part_name, write_part
from sim.lake.state import (
    APP_ID,
    META_KEY,
    STATE_FILES_KEY,
    internal_dir,
    package_version,
    read_state_file,
    shard_state_table,
    state_meta,
    state_schema,
    to_ipc,
)
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period
from sim.model.changes import history_recorded
from sim.scenario import Scenario

__all__ = ["MANIFEST_TABLE", "Batcher", "DeltaSink", "MonthWritten", "Part", "commit_month", "month_done",
           "plain_batch", "stored_state", "write_shard_files", "write_shard_transactions", "write_state_files"]

log = logging.getLogger(__name__)

MANIFEST_TABLE = "quality_manifest"

# The month's tables from its shard arrays, and what a batch carries to the next one (late arrivals).
# A table's month: rows to write here, or files written elsewhere (a worker) with their schema.
Part = pa.Table | tuple[pa.Schema, list[DataFile]]
Batcher = Callable[[RunState, Period, list[ShardMonth], pa.Table | None], tuple[dict[str, pa.Table], pa.Table | None]]


def plain_batch(before: RunState, period: Period, months: list[ShardMonth],
                carry: pa.Table | None) -> tuple[dict[str, pa.Table], pa.Table | None]:
    """The month's tables as the engine made them."""
    return month_tables(before, period, months), carry


@dataclass
class MonthWritten:
    """What one month put in the lake (passed to the progress callback)."""

    period: Period
    rows: dict[str, int]
    skipped: list[str] = field(default_factory=list)


class DeltaSink:
    """Commits each month the loop hands it (:class:`sim.execute.drive.Sink`).

    ``batch`` turns a month's shard arrays into its tables (corruption plugs in here); ``carry`` is
    what the previous batch held back, restored from the lake's state on a resume.
    """

    def __init__(self, lake: Path, *, batch: Batcher = plain_batch, carry: pa.Table | None = None,
                 history_carry: pa.Table | None = None, progress: Callable[[MonthWritten], None] | None = None) -> None:
        self.lake, self.batch, self.carry, self.progress = lake, batch, carry, progress
        # customer_history rows recorded after the last batch's month end: delivered by a later one.
        self.history_carry = history_carry
        self._opened: dict[str, DeltaTable] = {}  # tables kept open across months (this sink is the only writer)

    def write(self, before: RunState, after: RunState, period: Period, months: list[ShardMonth]) -> None:
        if months and all(m.files for m in months):
            # The workers wrote their shards' parts of every row table (a plain batch: the runner
            # writes only when nothing corrupts the month); daily metrics are the shards' partials summed.
            tables: dict[str, Part] = {name: (SCHEMAS[name], [_file(m, name) for m in months if name in m.files])
                                       for name in ("raw_customers", "raw_transactions", "customer_labels")}
            tables["daily_metrics"] = metrics_table(period, months)
            if history_recorded():  # (not in the benchmark's baseline without the history)
                tables["customer_history"] = self._history_files(before, period, months)
            state_files = {m.shard: _file(m, "state") for m in months}
        else:
            tables, self.carry = self.batch(before, period, months, self.carry)
            if "customer_history" in tables:
                tables["customer_history"], self.history_carry = deliver_history(tables["customer_history"],
                                                                                 self.history_carry, period)
            state_files = None
        written = commit_month(self.lake, after, period, tables, carry=self.carry, state_files=state_files,
                               history_carry=self.history_carry, opened=self._opened)
        log.info("month %s committed (%s)", period.label, ", ".join(f"{k}={v}" for k, v in written.rows.items()))
        if self.progress:
            self.progress(written)


    def _history_files(self, before: RunState, period: Period, months: list[ShardMonth]) -> Part:
        """The workers' on-time history files, plus one here for late rows this batch delivers."""
        held = history_table(before.scenario.seed, [m.history for m in months])  # what the workers held back
        due, self.history_carry = deliver_history(held, self.history_carry, period)
        files = [_file(m, "customer_history") for m in months if "customer_history" in m.files]
        if due.num_rows:  # (a table that holds the month already skips its commit: this file is then in none)
            files.append(write_part(self.lake / "customer_history", due,
                                    name=part_name(month=period.index + 1, shard=None, kind="customer_history")))
        return SCHEMAS["customer_history"], files


def _file(month: ShardMonth, name: str) -> DataFile:
    f = month.files[name]
    assert isinstance(f, DataFile)
    return f


def write_shard_files(lake: Path, scenario: Scenario, period: Period, agents: Agents, month: ShardMonth) -> ShardMonth:
    """Write one shard's customers, labels, on-time history and new state into the lake (in the shard's worker).

    Returns the month with those arrays replaced by the files' metadata; nothing is committed
    (the coordinator commits every shard's files in one commit per table). An empty part writes
    no file.
    """
    month_no = period.index + 1
    files: dict[str, object] = {}
    # The shard's on-time changes go in its file; those recorded later go back to the coordinator,
    # which delivers them with a later batch (sim.batch.tables.deliver_history).
    customers = customers_table(scenario.seed, [month])
    parts = [("raw_customers", customers), ("customer_labels", labels_table(scenario, [month]))]
    late = np.zeros(0, bool)
    if month.history:  # (none in the benchmark's baseline without the history)
        late = recorded_late(month.history["recorded_us"], period)
        parts.append(("customer_history", history_table(scenario.seed, [{k: v[~late] for k, v in month.history.items()}],
                                                        customers=customers)))
    for name, rows in parts:
        if rows.num_rows:
            files[name] = write_part(lake / name, rows, name=part_name(month=month_no, shard=month.shard, kind=name))
    files["state"] = write_part(internal_dir(lake) / "state", shard_state_table(month.shard, agents),
                                name=part_name(month=month_no, shard=month.shard, kind="state"))
    worker_checkpoint(f"after shard {month.shard} files {period.label}")
    return replace(month, new_customers={}, labels={}, history={k: v[late] for k, v in month.history.items()},
                   files=files)


def stored_state(lake: Path, month: ShardMonth) -> StoredShard:
    """Where :func:`write_shard_files` left the shard's new state: what its worker returns instead."""
    return StoredShard(month.shard, str(internal_dir(lake) / "state" / _file(month, "state").path), read_state_file)


def write_shard_transactions(lake: Path, period: Period, shard: int, purchases: Purchases,
                             days: tuple[np.ndarray, np.ndarray], firsts: np.ndarray) -> DataFile | None:
    """Write one shard's raw_transactions part (in the shard's worker), not committed.

    ``purchases`` in time order (:func:`sim.batch.tables.in_time_order`), ``days`` their per-day
    counts, ``firsts`` each day's first id as the coordinator assigned it
    (:func:`sim.batch.tables.first_ids`). None when the shard bought nothing.
    """
    if not len(purchases.t):
        return None
    rows = shard_transactions(purchases, days, firsts)
    f = write_part(lake / "raw_transactions", rows, name=part_name(month=period.index + 1, shard=shard, kind="raw_transactions"))
    worker_checkpoint(f"after shard {shard} transactions {period.label}")
    return f


def month_done(lake: Path, name: str, month_no: int) -> bool:
    """Whether table ``name`` already holds month ``month_no`` (1-based): its commit is skipped."""
    return _done(_load(lake / name), month_no)


def _load(path: Path) -> DeltaTable | None:
    return DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None


def _current(lake: Path, name: str, opened: dict[str, DeltaTable] | None) -> DeltaTable | None:
    """Table ``name`` as of its latest commit: loaded, or (kept open in ``opened``) brought up to date,
    which reads only the commits since (a load reads the whole log, ~10 ms a table a month)."""
    if opened is None:
        return _load(lake / name)
    table = opened.get(name)
    if table is None:
        table = _load(lake / name)
        if table is not None:
            opened[name] = table
    else:
        table.update_incremental()
    return table


def _done(table: DeltaTable | None, month_no: int) -> bool:
    return table is not None and (table.transaction_version(APP_ID) or 0) >= month_no


def write_state_files(lake: Path, state: RunState, *, shards: list[int] | None = None) -> dict[int, DataFile]:
    """Write each shard's state (``shards``, default all) as its own file of the state table."""
    month_no = state.period.index + 1 if state.period is not None else 0
    where = internal_dir(lake) / "state"
    return {k: write_part(where, shard_state_table(k, shard_agents(state.shards[k])),
                          name=part_name(month=month_no, shard=k, kind="state"))
            for k in (sorted(state.shards) if shards is None else shards)}


def commit_month(lake: Path, after: RunState, period: Period, tables: dict[str, Part], *,
                 carry: pa.Table | None, state_files: dict[int, DataFile] | None = None,
                 history_carry: pa.Table | None = None, opened: dict[str, DeltaTable] | None = None) -> MonthWritten:
    """Commit one month's tables (the five, then any others), each once, then the state ``after``.

    A table given as rows is written here, just before its commit; one given as files (written
    by a worker) is only committed. A table that already holds the month is skipped, and so are
    its files: no commit references them (vacuum removes them). ``state_files`` are the shards'
    state files the workers wrote; missing shards are written here from ``after``. ``opened``: the
    caller's tables kept open from month to month (the sink's; None: each is loaded).
    """
    month_no = period.index + 1
    meta_common = {"scenario_digest": after.scenario.digest(), "seed": after.scenario.seed,
                   "package_version": package_version(), "month": period.label, "period_index": period.index}
    written = MonthWritten(period, {})
    # Every table, each month (customer_history missing only in the benchmark's baseline without it).
    names = TABLES if history_recorded() else tuple(n for n in TABLES if n != "customer_history")
    for name in (*names, *(n for n in tables if n not in TABLES)):
        current = _current(lake, name, opened)  # read once: the exactly-once check, then the commit
        if _done(current, month_no):
            written.skipped.append(name)
            continue
        checkpoint(f"before {name} {period.label}")
        part = tables[name]
        if isinstance(part, pa.Table):
            schema, files = part.schema, [write_part(lake / name, part, name=part_name(month=month_no, shard=None, kind=name))]
        else:
            schema, files = part
        commit_files(lake / name, files, schema=schema, mode="append", commit_properties=CommitProperties(
            custom_metadata={META_KEY: json.dumps(meta_common)},
            app_transactions=[Transaction(APP_ID, month_no)]), current=current)
        written.rows[name] = sum(f.num_records for f in files)
        checkpoint(f"after {name} {period.label}")
    state = dict(state_files or {})
    state |= write_state_files(lake, after, shards=[k for k in sorted(after.shards) if k not in state])
    schema = state_schema()
    meta = {**state_meta(after), "carry": to_ipc(carry), "history_carry": to_ipc(history_carry), STATE_FILES_KEY: {str(k): f.path for k, f in sorted(state.items())}}
    commit_files(internal_dir(lake) / "state", [state[k] for k in sorted(state)], schema=schema, mode="overwrite",
                 commit_properties=CommitProperties(custom_metadata={META_KEY: json.dumps(meta)},
                                                    app_transactions=[Transaction(APP_ID, month_no)]))
    checkpoint(f"after state {period.label}")
    return written
