"""Shards give the same tables whatever runs them: 1, 2 or 8 worker processes, any order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from sim.batch.tables import TABLES
from sim.engine.state import initial_state
from sim.engine.step import local_runner
from sim.execute.memory import simulate
from sim.execute.parallel import ProcessRunner, make_runner
from sim.execute.targets import solve_targets
from sim.scenario import Scenario, scenario_from_dict


def test_one_worker_is_local_runner() -> None:
    assert make_runner(workers=1) is local_runner


@pytest.mark.parametrize("workers", [2, 8])
def test_workers_give_identical_tables(assert_same_tables, scenario: Scenario, reference: dict[str, pa.Table], workers: int) -> None:
    with ProcessRunner(workers) as runner:
        assert_same_tables(simulate(scenario, runner=runner), reference)


def test_shard_order_does_not_matter(assert_same_tables, scenario: Scenario, reference: dict[str, pa.Table]) -> None:
    def backwards(state, period, plan):
        return reversed(list(local_runner(state, period, dict(reversed(list(plan.items()))))))

    assert_same_tables(simulate(scenario, runner=backwards), reference)


def test_retried_month_ships_state_again(scenario: Scenario) -> None:
    """Stepping twice from the same state (a retried month) must not reuse a worker's newer copy."""
    from sim.engine.step import step

    s0 = initial_state(scenario, solve_targets(scenario))
    with ProcessRunner(2) as runner:
        s1, _, _ = step(s0, runner=runner)
        a, _, ma = step(s1, runner=runner)
        b, _, mb = step(s1, runner=runner)
    ref, _, mr = step(s1)
    for x, y in zip(ma + mb, mr + mr, strict=True):
        assert (x.purchases.t == y.purchases.t).all()
    for k in ref.shards:
        np.testing.assert_array_equal(a.shards[k].last, ref.shards[k].last)


def test_store_run_through_workers(assert_same_tables, tmp_path: Path, scenario: Scenario, reference: dict[str, pa.Table]) -> None:
    from analysis.lake import read_table
    from sim.execute import runs

    with make_runner(workers=2) as runner:
        runs.run(scenario, tmp_path / "lake", runner=runner)
    assert_same_tables({n: read_table(tmp_path / "lake", n) for n in TABLES}, reference)


def test_bench_cli_small_json() -> None:
    from sim.cli import main

    result = CliRunner().invoke(main, ["bench", "--size", "small", "--workers", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {"in_memory", "to_delta", "speedup", "floor", "machine"} <= out.keys()
    for key in ("seconds", "transactions", "transactions_per_s"):
        assert out["in_memory"][key] > 0
    assert out["to_delta"]["seconds"] > 0 and out["floor"]["seconds"] > 0
    assert out["to_delta"]["x_floor"] > 0 and out["speedup"]["speedup"] > 0
    assert out["floor"]["rows"] == out["to_delta"]["rows"]


def test_speculative_month_is_used_only_when_it_matches(scenario: Scenario) -> None:
    """The next month starts early; a changed scenario (as in `append --scenario`) discards it."""
    from dataclasses import replace

    from sim.engine.step import step

    drifted = scenario_from_dict({**scenario.to_dict(), "drifts": [{"name": "up", "parameter": "spend_median",
                                                       "start": "2024-01-01", "multiplier": 1.5}]})
    s0 = initial_state(scenario, solve_targets(scenario))
    with ProcessRunner(2) as runner:
        s1, _, _ = step(s0, runner=runner)
        assert runner._next is not None and runner._next.period.index == 1
        got, _, months = step(replace(s1, scenario=drifted), runner=runner)
    want, _, ref = step(replace(s1, scenario=drifted))
    for x, y in zip(months, ref, strict=True):
        np.testing.assert_array_equal(x.purchases.amount, y.purchases.amount)
    for k in want.shards:
        np.testing.assert_array_equal(got.shards[k].due, want.shards[k].due)
