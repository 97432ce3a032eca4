"""Two commands on one lake, as real processes a moment apart: one lake, one run, never a mix.

For each pair the second command starts at several delays after the first: before it takes the
lock, while it calibrates, while it commits. Whatever the timing, the lake holds exactly the months
of the commands that exited 0 (the same bytes as a reference made in one go), one scenario digest
in every commit, and a command that lost exits 1 with one line naming the lake and the holder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from analysis.lake import read_table
from sim.batch.tables import TABLES
from sim.execute import runs
from sim.lake.status import lake_status
from sim.scenario import load_scenario
from sim.scenario.shipped import shipped_path

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` for quick feedback; CI runs them all

DELAYS = [0.0, 0.4, 0.9]
# Before the fix two runs mixed when the second (quicker to calibrate) started within ~0.25 s.
RUN_RUN_DELAYS = [0.0, 0.1, 0.2, 0.6]
STAGING = ["staging", "-s", "population.size=3000"]
DEV = ["dev", "-s", "population.size=1500"]
KEYS = {"raw_customers": ["customer_id"], "raw_transactions": ["transaction_id"],
        "customer_labels": ["customer_id", "label_date"], "daily_metrics": ["metric_date", "segment"],
        "customer_history": ["customer_id", "valid_from"]}


def _scenario(args: list[str]):
    return load_scenario(shipped_path(args[0]), overrides=[args[2]])


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> dict[str, Path]:
    """Reference lakes made in one go: staging for 2 months, dev for 4 (version k-1 = its first k months)."""
    root = tmp_path_factory.mktemp("refs")
    runs.run(_scenario(STAGING), root / "staging", months=2)
    runs.run(_scenario(DEV), root / "dev", months=4)
    return {"staging": root / "staging", "dev": root / "dev"}


def _months(lake: Path) -> int:
    path = lake / "raw_customers"
    return (DeltaTable(str(path)).transaction_version("churnsim") or 0) if DeltaTable.is_deltatable(str(path)) else 0


def _tables(lake: Path, version: int | None = None) -> dict[str, pa.Table]:
    return {t: read_table(lake, t, version=version).sort_by([(k, "ascending") for k in KEYS[t]]) for t in TABLES}


def _assert_holds(lake: Path, ref: Path, months: int) -> None:
    """``lake`` holds exactly the first ``months`` of ``ref``, all of one scenario."""
    assert _months(lake) == months
    if months == 0:
        assert not any((lake / t).exists() for t in TABLES)
        return
    digest = json.loads(DeltaTable(str(ref / "raw_customers")).history(1)[0]["churnsim"])["scenario_digest"]
    got, want = _tables(lake), _tables(ref, version=months - 1)
    for t in TABLES:
        assert got[t].equals(want[t]), t
        digests = {json.loads(h["churnsim"])["scenario_digest"] for h in DeltaTable(str(lake / t)).history()
                   if "churnsim" in h}
        assert digests == {digest}, t
        assert DeltaTable(str(lake / t)).transaction_version("churnsim") == months, t
    if DeltaTable.is_deltatable(str(ref / "quality_manifest")):  # injected defects (orphans among them): the same
        cols = read_table(ref, "quality_manifest").column_names[:3]
        order = [(c, "ascending") for c in cols]
        assert read_table(lake, "quality_manifest").sort_by(order).equals(
            read_table(ref, "quality_manifest", version=months - 1).sort_by(order))
    else:  # no customer's transactions without the customer (what a mixed lake shows)
        tx, customers = got["raw_transactions"], got["raw_customers"]
        assert set(tx.column("customer_id").to_pylist()) <= set(customers.column("customer_id").to_pylist())
    assert lake_status(lake).state.period.index == months - 1


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sim", "-q", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _pair(first: list[str], second: list[str], delay: float) -> list[tuple[int, str, int]]:
    """(exit code, stderr, pid) of two commands, the second started ``delay`` s after the first."""
    procs = [_start(*first)]
    time.sleep(delay)
    procs.append(_start(*second))
    out = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        out.append((p.returncode, err, p.pid))
    return out


def _assert_loser(lake: Path, results: list[tuple[int, str, int]], *, refusals: tuple[str, ...] = ()) -> None:
    """Every command that failed exited 1 with one line naming the lake and its holder (or a refusal)."""
    pids = {pid for _, _, pid in results}
    for code, err, pid in results:
        if code == 0:
            continue
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, (code, err)
        assert lines[0].startswith(f"Error: {lake}: "), err
        if "is writing this lake" in lines[0]:
            holder = next(p for p in pids if p != pid)
            assert f"pid {holder} on {os.uname().nodename}" in lines[0], err
        else:
            assert any(r in lines[0] for r in refusals), err


@pytest.mark.parametrize("delay", RUN_RUN_DELAYS)
def test_run_run_one_wins_and_the_lake_holds_only_its_run(tmp_path, refs, delay):
    lake = tmp_path / "lake"
    results = _pair(["run", *STAGING, "--lake", str(lake), "--months", "2"],
                    ["run", *DEV, "--lake", str(lake), "--months", "1"], delay)
    _assert_loser(lake, results, refusals=("holds a run of another scenario",))
    ok = [code == 0 for code, _, _ in results]
    assert sum(ok) == 1, results
    if ok[0]:
        _assert_holds(lake, refs["staging"], 2)
    else:
        _assert_holds(lake, refs["dev"], 1)
    intent = json.loads((lake / "_churnsim" / "intent.json").read_text())
    assert intent["scenario_digest"] == _scenario(STAGING if ok[0] else DEV).digest()


@pytest.mark.parametrize("delay", DELAYS)
def test_run_append_the_append_continues_a_whole_run_or_writes_nothing(tmp_path, refs, delay):
    lake = tmp_path / "lake"
    results = _pair(["run", *DEV, "--lake", str(lake), "--months", "2"],
                    ["append", "--lake", str(lake), "--months", "1"], delay)
    _assert_loser(lake, results, refusals=("no churnsim state to append to",))
    run_ok, append_ok = (code == 0 for code, _, _ in results)
    assert run_ok or not append_ok, results  # the append needs the run's state
    _assert_holds(lake, refs["dev"], 2 * run_ok + append_ok)


@pytest.mark.parametrize("delay", DELAYS)
def test_append_append_each_month_once(tmp_path, refs, delay):
    lake = tmp_path / "lake"
    runs.run(_scenario(DEV), lake, months=1)
    results = _pair(["append", "--lake", str(lake), "--until", "2024-03"],
                    ["append", "--lake", str(lake), "--months", "1"], delay)
    _assert_loser(lake, results)
    until_ok, months_ok = (code == 0 for code, _, _ in results)
    assert until_ok or months_ok, results
    held = _months(lake)
    # Both: 3 then 4, or (the --months one first) 2 then 3. One: its own target.
    expected = {3, 4} if until_ok and months_ok else {3} if until_ok else {2}
    assert held in expected, (held, results)
    _assert_holds(lake, refs["dev"], held)


@pytest.mark.parametrize("delay", DELAYS)
def test_optimize_append_keeps_every_month_once(tmp_path, refs, delay):
    lake = tmp_path / "lake"
    runs.run(_scenario(DEV), lake, months=2)
    results = _pair(["append", "--lake", str(lake), "--until", "2024-03"],
                    ["optimize", "--lake", str(lake)], delay)
    _assert_loser(lake, results)
    append_ok, _ = (code == 0 for code, _, _ in results)
    _assert_holds(lake, refs["dev"], 3 if append_ok else 2)
    assert not (lake / "_churnsim" / "lock").exists()
