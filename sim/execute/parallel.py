"""How shards are executed: in this process, in worker processes, or as Spark tasks.

A shard-month is a pure function of (scenario, target scales, shard id, shard state, period,
arrivals), so where it runs cannot change a byte of output. The process runner gives each worker
a fixed set of shards (``shard % workers``) and keeps their state resident there between months:
only the arrivals go in and the month's arrays (and new state) come out. The resident copy is
used only when the coordinator passes back the very state object this runner returned for that
shard last month; any other state (a resumed lake, a retried month) is shipped in full, so the
cache can never make a result differ.

Writing into a lake (:meth:`ProcessRunner.write_into`), a month has two phases. One: each worker
simulates its shards, writes their customers, labels and state files, keeps their purchases in
time order and returns per-day purchase counts and the daily-metric partials. Two: from every
shard's counts the coordinator gives each (day, shard) its first transaction id
(:func:`sim.batch.tables.first_ids`) and each worker writes its shards' transactions. Only file
metadata and counts reach the coordinator. The purchases wait in the worker's memory (a worker
is a long-lived process that owns its shards; if it dies the month fails and the rerun
re-simulates it, its files orphans for ``optimize``), or with ``resident=False`` in a staging
file (:mod:`sim.lake.staging`), so that a worker holds one shard at a time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from sim.batch.tables import first_ids, in_time_order, purchase_days
from sim.engine.month import simulate_shard
from sim.engine.process import process_runner
from sim.engine.state import RunState, ShardMonth, StoredShard, shard_agents
from sim.engine.step import ShardRunner, local_runner, shards_for
from sim.lake.sink import stored_state, write_shard_files, write_shard_transactions
from sim.lake.staging import clear_staging, read_staged, stage_purchases
from sim.model.agents import Agents, Purchases
from sim.model.calendar import Period
from sim.model.population import arrivals
from sim.model.rates import TargetScales
from sim.scenario import Scenario, scenario_from_dict

__all__ = ["ProcessRunner", "close_runner", "make_runner"]

log = logging.getLogger(__name__)

Plan = dict[int, tuple[np.ndarray, np.ndarray]]
# A shard's new state (in memory, or where its worker wrote it) and its month.
Result = tuple[Agents | StoredShard, ShardMonth]

# --------------------------------------------------------------------------- inside a worker process

# (shard, period index) -> that shard's state after that period; the last two periods are kept,
# because a speculative next month must not overwrite the state the coordinator may still ask for.
_RESIDENT: dict[tuple[int, int], Agents] = {}
_SCENARIOS: dict[str, Scenario] = {}


def _scenario(wire: tuple[str, dict | None]) -> Scenario:
    digest, data = wire
    if digest not in _SCENARIOS:
        _SCENARIOS[digest] = scenario_from_dict(data or {}, source="shard worker")
    return _SCENARIOS[digest]


# shard -> (period index, the month's arrays) of a speculative month, written only once it is used.
_UNWRITTEN: dict[int, tuple[int, ShardMonth]] = {}


def _run_in_worker(wire: tuple[str, dict | None], c: TargetScales, shard: int, agents: Agents | StoredShard | int,
                   period: Period, ids: np.ndarray, t: np.ndarray, lake: str | None,
                   hold: bool = False, keep: bool = True) -> tuple[Agents | StoredShard | None, ShardMonth | None]:
    """Simulate one shard-month; an int ``agents`` names the resident state after that period, a
    stored one is read from its file here (the worker reads its own shard's state).

    With ``lake`` the shard's customers, labels and state are written there (not committed) and
    only their metadata returns, and where the state is; without, the month is kept for
    :func:`_write_in_worker` (``hold``: not returned at all) or returned as arrays. ``keep``: the
    new state stays resident for next month.
    """
    s = _scenario(wire)
    agents = _RESIDENT[(shard, agents)] if isinstance(agents, int) else shard_agents(agents)
    new, month = simulate_shard(s, c, shard, agents, period, ids, t)
    if keep:
        _RESIDENT[(shard, period.index)] = new
    for key in [key for key in _RESIDENT if key[0] == shard and key[1] < period.index - (1 if keep else 0)]:
        del _RESIDENT[key]
    if lake is None:
        if hold:
            _UNWRITTEN[shard] = (period.index, month)
            return None, None
        return new, month
    written = _write_and_keep(Path(lake), s, period, new, month, stage=not keep)
    return stored_state(Path(lake), written), written


def _write_in_worker(wire: tuple[str, dict | None], shard: int, period: Period, lake: str) -> ShardMonth:
    """Write a speculative month the coordinator has now taken (see :func:`_run_in_worker`)."""
    index, month = _UNWRITTEN.pop(shard)
    assert index == period.index, (index, period.index)
    return _write_and_keep(Path(lake), _scenario(wire), period, _RESIDENT[(shard, index)], month)


# shard -> (period index, its month's purchases in time order): kept between the month's two phases.
_KEPT: dict[int, tuple[int, Purchases | str, tuple[np.ndarray, np.ndarray]]] = {}


def _write_and_keep(lake: Path, s: Scenario, period: Period, agents: Agents, month: ShardMonth, *,
                    stage: bool = False) -> ShardMonth:
    """Phase one: write the shard's customers, labels and state; keep its purchases (in memory, or
    with ``stage`` in a staging file: a worker then holds one shard at a time), return their
    per-day counts (the coordinator gives each day its first transaction id from every shard's)."""
    written = write_shard_files(lake, s, period, agents, month)
    p = in_time_order(month.purchases)
    days = purchase_days(p.t)
    _KEPT[month.shard] = (period.index, stage_purchases(lake, period.index + 1, month.shard, p) if stage else p, days)
    return replace(written, purchases=Purchases.empty(), days=days)


def _write_transactions_in_worker(shard: int, period: Period, lake: str, firsts: np.ndarray) -> object:
    """Phase two: the kept purchases as the shard's raw_transactions part (None: it bought nothing)."""
    index, kept, days = _KEPT.pop(shard)
    p = read_staged(kept) if isinstance(kept, str) else kept
    assert index == period.index, (index, period.index)
    return write_shard_transactions(Path(lake), period, shard, p, days, firsts)


def _watch_coordinator(pid: int) -> None:
    """Worker initializer: exit when the coordinator is gone (e.g. ``kill -9``), not linger."""
    import threading
    import time

    def gone() -> bool:
        try:  # a killed coordinator may stay a zombie until its parent reaps it: count that as gone
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

    def watch() -> None:
        while not gone():
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="churnsim-coordinator-watch").start()


