"""The process engine (every customer one SimPy process) writes the same lake as the batched engine.

Exact equality, row for row and value for value, for every shipped scenario, straight and as
run + append: both engines use the same keyed random numbers and the same per-customer
arithmetic, in the same order (see sim/engine/process.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from sim.cli import main
from sim.engine import process
from sim.engine.process import process_runner
from sim.errors import InfeasibleTargetError
from sim.execute import runs
from sim.execute.memory import simulate
from sim.execute.parallel import make_runner
from sim.execute.targets import solve_targets
from sim.scenario import load_scenario
from sim.scenario.shipped import shipped, shipped_path

SIZE, MONTHS = 300, 6
SCENARIOS = sorted(n for n in shipped() if n != "environments")  # environments is a config, not a scenario


def _scenario(name: str, size: int = SIZE):
    s = load_scenario(shipped_path(name), overrides=[f"population.size={size}"])
    try:
        solve_targets(s)
    except InfeasibleTargetError:
        # A few hundred customers cannot meet some scenarios' churn target; calibrate the rest.
        s = load_scenario(shipped_path(name), overrides=[f"population.size={size}", "targets.churn_rate=null"])
    return s


def _read(path: Path) -> pa.Table:
    t = ds.dataset(DeltaTable(str(path)).file_uris(), format="parquet").to_table()
    return t.sort_by([(c, "ascending") for c in t.column_names if not pa.types.is_nested(t.schema.field(c).type)])


def _lake(lake: Path) -> dict[str, pa.Table]:
    """Every Delta table of the lake, the engine's checkpointed state included, in a canonical order."""
    paths = [p for p in lake.iterdir() if p.is_dir() and DeltaTable.is_deltatable(str(p))]
    return {p.name: _read(p) for p in [*paths, lake / "_churnsim" / "state"]}


def _assert_same(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].num_rows > 0 or name == "quality_manifest", name
        assert a[name].schema == b[name].schema, name
        for col in a[name].column_names:
            x, y = a[name][col], b[name][col]
            if pa.types.is_floating(x.type):  # the state's NaNs (no purchase yet, still active) are equal too
                assert x.is_null().equals(y.is_null()), (name, col)
                x, y = (v.fill_null(0.0).to_numpy() for v in (x, y))
                assert np.array_equal(x, y, equal_nan=True), (name, col)
            else:
                assert x.equals(y), (name, col)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_process_engine_writes_the_same_lake(tmp_path, name):
    s = _scenario(name)
    lakes = {}
    for engine, runner in (("batched", None), ("process", process_runner)):
        kw = {} if runner is None else {"runner": runner}
        runs.run(s, tmp_path / engine, months=MONTHS, **kw)
        runs.run(s, tmp_path / f"{engine}-split", months=MONTHS // 2, **kw)
        runs.append(tmp_path / f"{engine}-split", months=MONTHS - MONTHS // 2, **kw)
        lakes[engine] = _lake(tmp_path / engine)
        lakes[f"{engine}-split"] = _lake(tmp_path / f"{engine}-split")
    _assert_same(lakes["batched"], lakes["process"])
    _assert_same(lakes["batched-split"], lakes["process-split"])
    assert lakes["process"]["raw_transactions"].num_rows > 500


def test_python_api_takes_the_process_engine():
    s = _scenario("ab_retention")
    scales = solve_targets(s)
    batched = simulate(s, months=3, scales=scales)
    processes = simulate(s, months=3, scales=scales, runner=make_runner(engine="process"))
    assert batched.keys() == processes.keys()
    for name in batched:
        assert batched[name].equals(processes[name]), name


def test_every_live_customer_is_one_process_per_month(monkeypatch):
    started: Counter[tuple[int, int]] = Counter()
    real = process.customer

    def counted(env, me, world):
        started[(world.period.index, me.id)] += 1
        return real(env, me, world)

    monkeypatch.setattr(process, "customer", counted)
    s = _scenario("baseline")
    tables = simulate(s, months=2, scales=solve_targets(s), runner=process_runner)
    assert set(started.values()) == {1}
    lab = tables["customer_labels"].to_pylist()
    d0, d1 = sorted({r["label_date"] for r in lab})
    month0 = {r["customer_id"] for r in lab if r["label_date"] == d0}
    alive0 = {r["customer_id"] for r in lab if r["label_date"] == d0 and not r["dropped_out"]}
    month1 = {r["customer_id"] for r in lab if r["label_date"] == d1}
    # Month 0: every customer; month 1: those still alive, and the month's newcomers.
    assert {c for m, c in started if m == 0} == month0
    assert {c for m, c in started if m == 1} == alive0 | (month1 - month0)
    assert alive0 < month0


def test_cli_runs_the_process_engine(tmp_path):
    r = CliRunner()
    args = ["baseline", "--months", "2", "-s", "population.size=300", "-s", "targets.churn_rate=null"]
    for engine in ("local", "process"):
        res = r.invoke(main, ["-q", "run", *args, "--lake", str(tmp_path / engine), "--engine", engine, "--workers", "1"])
        assert res.exit_code == 0, res.output
    _assert_same(_lake(tmp_path / "local"), _lake(tmp_path / "process"))


def test_a_graduation_at_the_months_start_is_the_same_in_both_engines(monkeypatch, tmp_path):
    """Newcomers graduating exactly at the next month's start: the process engine woke them there
    as new customers and re-set their clocks on graduating at the same instant (a rounding apart
    from the batched engine, which skips that empty span)."""
    from sim.engine import month
    from sim.model.calendar import epoch_day

    feb = float(epoch_day(date(2024, 2, 1)))  # 2024-02-01
    real = month.create_agents

    def graduating_on_the_1st(*args, **kw):
        agents, age = real(*args, **kw)
        agents.graduate_at[agents.since < feb] = feb
        return agents, age

    monkeypatch.setattr(month, "create_agents", graduating_on_the_1st)
    s = load_scenario(shipped_path("baseline"), overrides=["population.size=2000"])
    runs.run(s, tmp_path / "batched", months=3)
    runs.run(s, tmp_path / "process", months=3, runner=process_runner)
    _assert_same(_lake(tmp_path / "batched"), _lake(tmp_path / "process"))  # the state's clocks included
