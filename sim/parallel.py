"""How shards are executed: in this process, in worker processes, or as Spark tasks.

A shard-month is a pure function of (scenario, calibration, shard id, shard state, period,
arrivals), so where it runs cannot change a byte of output. The process runner gives each worker
a fixed set of shards (``shard % workers``) and keeps their state resident there between months:
only the arrivals go in and the month's arrays (and new state) come out. The resident copy is
used only when the coordinator passes back the very state object this runner returned for that
shard last month; any other state (a resumed lake, a retried month) is shipped in full, so the
cache can never make a result differ.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Literal

import numpy as np

from sim.calendar import Period
from sim.customer import Agents
from sim.engine import Calibration, RunState, ShardMonth, ShardRunner, local_runner, simulate_shard
from sim.scenario import Scenario

__all__ = ["ProcessRunner", "close_runner", "make_runner"]

log = logging.getLogger(__name__)

Plan = dict[int, tuple[np.ndarray, np.ndarray]]

# --------------------------------------------------------------------------- inside a worker process

_RESIDENT: dict[int, Agents] = {}


def _run_in_worker(s: Scenario, c: Calibration, shard: int, agents: Agents | None, period: Period,
                   ids: np.ndarray, t: np.ndarray) -> tuple[Agents, ShardMonth]:
    """Simulate one shard-month; ``agents=None`` means: the state this worker kept from last month."""
    if agents is None:
        agents = _RESIDENT[shard]
    new, month = simulate_shard(s, c, shard, agents, period, ids, t)
    _RESIDENT[shard] = new
    return new, month


# --------------------------------------------------------------------------- the coordinator's side


def _shutdown(pools: list[ProcessPoolExecutor]) -> None:
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


class ProcessRunner:
    """Runs a month's shards in ``workers`` processes; one pool per run, kept across months.

    Use as a context manager (or call :meth:`close`); the pools are also shut down when the
    runner is garbage-collected or the interpreter exits.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers: expected a positive number (got {workers})")
        self.workers = workers
        self._pools: list[ProcessPoolExecutor] = []
        self._returned: dict[int, Agents] = {}
        self._finalizer = weakref.finalize(self, _shutdown, self._pools)

    def _pool(self, shard: int) -> ProcessPoolExecutor:
        if not self._pools:
            # forkserver: no fork of a parent that already runs Arrow/Delta threads.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["sim.engine"])
            # One single-process pool per worker gives a fixed shard -> worker assignment.
            self._pools.extend(ProcessPoolExecutor(max_workers=1, mp_context=ctx) for _ in range(self.workers))
            log.debug("started %d shard workers", self.workers)
        return self._pools[shard % self.workers]

    def __call__(self, state: RunState, period: Period, plan: Plan) -> Iterator[tuple[Agents, ShardMonth]]:
        futures: list[Future[tuple[Agents, ShardMonth]]] = []
        for k, (ids, t) in plan.items():
            agents = state.shards.get(k, Agents.empty())
            resident = self._returned.get(k) is agents and len(agents) > 0
            futures.append(self._pool(k).submit(_run_in_worker, state.scenario, state.calibration, k,
                                                None if resident else agents, period, ids, t))
        results = [f.result() for f in futures]  # in plan (shard) order
        self._returned = {m.shard: a for a, m in results}
        return iter(results)

    def close(self) -> None:
        """Shut the worker processes down (idempotent)."""
        self._returned.clear()
        self._finalizer()

    def __enter__(self) -> ProcessRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def close_runner(runner: ShardRunner) -> None:
    """Release a runner's workers if it has any (``local_runner`` has none)."""
    close = getattr(runner, "close", None)
    if close is not None:
        close()


def make_runner(*, workers: int | None = None, engine: Literal["local", "spark"] = "local") -> ShardRunner:
    """A shard runner for ``engine``.

    Args:
        workers: processes (``local``) or Spark local cores (``spark``); default: all cores.
            With ``engine='local'`` and one worker, shards run in this process (``local_runner``).
        engine: ``local`` (worker processes) or ``spark`` (Spark tasks, see :mod:`sim.spark`).
    """
    n = workers or os.cpu_count() or 1
    if engine == "spark":
        from sim.spark import SparkRunner

        return SparkRunner(cores=n)
    if engine != "local":
        raise ValueError(f"engine: expected 'local' or 'spark' (got {engine!r})")
    return local_runner if n == 1 else ProcessRunner(n)
