"""The Spark engine: a month's shards run as Spark tasks (``mapInArrow``).

Into a lake (``run``/``append``, :meth:`SparkRunner.write_into`) the executors own the data path,
in the two phases of :mod:`sim.execute.parallel`. Phase one: one row per shard carries where its
state file is and its arrivals; the task reads the state, simulates the month, writes the shard's
customers, labels and new state files and stages its purchases (:mod:`sim.lake.staging`), and
returns metadata: the files' paths, sizes and stats, per-day purchase counts, the daily-metric
partials. The driver gives each (day, shard) its first transaction id; phase two's tasks write
each shard's transactions. The driver commits the files with deltalake (no Delta jars: the same
exactly-once protocol as every runner, :mod:`sim.lake.sink`); no state and no row passes through
it, so its memory does not grow with customers. The lake is identical to the local engine's.

Without a lake (the in-memory API, or a corrupted run, whose defects are injected into whole
tables on the driver) the tasks return each shard's new state and arrays as Arrow IPC bytes.
On Databricks, :func:`month_dataframes` reads a month's rows back from the files its commit added
(in the executors) as Spark DataFrames for ``saveAsTable``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sim.batch.tables import TABLES, first_ids, in_time_order, purchase_days
from sim.engine.metrics import DailyPartials
from sim.engine.month import simulate_shard
from sim.engine.state import RunState, ShardMonth, StoredShard, shard_agents
from sim.errors import StorageError
from sim.lake.faults import checkpoint
from sim.lake.files import DataFile
from sim.lake.read import month_files
from sim.lake.sink import stored_state, write_shard_files, write_shard_transactions
from sim.lake.staging import clear_staging, read_staged, stage_purchases
from sim.lake.state import read_state_file
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period
from sim.scenario import Scenario, scenario_from_dict

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sim.lake.sink import MonthWritten

__all__ = ["SparkRunner", "local_session", "month_dataframes", "run_spark"]

log = logging.getLogger(__name__)

# pyspark warns on every mapInArrow that pandas 3 is not fully supported; we pass Arrow, not pandas.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

_SHAPE = b"shapes"
_DAILY_FIELDS = ("transactions", "revenue", "purchasing_customers", "active_customers_30d", "new_customers",
                 "dropouts")
_IN_SCHEMA = "shard int, state binary, arrivals binary"
_OUT_SCHEMA = "shard int, state binary, month binary"


# --------------------------------------------------------------------------- arrays <-> Arrow IPC bytes


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """Named numpy arrays (any lengths, 1-D or 2-D) as one Arrow IPC stream (a one-row table)."""
    shapes = ";".join(f"{k}={'x'.join(map(str, v.shape))}" for k, v in arrays.items())
    cols = {k: pa.ListArray.from_arrays(pa.array([0, v.size], pa.int32()), pa.array(np.ascontiguousarray(v).ravel()))
            for k, v in arrays.items()}
    table = pa.table(cols).replace_schema_metadata({_SHAPE: shapes})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def unpack(data: bytes) -> dict[str, np.ndarray]:
    """The inverse of :func:`pack` (dtypes and shapes preserved)."""
    table = pa.ipc.open_stream(data).read_all()
    meta = (table.schema.metadata or {}).get(_SHAPE, b"").decode()
    shapes = {k: tuple(int(x) for x in s.split("x") if x) for k, _, s in (p.partition("=") for p in meta.split(";") if p)}
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        values = col.values.to_numpy(zero_copy_only=False)
        dtype = col.type.value_type.to_pandas_dtype()
        out[name] = np.asarray(values, dtype).reshape(shapes[name])
    return out


def _pack_month(m: ShardMonth) -> bytes:
    arrays = {f"new.{k}": v for k, v in m.new_customers.items()}
    arrays |= {f"buy.{f}": getattr(m.purchases, f) for f in Purchases.FIELDS}
    arrays |= {f"label.{k}": v for k, v in m.labels.items()}
    arrays |= {f"daily.{f}": getattr(m.daily, f) for f in _DAILY_FIELDS}
    arrays |= {f"hist.{k}": v for k, v in m.history.items()}
    return pack(arrays)


def _unpack_month(shard: int, data: bytes) -> ShardMonth:
    a = unpack(data)

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {k.partition(".")[2]: v for k, v in a.items() if k.startswith(prefix + ".")}

    buy, daily = group("buy"), group("daily")
    return ShardMonth(shard, group("new"), Purchases(*(buy[f] for f in Purchases.FIELDS)), group("label"),
                      DailyPartials(*(daily[f] for f in _DAILY_FIELDS)), history=group("hist"))


# --------------------------------------------------------------------------- the tasks


def _shard_task(scenario: dict[str, Any], scales: Any, period: Period) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function for one month (runs in Spark's Python workers)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        s = scenario_from_dict(scenario, source="spark task")
        for batch in batches:
            shards, states, months = [], [], []
            for shard, state, arrivals in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
                arr = unpack(arrivals)
                agents, month = simulate_shard(s, scales, shard, Agents.from_columns(unpack(state)), period,
                                               arr["ids"], arr["t"])
                shards.append(shard)
                states.append(pack(agents.columns()))
                months.append(_pack_month(month))
            yield pa.RecordBatch.from_arrays(
                [pa.array(shards, pa.int32()), pa.array(states, pa.binary()), pa.array(months, pa.binary())],
                names=["shard", "state", "month"])

    return run


_WRITE_IN = "shard int, state_file string, state binary, arrivals binary"
_WRITE_OUT = "shard int, files string, counts binary, staged string"
_TXN_IN = "shard int, staged string, firsts binary"
_TXN_OUT = "shard int, file string"


def _files_json(files: dict[str, object]) -> str:
    return json.dumps({k: asdict(f) for k, f in files.items()})  # type: ignore[call-overload]


def _files_from(text: str) -> dict[str, object]:
    return {k: DataFile(**v) for k, v in json.loads(text).items()}


def _write_task(scenario: dict[str, Any], scales: Any, period: Period,
                lake: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Phase one of a written month (in the executors): read the shard's state from its file,
    simulate, write customers, labels and state, stage the purchases; return metadata only."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        s = scenario_from_dict(scenario, source="spark task")
        root = Path(lake)
        for batch in batches:
            out: dict[str, list] = {"shard": [], "files": [], "counts": [], "staged": []}
            for shard, where, state, arrivals in zip(*(batch.column(i).to_pylist() for i in range(4)), strict=True):
                agents = (read_state_file(where) if where is not None
                          else Agents.from_columns(unpack(state)) if state is not None else Agents.empty())
                arr = unpack(arrivals)
                new, month = simulate_shard(s, scales, shard, agents, period, arr["ids"], arr["t"])
                written = write_shard_files(root, s, period, new, month)
                p = in_time_order(month.purchases)
                days, counts = purchase_days(p.t)
                out["shard"].append(shard)
                out["files"].append(_files_json(written.files))
                # The shard's late history rows (recorded after the month's end) go back to the
                # driver, which delivers them with a later batch: a few hundred rows a shard.
                out["counts"].append(pack({"days": days, "counts": counts,
                                           **{f"daily.{f}": getattr(month.daily, f) for f in _DAILY_FIELDS},
                                           **{f"hist.{k}": v for k, v in written.history.items()}}))
                out["staged"].append(stage_purchases(root, period.index + 1, shard, p))
            yield pa.RecordBatch.from_arrays(
                [pa.array(out["shard"], pa.int32()), pa.array(out["files"], pa.string()),
                 pa.array(out["counts"], pa.binary()), pa.array(out["staged"], pa.string())],
                names=["shard", "files", "counts", "staged"])

    return run


def _transactions_task(period: Period, lake: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Phase two (in the executors): a shard's staged purchases as its raw_transactions part."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            shards, files = [], []
            for shard, staged, firsts in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
                p = read_staged(staged)
                f = write_shard_transactions(Path(lake), period, shard, p, purchase_days(p.t), unpack(firsts)["firsts"])
                shards.append(shard)
                files.append(None if f is None else _files_json({"raw_transactions": f}))
            yield pa.RecordBatch.from_arrays([pa.array(shards, pa.int32()), pa.array(files, pa.string())],
                                             names=["shard", "file"])

    return run


class SparkRunner:
    """A shard runner that runs each month's shards as Spark tasks.

    Args:
        spark: the session to use; default: a local session with ``cores`` cores
            (see :func:`local_session`), stopped by :meth:`close`.
        cores: cores of the local session made when ``spark`` is not given.
    """

    def __init__(self, spark: SparkSession | None = None, *, cores: int | None = None) -> None:
        self._own = spark is None
        self._cores = cores
        self._spark = spark
        self._lake: str | None = None

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = local_session(cores=self._cores)
        return self._spark

    def write_into(self, lake: Path | None) -> None:
        """From now on tasks write their shards' rows and state into ``lake`` and return only
        metadata (two phases, as :mod:`sim.execute.parallel`'s workers); None: they return arrays."""
        self._lake = None if lake is None else str(Path(lake).resolve())

    def _tasks(self, rows: pa.Table, schema: str, task: Callable, out: str) -> pa.Table:
        spark = self.spark
        parts = max(1, min(rows.num_rows, spark.sparkContext.defaultParallelism * 2))
        # Only metadata is collected: file paths, sizes, stats, per-day counts and partials.
        return spark.createDataFrame(rows, schema=schema).repartition(parts).mapInArrow(task, out).toArrow()

    def _write_month(self, state: RunState, period: Period,
                     plan: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[tuple[Agents | StoredShard, ShardMonth]]:
        assert self._lake is not None
        lake, month_no = Path(self._lake), period.index + 1
        held = {k: state.shards.get(k) for k in plan}
        rows = pa.table({
            "shard": pa.array(list(plan), pa.int32()),
            "state_file": pa.array([a.where if isinstance(a, StoredShard) else None for a in held.values()], pa.string()),
            "state": pa.array([pack(a.columns()) if isinstance(a, Agents) and len(a) else None for a in held.values()],
                              pa.binary()),
            "arrivals": pa.array([pack({"ids": ids, "t": t}) for ids, t in plan.values()], pa.binary()),
        })
        one = self._tasks(rows, _WRITE_IN, _write_task(state.scenario.to_dict(), state.scales, period, self._lake),
                          _WRITE_OUT)
        months: dict[int, ShardMonth] = {}
        staged: dict[int, str] = {}
        for shard, files, counts, where in zip(*(one.column(n).to_pylist() for n in ("shard", "files", "counts", "staged")),
                                               strict=True):
            a = unpack(counts)
            months[shard] = ShardMonth(shard, {}, Purchases.empty(), {}, DailyPartials(*(a[f"daily.{f}"] for f in _DAILY_FIELDS)),
                                       history={k[5:]: v for k, v in a.items() if k.startswith("hist.")},
                                       files=_files_from(files), days=(a["days"], a["counts"]))
            staged[shard] = where
        checkpoint(f"between the phases of {period.label}")  # tests: the driver killed with purchases staged
        firsts = first_ids(state.next_transaction_id, {k: m.days for k, m in months.items() if m.days is not None})
        rows = pa.table({"shard": pa.array(sorted(months), pa.int32()),
                         "staged": pa.array([staged[k] for k in sorted(months)], pa.string()),
                         "firsts": pa.array([pack({"firsts": firsts[k]}) for k in sorted(months)], pa.binary())})
        two = self._tasks(rows, _TXN_IN, _transactions_task(period, self._lake), _TXN_OUT)
        for shard, f in zip(two.column("shard").to_pylist(), two.column("file").to_pylist(), strict=True):
            if f is not None:
                months[shard] = replace(months[shard], files={**months[shard].files, **_files_from(f)})
        clear_staging(lake, month_no)  # every shard's transactions are written
        log.debug("spark wrote %d shards of %s", len(months), period.label)
        return [(stored_state(lake, months[k]), months[k]) for k in sorted(months)]

    def __call__(self, state: RunState, period: Period,
                 plan: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[tuple[Agents | StoredShard, ShardMonth]]:
        if self._lake is not None:
            return self._write_month(state, period, plan)
        rows = pa.table({
            "shard": pa.array(list(plan), pa.int32()),
            "state": pa.array([pack(shard_agents(state.shards.get(k)).columns()) for k in plan], pa.binary()),
            "arrivals": pa.array([pack({"ids": ids, "t": t}) for ids, t in plan.values()], pa.binary()),
        })
        spark = self.spark
        parts = max(1, min(len(plan), spark.sparkContext.defaultParallelism * 2))
        df = spark.createDataFrame(rows, schema=_IN_SCHEMA).repartition(parts)
        task = _shard_task(state.scenario.to_dict(), state.scales, period)
        out = df.mapInArrow(task, _OUT_SCHEMA).toArrow()
        by_shard = {}
        for shard, st, month in zip(*(out.column(n).to_pylist() for n in ("shard", "state", "month")), strict=True):
            by_shard[shard] = (Agents.from_columns(unpack(st)), _unpack_month(shard, month))
        log.debug("spark ran %d shards of %s", len(by_shard), period.label)
        return [by_shard[k] for k in sorted(by_shard)]

    def close(self) -> None:
        """Stop the session if this runner made it."""
        if self._own and self._spark is not None:
            self._spark.stop()
            self._spark = None

    def __enter__(self) -> SparkRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- sessions and entry points


def local_session(*, cores: int | None = None, app_name: str = "churnsim") -> SparkSession:
    """A local-mode SparkSession whose Python workers use this interpreter."""
    from pyspark.sql import SparkSession

    # Executors must import the same numpy/sim as the driver: use this very interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (SparkSession.builder.master(f"local[{cores or os.cpu_count() or 1}]").appName(app_name)
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(max(2, cores or os.cpu_count() or 1)))
            .getOrCreate())


def run_spark(
    spark: SparkSession,
    scenario: Scenario,
    lake: str | Path,
    *,
    months: int | None = None,
    overwrite: bool = False,
    progress: Callable[[MonthWritten], None] | None = None,
) -> RunState:
    """:func:`sim.execute.runs.run` with the shards of every month run as tasks of ``spark``.

    The driver commits each month with deltalake (exactly once, resumable), so no Delta jars
    are needed; the lake is identical to a local run's.
    """
    from sim.execute import runs

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return runs.run(scenario, lake, months=months, overwrite=overwrite, runner=SparkRunner(spark),
                     progress=progress)


def month_dataframes(spark: SparkSession, lake: str | Path, month: str, *,
                     tables: tuple[str, ...] = TABLES) -> dict[str, DataFrame]:
    """Month ``month``'s (``YYYY-MM``) rows of each table as Spark DataFrames, e.g. for
    ``df.write.mode('append').saveAsTable(...)``.

    Read by the executors from the Parquet files the month's commit added to the lake, so no
    month ever passes through the driver's memory.
    """
    out = {}
    for name in tables:
        files = month_files(lake, name, month)
        if not files:
            raise StorageError(f"{Path(lake) / name}: expected a commit of month {month} (found none)")
        out[name] = spark.read.parquet(*files)
    return out