def _peak_rss_kib() -> int:
    import resource

    try:  # this address space's own peak (ru_maxrss would carry the forkserver's over)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --------------------------------------------------------------------------- the coordinator's side


def _shutdown(pools: list[ProcessPoolExecutor]) -> None:
    # Not waiting: a worker may still be busy with a speculative month nobody will ask for.
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Speculation:
    """Next month, started in the workers before the coordinator asked for it."""

    key: tuple[str, TargetScales, int]
    period: Period
    plan: Plan
    inputs: dict[int, Agents | StoredShard]
    futures: list[Future[Result]]
    held: bool  # run to be written into a lake (nothing returned), or to return arrays

    def matches(self, state: RunState, period: Period, plan: Plan, *, writing: bool) -> bool:
        return (self.held == writing and self.key == (state.scenario.digest(), state.scales, period.index)
                and (self.period.start, self.period.end) == (period.start, period.end)
                and list(self.plan) == list(plan)
                and all(state.shards.get(k) is self.inputs.get(k) for k in plan)
                and all(np.array_equal(self.plan[k][0], ids) and np.array_equal(self.plan[k][1], t)
                        for k, (ids, t) in plan.items()))


class ProcessRunner:
    """Runs a month's shards in ``workers`` processes; one pool per run, kept across months.

    After returning a month it starts the next one in the workers (from their resident state),
    so the coordinator's table building and Delta commits overlap the simulation. That result is
    used only if the coordinator then asks for exactly that month from exactly that state
    (scenario, target scales, period, arrivals, and the state objects this runner returned);
    otherwise it is dropped and the month is run as asked.

    Use as a context manager (or call :meth:`close`); the pools are also shut down when the
    runner is garbage-collected or the interpreter exits.

    Args:
        workers: worker processes (shard ``k`` always runs in worker ``k % workers``).
        speculate: start the next month early (see above).
        resident: keep each shard's state in its worker between months. False (writing into a
            lake only): a worker reads each shard's state from its file when it runs it and keeps
            nothing (its purchases wait in a staging file between the phases), so no process holds
            more than a shard at a time (no speculation then).
    """

    def __init__(self, workers: int, *, speculate: bool = True, resident: bool = True) -> None:
        if workers < 1:
            raise ValueError(f"workers: expected a positive number (got {workers})")
        self.workers = workers
        self.resident = resident
        self.speculate = speculate and resident
        self._pools: list[ProcessPoolExecutor] = []
        self._returned: dict[int, tuple[Agents | StoredShard, int]] = {}  # shard -> (state object, its period index)
        self._sent: set[tuple[int, str]] = set()  # (worker, scenario digest) already shipped
        self._next: _Speculation | None = None
        self._lake: str | None = None
        self._finalizer = weakref.finalize(self, _shutdown, self._pools)

    def _pool(self, shard: int) -> ProcessPoolExecutor:
        if not self._pools:
            # forkserver: no fork of a parent that already runs Arrow/Delta threads.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["sim.engine"])
            # One single-process pool per worker gives a fixed shard -> worker assignment.
            self._pools.extend(ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_watch_coordinator,
                                                   initargs=(os.getpid(),)) for _ in range(self.workers))
            log.debug("started %d shard workers", self.workers)
        return self._pools[shard % self.workers]

    def write_into(self, lake: Path | None) -> None:
        """From now on workers write their shards' rows and state into ``lake`` (two phases, see the
        module) and return the files and where each shard's state is; None: they return arrays."""
        self._lake = None if lake is None else str(lake)

    def _submit(self, state: RunState, period: Period, plan: Plan, *,
                write: bool = True) -> list[Future[Result]]:
        # Scenarios hold mapping proxies (not picklable): they travel as plain dicts, once per worker.
        digest = state.scenario.digest()
        data = state.scenario.to_dict()
        futures = []
        for k, (ids, t) in plan.items():
            agents = state.shards.get(k)
            agents = Agents.empty() if agents is None else agents
            held, p = self._returned.get(k, (None, -1))
            resident = self.resident and held is agents and (isinstance(agents, StoredShard) or len(agents) > 0)
            wire = (digest, None if (k % self.workers, digest) in self._sent else data)
            self._sent.add((k % self.workers, digest))
            futures.append(self._pool(k).submit(_run_in_worker, wire, state.scales, k,
                                                p if resident else agents, period, ids, t,
                                                self._lake if write else None, not write and self._lake is not None,
                                                self.resident))
        return futures

    def __call__(self, state: RunState, period: Period, plan: Plan) -> Iterator[Result]:
        spec, self._next = self._next, None
        if spec is not None and spec.matches(state, period, plan, writing=self._lake is not None):
            futures = spec.futures
            if self._lake is not None:  # speculated without writing: the workers write it now
                for f in futures:
                    f.result()
                digest, lake = state.scenario.digest(), Path(self._lake)
                writes = [self._pool(k).submit(_write_in_worker, (digest, None), k, period, self._lake) for k in plan]
                futures = [_done_future((stored_state(lake, m), m)) for m in (w.result() for w in writes)]
        else:
            if spec is not None:
                log.debug("speculative %s not used", spec.period.label)
                for f in spec.futures:
                    f.cancel()
            futures = self._submit(state, period, plan)
        results = [f.result() for f in futures]  # in plan (shard) order
        if self._lake is not None:
            results = self._write_transactions(state, period, results)
        self._returned = {m.shard: (a, period.index) for a, m in results}
        if self.speculate:
            self._speculate(state, period, plan, results)
        return iter(results)

    def _write_transactions(self, state: RunState, period: Period,
                            results: list[Result]) -> list[Result]:
        """Phase two of a written month: each shard's worker writes its transactions from the ids
        every shard's per-day counts give it (:func:`sim.batch.tables.first_ids`)."""
        firsts = first_ids(state.next_transaction_id, {m.shard: m.days for _, m in results if m.days is not None})
        futures = [self._pool(m.shard).submit(_write_transactions_in_worker, m.shard, period, self._lake, firsts[m.shard])
                   for _, m in results]
        out = []
        for (agents, m), f in zip(results, futures, strict=True):
            part = f.result()
            out.append((agents, m if part is None else replace(m, files={**m.files, "raw_transactions": part})))
        if not self.resident:
            clear_staging(Path(self._lake), period.index + 1)  # every shard's transactions are written
        return out

    def _speculate(self, state: RunState, period: Period, plan: Plan, results: list[Result]) -> None:
        try:
            after = replace(state, period=period, shards={**state.shards, **{m.shard: a for a, m in results}},
                            next_customer_id=state.next_customer_id + sum(len(ids) for ids, _ in plan.values()))
            nxt = after.next_period()
            ids, t = arrivals(after.scenario, nxt, after.next_customer_id)
            nxt_plan = shards_for(after, ids, t)
        except Exception:  # past the horizon or otherwise unplannable: just don't start early
            log.debug("no speculative month after %s", period.label, exc_info=True)
            return
        futures = self._submit(after, nxt, nxt_plan, write=False)  # nothing lands in the lake unasked
        self._next = _Speculation((after.scenario.digest(), after.scales, nxt.index), nxt, nxt_plan,
                                  {k: after.shards.get(k) for k in nxt_plan}, futures, held=self._lake is not None)

    def worker_peak_rss_mb(self) -> list[float]:
        """Each live worker's peak RSS in MB (forkserver workers are not our children: ask them)."""
        return [f.result() / 1024 for f in [pool.submit(_peak_rss_kib) for pool in self._pools]]

    def close(self) -> None:
        """Shut the worker processes down (idempotent); an unused speculative month is dropped."""
        self._next = None
        self._returned.clear()
        self._sent.clear()
        self._finalizer()

    def __enter__(self) -> ProcessRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _done_future(value: Result) -> Future[Result]:
    f: Future[Result] = Future()
    f.set_result(value)
    return f


