"""The Spark engine: a month's shards run as Spark tasks (``mapInArrow``).

Each month the driver builds a DataFrame with one row per shard: the shard id, its state and its
arrivals, serialised as Arrow IPC bytes. ``mapInArrow`` runs :func:`sim.engine.month.simulate_shard`
on each row in a Python worker and returns the new state and the month's arrays, again as IPC
bytes; the driver collects them (in shard order) and the ordinary store commits the month.

Why the driver commits: Spark here has no Delta jars, and the store's exactly-once protocol
(application transactions per table, state committed last) lives in :mod:`sim.lake.sink`. Collecting
one month of arrays is bounded by the month's size, not the run's, and the tables are
byte-identical to the local engine's because the same code builds them from the same arrays.
On Databricks, :func:`month_dataframes` reads a month's rows back from the files its commit added
(in the executors) as Spark DataFrames for ``saveAsTable``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sim.batch.tables import TABLES
from sim.engine.metrics import DailyPartials
from sim.engine.month import simulate_shard
from sim.engine.state import RunState, ShardMonth
from sim.errors import StorageError
from sim.lake.read import month_files
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
_PURCHASE_FIELDS = ("customer_id", "t", "amount", "segment", "channel", "category")
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
    arrays |= {f"buy.{f}": getattr(m.purchases, f) for f in _PURCHASE_FIELDS}
    arrays |= {f"label.{k}": v for k, v in m.labels.items()}
    arrays |= {f"daily.{f}": getattr(m.daily, f) for f in _DAILY_FIELDS}
    arrays |= {f"hist.{k}": v for k, v in m.history.items()}
    return pack(arrays)


def _unpack_month(shard: int, data: bytes) -> ShardMonth:
    a = unpack(data)

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {k.partition(".")[2]: v for k, v in a.items() if k.startswith(prefix + ".")}

    buy, daily = group("buy"), group("daily")
    return ShardMonth(shard, group("new"), Purchases(*(buy[f] for f in _PURCHASE_FIELDS)), group("label"),
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

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = local_session(cores=self._cores)
        return self._spark

    def __call__(self, state: RunState, period: Period, plan: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[tuple[Agents, ShardMonth]]:
        rows = pa.table({
            "shard": pa.array(list(plan), pa.int32()),
            "state": pa.array([pack(state.shards.get(k, Agents.empty()).columns()) for k in plan], pa.binary()),
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
