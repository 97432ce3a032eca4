"""The benchmark behind ``churnsim bench``: where the time goes, and how far from the floor.

Jobs (each returns plain numbers, the CLI prints them):

* ``in_memory``: a preset end to end with :func:`sim.execute.memory.simulate` (solving the targets included).
* ``to_delta``: the same preset with :func:`sim.execute.runs.run` into a temporary lake (with the
  largest worker process's peak RSS).
* ``speedup``: ``to_delta`` with one worker and with two.
* ``floor``: a whole-array numpy generator of the same volume (same customers, the same row
  counts per table per month, plain vectorised draws, no agents) committed to Delta in the same
  monthly batches; our time is reported as a multiple of it.
* ``process_engine``: the small preset in memory with the batched engine and with the process
  engine (every customer one SimPy process, :mod:`sim.engine.process`): events (purchases,
  signups, graduations, dropouts) per second of each, and whether their tables are equal.
* ``full``: 1,000,000 customers over 24 months to Delta, in a fresh process so its peak RSS
  (``ru_maxrss`` of the coordinator; workers report their own) is its own; run again with one
  worker for its speed-up.
* ``scale_out`` (``--scale-out``, tens of minutes): the Spark driver's own peak RSS at 50,000 and
  1,000,000 customers, two months on ``local-cluster[2,1,1536]`` (executors write, the driver
  commits metadata); and 10,000,000 customers over 24 months with the local engine, its workers
  reading each shard's state from the lake (:class:`~sim.execute.parallel.ProcessRunner` with
  ``resident=False``): seconds, transactions per second, peak RSS summed over the processes.
"""

from __future__ import annotations

import cProfile
import io
import json
import logging
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from sim.batch.tables import SCHEMAS, TABLES
from sim.scenario import Scenario

__all__ = ["FULL_CUSTOMERS", "SCALE_CUSTOMERS", "bench", "floor_job", "full_job", "in_memory_job", "preset",
           "process_engine_job", "scale_out", "spark_driver_job", "streaming_job", "to_delta_job"]

log = logging.getLogger(__name__)

Size = Literal["small", "medium", "large"]
FULL_CUSTOMERS = 1_000_000
FULL_MONTHS = 24
SCALE_CUSTOMERS = 10_000_000
SCALE_MASTER = "local-cluster[2,1,1536]"


def preset(size: Size, *, customers: int | None = None, months: int | None = None) -> Scenario:
    """A guide preset as a scenario, optionally resized (``months`` replaces its day count)."""
    from sim.api import PRESETS

    s = PRESETS[size].to_scenario()
    if customers is not None:
        s = replace(s, population=replace(s.population, size=customers))
    if months is not None:
        s = replace(s, calendar=replace(s.calendar, days=None, months=months))
    return s


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    if who == resource.RUSAGE_SELF:
        # VmHWM is this address space's own peak; ru_maxrss carries the parent's peak at fork over
        # exec, so a fresh subprocess would report at least its parent's.
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def _profile_top(fn: Callable[[], Any], top: int) -> list[dict[str, Any]]:
    prof = cProfile.Profile()
    prof.runcall(fn)
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls": ncalls,
                     "tottime": round(tottime, 3), "cumtime": round(cumtime, 3)})
    rows.sort(key=lambda r: -r["cumtime"])
    return rows[:top]


def in_memory_job(s: Scenario, *, profile: bool = False, top: int = 20) -> dict[str, Any]:
    """``sim.execute.memory.simulate`` end to end: seconds, transactions/s, and optionally a profile."""
    from sim.execute.memory import simulate

    t0 = time.perf_counter()
    tables = simulate(s)
    seconds = time.perf_counter() - t0
    n_txn = tables["raw_transactions"].num_rows
    out: dict[str, Any] = {"seconds": round(seconds, 3), "transactions": n_txn,
                           "transactions_per_s": round(n_txn / seconds),
                           "rows": {k: v.num_rows for k, v in tables.items()}}
    del tables
    if profile:
        out["profile"] = _profile_top(lambda: simulate(s), top)
    return out


