"""Shards give the same tables whatever runs them: 1, 2 or 8 worker processes, any order."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


def test_transaction_ids_are_dense_and_follow_time_order_by_day(reference: dict[str, pa.Table]) -> None:
    tx = reference["raw_transactions"]
    ids = tx["transaction_id"].to_numpy()
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    day = tx["transaction_date"].cast(pa.int32()).to_numpy()
    shard = (tx["customer_id"].to_numpy() - 1) // 500
    ts = tx["transaction_ts"].cast(pa.int64()).to_numpy()
    cid = tx["customer_id"].to_numpy()
    assert len(np.unique(shard)) == 6  # several shards' purchases interleave on each day
    # Rows in id order are in (day, shard, time, customer) order.
    order = np.lexsort((cid, ts, shard, day))
    np.testing.assert_array_equal(order, np.arange(len(ids)))


def test_workers_write_every_shards_transactions_and_the_coordinator_only_commits(tmp_path: Path, scenario: Scenario,
                                                                                  reference: dict[str, pa.Table]) -> None:
    from deltalake import DeltaTable

    from analysis.lake import read_table
    from sim.execute import runs

    with make_runner(workers=2) as runner:
        runs.run(scenario, tmp_path / "lake", runner=runner, months=2)
    files = sorted(Path(u).name for u in DeltaTable(str(tmp_path / "lake" / "raw_transactions")).file_uris())
    # One part per shard per month, named by the shard that wrote it (none by the coordinator, "all").
    assert len(files) == 12 and not [f for f in files if "-all-" in f]
    assert {f.split("-")[2] for f in files} == {f"{k:06d}" for k in range(6)}
    got = read_table(tmp_path / "lake", "raw_transactions").sort_by("transaction_id")
    # The in-process reference's first two months, row for row (ids are dense, month after month).
    ref = reference["raw_transactions"]
    n = pc.sum(pc.less(ref["transaction_date"], pa.scalar(dt.date(2024, 3, 1), pa.date32()))).as_py()
    assert n > 0 and got.equals(ref.slice(0, n))


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "read-each-month"])
def test_workers_own_their_shards_state_the_coordinator_only_knows_where_it_is(
        assert_same_tables, tmp_path: Path, scenario: Scenario, reference: dict[str, pa.Table], resident: bool) -> None:
    from analysis.lake import read_table
    from sim.engine.state import StoredShard
    from sim.execute import runs
    from sim.lake.status import lake_status

    lake = tmp_path / "lake"
    with ProcessRunner(2, resident=resident) as runner:
        state = runs.run(scenario, lake, runner=runner, months=2)
        assert sorted(state.shards) == list(range(6))
        assert all(isinstance(a, StoredShard) and Path(a.where).is_file() for a in state.shards.values())
        # A resumed lake's state is where the state commit left it, read by the worker that runs the shard.
        resumed = lake_status(lake).state
        assert all(isinstance(a, StoredShard) for a in resumed.shards.values())
        np.testing.assert_array_equal(resumed.shards[3].load().last, state.shards[3].load().last)
        runs.append(lake, until="2024-04", runner=runner)
    assert_same_tables({n: read_table(lake, n) for n in TABLES}, reference)
    assert not (lake / "_churnsim" / "staging").exists() or not any((lake / "_churnsim" / "staging").iterdir())


def test_bench_cli_small_json() -> None:
    from sim.cli import main

    result = CliRunner().invoke(main, ["bench", "--size", "small", "--workers", "2", "--history-rounds", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {"in_memory", "to_delta", "speedup", "floor", "machine", "history_cost"} <= out.keys()
    for job in ("in_memory", "to_delta"):
        cost = out["history_cost"][job]
        assert cost["ratio"] > 0 and cost["cpu_ratio"] > 0 and cost["with_median"] > 0 and cost["without_median"] > 0
        assert cost["ratios"] == [cost["ratio"]]  # one round: its ratio is the median
        assert cost["fastest_ratio"] == round(cost["with_seconds"][0] / cost["without_seconds"][0], 3)
        assert cost["history_rows"] == out[job]["rows"]["customer_history"] > 0 and cost["baseline_history_rows"] == 0
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
