"""What ``customer_history`` costs: a preset's jobs with and without it, alternating in fresh processes.

The baseline is the same job with the engine skipping :func:`sim.model.changes.month_changes`
and the batch and sinks the customer_history table (its rows, strings and monthly commit): the
bench-only :data:`~sim.model.changes.BENCH_NO_HISTORY_ENV` set in the baseline's process, never in
a run of a user's. Each round runs both jobs (in memory, to Delta) with and without the history,
each in a fresh interpreter, in an order that alternates from round to round (with, without;
then without, with), so slow drift of a shared machine falls on both sides. The cost is the
median over rounds of each round's ratio, in wall seconds and in CPU seconds (the process's
threads; CPU time is less disturbed by other load on the machine), and the fastest run with
the history against the fastest without.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Literal

from sim.bench import Size, in_memory_job, preset, to_delta_job
from sim.model.changes import BENCH_NO_HISTORY_ENV

__all__ = ["JOBS", "history_cost", "history_round"]

log = logging.getLogger(__name__)

Job = Literal["in_memory", "to_delta"]
JOBS: tuple[Job, ...] = ("in_memory", "to_delta")


def history_round(size: Size, job: Job) -> dict[str, Any]:
    """One job on a preset in this process: wall and CPU seconds, and the customer_history rows it made."""
    s = preset(size)
    wall, cpu = time.perf_counter(), time.process_time()
    out = in_memory_job(s) if job == "in_memory" else to_delta_job(s)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "history_rows": out["rows"]["customer_history"]}


def _fresh(size: Size, job: Job, *, history: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != BENCH_NO_HISTORY_ENV}
    if not history:
        env[BENCH_NO_HISTORY_ENV] = "1"
    code = ("import json; from sim.bench_history import history_round; "
            f"print(json.dumps(history_round({size!r}, {job!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ratios(with_: list[float], without: list[float]) -> list[float]:
    return [round(w / o, 3) for w, o in zip(with_, without, strict=True)]


def history_cost(*, size: Size = "large", rounds: int = 5) -> dict[str, Any]:
    """Each job's seconds with and without customer_history over ``rounds`` rounds, and the cost ratios.

    ``ratio`` (``cpu_ratio``) is the median of the rounds' with/without wall (CPU) seconds:
    1.05 means the history makes the job 5 % slower. ``fastest_ratio`` (``fastest_cpu_ratio``)
    is the fastest run with it against the fastest without: the steadier of the two where other
    load comes and goes (each round's own ratio is in ``ratios``, ``cpu_ratios``).
    """
    if rounds < 1:
        raise ValueError(f"rounds: expected at least 1 (got {rounds})")
    runs: dict[Job, dict[bool, list[dict[str, Any]]]] = {job: {True: [], False: []} for job in JOBS}
    for r in range(rounds):
        for history in ((True, False) if r % 2 == 0 else (False, True)):
            for job in JOBS:
                log.info("history cost, round %d/%d: %s %s the history", r + 1, rounds, job,
                         "with" if history else "without")
                runs[job][history].append(_fresh(size, job, history=history))
    out: dict[str, Any] = {"size": size, "rounds": rounds}
    for job, by in runs.items():
        w, o = by[True], by[False]
        out[job] = {
            "with_seconds": [x["seconds"] for x in w], "without_seconds": [x["seconds"] for x in o],
            "with_cpu_seconds": [x["cpu_seconds"] for x in w], "without_cpu_seconds": [x["cpu_seconds"] for x in o],
            "with_median": round(statistics.median(x["seconds"] for x in w), 3),
            "without_median": round(statistics.median(x["seconds"] for x in o), 3),
            # Each round's own ratio (its spread is the machine's noise), and their median.
            "ratios": _ratios([x["seconds"] for x in w], [x["seconds"] for x in o]),
            "cpu_ratios": _ratios([x["cpu_seconds"] for x in w], [x["cpu_seconds"] for x in o]),
            "history_rows": w[0]["history_rows"], "baseline_history_rows": max(x["history_rows"] for x in o),
        }
    for job in JOBS:
        j = out[job]
        j["ratio"] = round(statistics.median(j["ratios"]), 3)
        j["cpu_ratio"] = round(statistics.median(j["cpu_ratios"]), 3)
        # Fastest against fastest (timeit's rule): a shared machine's load only ever adds time.
        j["fastest_ratio"] = round(min(j["with_seconds"]) / min(j["without_seconds"]), 3)
        j["fastest_cpu_ratio"] = round(min(j["with_cpu_seconds"]) / min(j["without_cpu_seconds"]), 3)
    return out