def _events(tables: dict[str, pa.Table]) -> int:
    """Purchases and lifecycle events (signups, graduations, dropouts), counted off the tables."""
    import pyarrow.compute as pc

    daily = tables["daily_metrics"]
    signups, dropouts = (pc.sum(daily[c]).as_py() or 0 for c in ("new_customers", "dropouts"))
    cust, lab = tables["raw_customers"], tables["customer_labels"]
    new = cust.filter(pc.equal(cust["segment"], "new_customer"))["customer_id"]
    moved = lab.filter(pc.not_equal(lab["segment"], "new_customer"))["customer_id"]
    graduations = len(np.intersect1d(new.to_numpy(), moved.to_numpy()))
    return tables["raw_transactions"].num_rows + signups + graduations + dropouts


def process_engine_job(s: Scenario) -> dict[str, Any]:
    """Both engines on ``s`` in memory, one after the other: seconds and events per second of each."""
    from sim.engine.process import process_runner
    from sim.execute.memory import simulate
    from sim.execute.targets import solve_targets

    scales = solve_targets(s)
    out: dict[str, Any] = {"customers": s.population.size}
    tables = {}
    for engine, kw in (("batched", {}), ("process", {"runner": process_runner})):
        t0 = time.perf_counter()
        tables[engine] = simulate(s, scales=scales, **kw)
        seconds = time.perf_counter() - t0
        out[engine] = {"seconds": round(seconds, 3), "events": (n := _events(tables[engine])),
                       "events_per_s": round(n / seconds)}
    out["same_tables"] = all(tables["batched"][k].equals(tables["process"][k]) for k in TABLES)
    out["x_slower"] = round(out["process"]["seconds"] / out["batched"]["seconds"], 1)
    return out


class _TimedRunner:
    """Wraps a shard runner to add up the time spent running shards."""

    def __init__(self, runner: Callable) -> None:
        self.runner, self.seconds = runner, 0.0

    def __call__(self, *args: Any) -> list:
        t0 = time.perf_counter()
        out = list(self.runner(*args))
        self.seconds += time.perf_counter() - t0
        return out


def to_delta_job(s: Scenario, *, workers: int | None = None, lake: Path | None = None) -> dict[str, Any]:
    """``sim.execute.runs.run`` into a (temporary) lake: seconds, rows per table per month, shard time."""
    from sim.execute import runs
    from sim.execute.parallel import close_runner, make_runner

    monthly: list[dict[str, int]] = []
    runner = make_runner(workers=workers)
    timed = _TimedRunner(runner)
    worker_rss: list[float] = []
    with tempfile.TemporaryDirectory(prefix="churnsim-bench-") as tmp:
        t0 = time.perf_counter()
        try:
            runs.run(s, lake or Path(tmp) / "lake", runner=timed, progress=lambda w: monthly.append(dict(w.rows)))
            worker_rss = getattr(runner, "worker_peak_rss_mb", list)()
        finally:
            close_runner(runner)
        seconds = time.perf_counter() - t0
    rows = {name: sum(m.get(name, 0) for m in monthly) for name in TABLES}
    return {"seconds": round(seconds, 3), "workers": getattr(runner, "workers", 1), "shard_seconds": round(timed.seconds, 3),
            "rows": rows, "monthly_rows": monthly, "worker_peak_rss_mb": round(max(worker_rss, default=0.0), 1),
            "transactions_per_s": round(rows["raw_transactions"] / seconds)}


# --------------------------------------------------------------------------- the numpy floor


