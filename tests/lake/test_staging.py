"""Purchases staged between a month's two phases (stateless Spark tasks), and their clean-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim import scenario_from_dict
from sim.execute import runs
from sim.lake.maintenance import optimize
from sim.lake.staging import clear_staging, read_staged, stage_purchases, staging_dir
from sim.model.agents import Purchases


def _purchases(n: int) -> Purchases:
    rng = np.random.default_rng(3)
    return Purchases(np.arange(n, dtype=np.int64), np.sort(rng.uniform(19_700, 19_730, n)), rng.uniform(1, 99, n),
                     rng.integers(0, 5, n).astype(np.int8), rng.integers(0, 3, n).astype(np.int8),
                     rng.integers(0, 6, n).astype(np.int8))


def test_staged_purchases_read_back_as_written_and_a_month_clears_alone(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for n in (1000, 0):
        p = _purchases(n)
        back = read_staged(stage_purchases(lake, 2, 7, p))
        for f in ("customer_id", "t", "amount", "segment", "channel", "category"):
            got, want = getattr(back, f), getattr(p, f)
            assert got.dtype == want.dtype and np.array_equal(got, want), f
    other = stage_purchases(lake, 3, 7, _purchases(5))
    assert len(list(staging_dir(lake, 2).iterdir())) == 2 and not list(staging_dir(lake, 2).glob("*.tmp"))
    clear_staging(lake, 2)
    assert not staging_dir(lake, 2).exists() and Path(other).exists()


def test_optimize_removes_what_a_killed_run_left_in_staging(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict({"seed": 1, "calendar": {"months": 1}, "population": {"size": 300}}), lake)
    left = stage_purchases(lake, 2, 0, _purchases(10))  # a month whose driver died between its phases
    optimize(lake, retention_hours=0)
    assert not Path(left).exists() and not staging_dir(lake).exists()