def close_runner(runner: ShardRunner) -> None:
    """Release a runner's workers if it has any (``local_runner`` has none)."""
    close = getattr(runner, "close", None)
    if close is not None:
        close()


def make_runner(*, workers: int | None = None, engine: Literal["local", "spark", "process"] = "local") -> ShardRunner:
    """A shard runner for ``engine``.

    Args:
        workers: processes (``local``) or Spark local cores (``spark``); default: all cores but
            one (the coordinator's Delta writer uses it).
            With ``engine='local'`` and one worker, shards run in this process (``local_runner``).
        engine: ``local`` (worker processes), ``spark`` (Spark tasks, see :mod:`sim.execute.spark`), or
            ``process``: every customer one SimPy process (:mod:`sim.engine.process`), in this process
            (``workers`` does not apply): the readable engine, slower, the same tables.
    """
    # Default: one core is left to the coordinator, which commits month k while month k+1 runs.
    n = workers or max((os.cpu_count() or 1) - 1, 1)
    if engine == "spark":
        from sim.execute.spark import SparkRunner

        return SparkRunner(cores=n)
    if engine == "process":
        return process_runner
    if engine != "local":
        raise ValueError(f"engine: expected 'local', 'spark' or 'process' (got {engine!r})")
    return local_runner if n == 1 else ProcessRunner(n)