def _floor_month(rng: np.random.Generator, rows: dict[str, int], first_id: int, first_txn: int, n_customers: int,
                 day0: int) -> dict[str, pa.Table]:
    from sim.batch.tables import codes_to_strings, days_to_date32, timestamps

    words = np.array([f"name{i}" for i in range(2048)], dtype=object)

    def strings(n: int) -> pa.Array:
        return pa.array(words[rng.integers(0, len(words), n)], pa.string())

    n = rows["raw_customers"]
    cid = np.arange(first_id, first_id + n, dtype=np.int64)
    customers = pa.table({
        "customer_id": cid, "first_name": strings(n), "last_name": strings(n), "email": strings(n),
        "age": rng.integers(18, 80, n).astype(np.int32), "segment": codes_to_strings("segment", rng.integers(0, 4, n)),
        "customer_since_date": days_to_date32(day0 - rng.integers(0, 1000, n)), "city": strings(n),
        "state": strings(n), "postal_code": strings(n),
    }, schema=SCHEMAS["raw_customers"])
    n = rows["raw_transactions"]
    t = np.sort(day0 + rng.uniform(0, 30, n))
    transactions = pa.table({
        "transaction_id": np.arange(first_txn, first_txn + n, dtype=np.int64),
        "customer_id": rng.integers(1, n_customers + 1, n), "transaction_date": days_to_date32(np.floor(t)),
        "transaction_ts": timestamps(t), "amount": np.round(rng.lognormal(3.5, 0.8, n), 2),
        "category": codes_to_strings("category", rng.integers(0, 6, n)),
        "channel": codes_to_strings("channel", rng.integers(0, 3, n)),
    }, schema=SCHEMAS["raw_transactions"])
    n = rows["customer_labels"]
    dropped = rng.uniform(size=n) < 0.1
    labels = pa.table({
        "customer_id": np.arange(1, n + 1, dtype=np.int64), "label_date": days_to_date32(np.full(n, day0 + 29)),
        "segment": codes_to_strings("segment", rng.integers(0, 4, n)), "churned": rng.uniform(size=n) < 0.15,
        "recency_days": rng.integers(0, 400, n).astype(np.int32), "tenure_days": rng.integers(0, 2000, n).astype(np.int32),
        "dropped_out": dropped, "dropout_date": days_to_date32(np.full(n, day0), mask=~dropped),
        "experiment_arms": pa.nulls(n, SCHEMAS["customer_labels"].field("experiment_arms").type),
    }, schema=SCHEMAS["customer_labels"])
    n = rows["daily_metrics"]
    counts = {c: rng.integers(0, 1000, n) for c in ("transactions", "purchasing_customers", "active_customers_30d",
                                                     "new_customers", "dropouts")}
    metrics = pa.table({
        "metric_date": days_to_date32(day0 + np.arange(n) // 4), "segment": codes_to_strings("segment", np.arange(n) % 4),
        **counts, "revenue": rng.uniform(0, 1e5, n), "avg_amount": rng.uniform(0, 100, n),
    }).select(SCHEMAS["daily_metrics"].names).cast(SCHEMAS["daily_metrics"])
    n = rows["customer_history"]
    t = day0 + rng.uniform(0, 30, n)
    history = pa.table({
        "customer_id": rng.integers(1, n_customers + 1, n), "valid_from": timestamps(t),
        "version": rng.integers(1, 5, n).astype(np.int32), "change_type": codes_to_strings("change_type", rng.integers(0, 5, n)),
        "segment": codes_to_strings("segment", rng.integers(0, 4, n)), "tier": codes_to_strings("tier", rng.integers(0, 4, n)),
        "email": strings(n), "city": strings(n), "state": strings(n), "postal_code": strings(n),
        "recorded_at": timestamps(np.full(n, day0 + 30.0)),
    }, schema=SCHEMAS["customer_history"])
    return dict(zip(TABLES, (customers, transactions, labels, metrics, history), strict=True))


def floor_job(monthly_rows: list[dict[str, int]], *, seed: int = 0, lake: Path | None = None) -> dict[str, Any]:
    """The reference floor: the same row counts, month by month, drawn whole-array and written to Delta."""
    from deltalake import write_deltalake

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="churnsim-floor-") as tmp:
        root = lake or Path(tmp) / "lake"
        t0 = time.perf_counter()
        next_id, next_txn = 1, 1
        for k, rows in enumerate(monthly_rows):
            full = {name: rows.get(name, 0) for name in TABLES}
            tables = _floor_month(rng, full, next_id, next_txn, max(next_id + full["raw_customers"] - 1, 1),
                                  19_723 + 30 * k)
            for name, table in tables.items():
                write_deltalake(str(root / name), table, mode="append")
            next_id += full["raw_customers"]
            next_txn += full["raw_transactions"]
        seconds = time.perf_counter() - t0
    rows = {name: sum(m.get(name, 0) for m in monthly_rows) for name in TABLES}
    return {"seconds": round(seconds, 3), "rows": rows}


