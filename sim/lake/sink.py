"""The Delta sink: each month committed to the lake exactly once, engine state last.

Layout of a lake directory::

    raw_customers/ raw_transactions/ customer_labels/ daily_metrics/   the four tables (Delta)
    _churnsim/state/        engine state after the last finished month (Delta, overwritten monthly)
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
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from sim.batch.tables import TABLES, month_tables
from sim.engine.state import RunState, ShardMonth
from sim.lake.faults import checkpoint
from sim.lake.state import APP_ID, META_KEY, internal_dir, package_version, state_meta, state_table, to_ipc
from sim.model.calendar import Period

__all__ = ["MANIFEST_TABLE", "Batcher", "DeltaSink", "MonthWritten", "commit_month", "plain_batch"]

log = logging.getLogger(__name__)

MANIFEST_TABLE = "quality_manifest"

# The month's tables from its shard arrays, and what a batch carries to the next one (late arrivals).
Batcher = Callable[[RunState, Period, list[ShardMonth], pa.Table | None], tuple[dict[str, pa.Table], pa.Table | None]]


def plain_batch(before: RunState, period: Period, months: list[ShardMonth],
                carry: pa.Table | None) -> tuple[dict[str, pa.Table], pa.Table | None]:
    """The month's four tables as the engine made them."""
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
                 progress: Callable[[MonthWritten], None] | None = None) -> None:
        self.lake, self.batch, self.carry, self.progress = lake, batch, carry, progress

    def write(self, before: RunState, after: RunState, period: Period, months: list[ShardMonth]) -> None:
        tables, self.carry = self.batch(before, period, months, self.carry)
        written = commit_month(self.lake, after, period, tables, carry=self.carry)
        log.info("month %s committed (%s)", period.label, ", ".join(f"{k}={v}" for k, v in written.rows.items()))
        if self.progress:
            self.progress(written)


def commit_month(lake: Path, after: RunState, period: Period, tables: dict[str, pa.Table], *,
                 carry: pa.Table | None) -> MonthWritten:
    """Commit one month's tables (the four, then any others), each once, then the state ``after``."""
    month_no = period.index + 1
    meta_common = {"scenario_digest": after.scenario.digest(), "seed": after.scenario.seed,
                   "package_version": package_version(), "month": period.label, "period_index": period.index}
    written = MonthWritten(period, {})
    for name in (*TABLES, *(n for n in tables if n not in TABLES)):
        path = str(lake / name)
        if DeltaTable.is_deltatable(path) and (DeltaTable(path).transaction_version(APP_ID) or 0) >= month_no:
            written.skipped.append(name)
            continue
        checkpoint(f"before {name} {period.label}")
        write_deltalake(path, tables[name], mode="append", commit_properties=CommitProperties(
            custom_metadata={META_KEY: json.dumps(meta_common)},
            app_transactions=[Transaction(APP_ID, month_no)]))
        written.rows[name] = tables[name].num_rows
        checkpoint(f"after {name} {period.label}")
    state_path = str(internal_dir(lake) / "state")
    meta = {**state_meta(after), "carry": to_ipc(carry)}
    write_deltalake(state_path, state_table(after), mode="overwrite", schema_mode="overwrite",
                    commit_properties=CommitProperties(custom_metadata={META_KEY: json.dumps(meta)},
                                                       app_transactions=[Transaction(APP_ID, month_no)]))
    checkpoint(f"after state {period.label}")
    return written