# --------------------------------------------------------------------------- 1M x 24 months


def full_job(*, customers: int = FULL_CUSTOMERS, months: int = FULL_MONTHS, workers: int | None = None) -> dict[str, Any]:
    """``customers`` over ``months`` to Delta in this process, with its floor and peak RSS."""
    s = preset("large", customers=customers, months=months)
    ours = to_delta_job(s, workers=workers)
    rss_self = _peak_rss_mb()
    floor = floor_job(ours.pop("monthly_rows"))
    return {"customers": customers, "months": months, **ours, "peak_rss_mb": round(rss_self, 1),
            "floor_seconds": floor["seconds"],
            "x_floor": round(ours["seconds"] / floor["seconds"], 2)}


def _full_in_subprocess(*, customers: int, months: int, workers: int | None) -> dict[str, Any]:
    return _in_subprocess("full_job", customers=customers, months=months, workers=workers)


def _in_subprocess(job: str, **kwargs: Any) -> dict[str, Any]:
    """A job of this module in a fresh interpreter, so the peak RSS it reports is its own."""
    code = f"import json; from sim.bench import {job}; print(json.dumps({job}(**{kwargs!r})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- scale-out


def spark_driver_job(*, customers: int, months: int = 2, master: str = SCALE_MASTER) -> dict[str, Any]:
    """:func:`sim.execute.spark.run_spark` on ``master``: seconds and the driver's own peak RSS."""
    from pyspark.sql import SparkSession

    from sim.execute.spark import run_spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master(master).appName("churnsim-bench")
             .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    try:
        with tempfile.TemporaryDirectory(prefix="churnsim-bench-") as tmp:
            t0 = time.perf_counter()
            # The preset's horizon (its targets are solved for it), the first ``months`` of it made.
            state = run_spark(spark, preset("large", customers=customers), Path(tmp) / "lake", months=months)
            seconds = time.perf_counter() - t0
    finally:
        spark.stop()
    return {"customers": customers, "months": months, "master": master, "seconds": round(seconds, 1),
            "transactions": state.next_transaction_id - 1, "driver_peak_rss_mb": round(_peak_rss_mb(), 1)}


def streaming_job(*, customers: int = SCALE_CUSTOMERS, months: int = FULL_MONTHS,
                  workers: int | None = None) -> dict[str, Any]:
    """The local engine into a lake with workers that keep no state between months (each shard's
    state read from its file): seconds, transactions/s, and the peak RSS summed over the processes."""
    from sim.execute import runs
    from sim.execute.parallel import ProcessRunner

    n = workers or max((os.cpu_count() or 1) - 1, 1)
    with tempfile.TemporaryDirectory(prefix="churnsim-bench-") as tmp, ProcessRunner(n, resident=False) as runner:
        t0 = time.perf_counter()
        state = runs.run(preset("large", customers=customers), Path(tmp) / "lake", runner=runner, months=months)
        seconds = time.perf_counter() - t0
        workers_rss = runner.worker_peak_rss_mb()
    n_txn = state.next_transaction_id - 1
    return {"customers": customers, "months": months, "workers": n, "seconds": round(seconds, 1),
            "transactions": n_txn, "transactions_per_s": round(n_txn / seconds),
            "coordinator_peak_rss_mb": round(_peak_rss_mb(), 1),
            "worker_peak_rss_mb": [round(x, 1) for x in workers_rss],
            "summed_peak_rss_mb": round(_peak_rss_mb() + sum(workers_rss), 1)}


def scale_out(*, small: int = 50_000, large: int = FULL_CUSTOMERS, customers: int = SCALE_CUSTOMERS,
              months: int = FULL_MONTHS) -> dict[str, Any]:
    """The driver's peak RSS at ``small`` and ``large`` customers (two months on a local cluster),
    and ``customers`` x ``months`` with the local engine (each job in its own process)."""
    drivers = [_in_subprocess("spark_driver_job", customers=n) for n in (small, large)]
    return {"spark_driver": drivers,
            "driver_growth_mb": round(drivers[1]["driver_peak_rss_mb"] - drivers[0]["driver_peak_rss_mb"], 1),
            "streaming": _in_subprocess("streaming_job", customers=customers, months=months)}


# --------------------------------------------------------------------------- all of it


def bench(*, size: Size = "large", workers: int | None = None, full: bool = False, profile: bool = False,
          full_customers: int = FULL_CUSTOMERS, full_months: int = FULL_MONTHS, scale: bool = False) -> dict[str, Any]:
    """Run the benchmark jobs and return their numbers (see the module docstring)."""
    s = preset(size)
    out: dict[str, Any] = {"size": size, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                     "platform": platform.platform()}}
    log.info("in memory (%s)", size)
    out["in_memory"] = in_memory_job(s, profile=profile)
    log.info("to delta (%s, workers=%s)", size, workers)
    delta = to_delta_job(s, workers=workers)
    log.info("numpy floor")
    floor = floor_job(delta["monthly_rows"], seed=s.seed)
    delta["x_floor"] = round(delta["seconds"] / floor["seconds"], 2)
    out["in_memory"]["x_floor"] = round(out["in_memory"]["seconds"] / floor["seconds"], 2)
    del delta["monthly_rows"]
    out["to_delta"], out["floor"] = delta, floor
    log.info("speed-up: 1 vs 2 workers")
    one = to_delta_job(s, workers=1)
    two = delta if delta["workers"] == 2 else to_delta_job(s, workers=2)
    out["speedup"] = {"job": "to_delta", "workers_1_seconds": one["seconds"], "workers_2_seconds": two["seconds"],
                      "speedup": round(one["seconds"] / two["seconds"], 2),
                      "shard_seconds_1": one["shard_seconds"], "shard_seconds_2": two["shard_seconds"],
                      "shard_speedup": round(one["shard_seconds"] / max(two["shard_seconds"], 1e-9), 2)}
    if full:
        log.info("full: %d customers x %d months", full_customers, full_months)
        out["full"] = _full_in_subprocess(customers=full_customers, months=full_months, workers=workers)
        other = 2 if out["full"]["workers"] == 1 else 1
        again = _full_in_subprocess(customers=full_customers, months=full_months, workers=other)
        one, two = (out["full"], again) if other == 2 else (again, out["full"])
        out["full"]["workers_1_seconds"], out["full"]["workers_2_seconds"] = one["seconds"], two["seconds"]
        out["full"]["speedup"] = round(one["seconds"] / two["seconds"], 2)
    if scale:
        log.info("scale-out: driver RSS on %s, %d customers x %d months streamed", SCALE_MASTER, SCALE_CUSTOMERS,
                 FULL_MONTHS)
        out["scale_out"] = scale_out()
    log.info("process engine vs batched (small)")
    out["process_engine"] = process_engine_job(preset("small"))
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out
