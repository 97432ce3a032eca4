"""The Delta lake: resume equivalence, exactly-once under faults and kills, refusals, time travel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

import sim.lake.status as lake_status_module
from analysis.lake import read_table
from sim import InfeasibleTargetError, ScenarioError, StorageError, scenario_from_dict
from sim.batch.tables import TABLES
from sim.execute import runs
from sim.lake.maintenance import optimize
from sim.lake.sink import MANIFEST_TABLE
from sim.lake.state import STATE_FORMAT
from sim.lake.status import lake_status

SCEN = {"name": "t", "seed": 11, "calendar": {"start_date": "2024-01-01", "months": 6},
        "population": {"size": 1500, "shard_size": 500}}
KEYS = {"raw_customers": ["customer_id"], "raw_transactions": ["transaction_id"],
        "customer_labels": ["customer_id", "label_date"], "daily_metrics": ["metric_date", "segment"],
        "customer_history": ["customer_id", "valid_from"]}


def _tables(lake: Path, version: int | None = None) -> dict[str, pa.Table]:
    return {t: read_table(lake, t, version=version).sort_by([(k, "ascending") for k in KEYS[t]]) for t in TABLES}


def _write_scenario(tmp_path: Path, extra: dict | None = None) -> Path:
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SCEN, **(extra or {})}))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, pa.Table]:
    lake = tmp_path_factory.mktemp("ref") / "lake"
    runs.run(scenario_from_dict(SCEN), lake)
    return _tables(lake)


def _assert_exactly(reference: dict[str, pa.Table], lake: Path) -> None:
    got = _tables(lake)
    for t in TABLES:
        assert got[t].num_rows == reference[t].num_rows, t
        assert got[t].equals(reference[t]), t
    ids = got["raw_transactions"].column("transaction_id").to_numpy()
    assert len(set(ids)) == len(ids)


def test_run_then_append_equals_one_run(tmp_path, reference):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=3)
    runs.append(lake, months=3)
    _assert_exactly(reference, lake)


def test_one_delta_version_per_month_and_time_travel(tmp_path, reference):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=3)
    for t in TABLES:
        assert DeltaTable(str(lake / t)).version() == 2
    for k in range(3):
        tx = read_table(lake, "raw_transactions", version=k)
        months = set(pa.compute.strftime(tx.column("transaction_date"), "%Y-%m").to_pylist())
        # The first batch also holds the history: initial customers' last purchases before the window.
        assert {m for m in months if m >= "2024-01"} == {f"2024-0{m + 1}" for m in range(k + 1)}
    meta = DeltaTable(str(lake / "raw_transactions")).history(1)[0]
    assert '"month": "2024-03"' in meta["churnsim"] and '"seed": 11' in meta["churnsim"]


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", "-q", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


# Each month has 11 points: before/after each of 5 tables, after the state; then one after the lock is
# released (66 + 1 for 6 months: the work is done, the command has not reported). Cover every kind of
# point in the first month, the month boundary, a later month, and the end.
@pytest.mark.slow
@pytest.mark.parametrize("die_at", [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 14, 23, 33, 66, 67])
def test_a_crash_at_any_point_then_rerun_gives_no_duplicate_and_no_gap(tmp_path, reference, die_at):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    crashed = _cli("run", str(scenario), "--lake", str(lake), env={"CHURNSIM_DIE_AT": str(die_at)})
    assert crashed.returncode == 137, crashed.stderr
    rerun = _cli("run", str(scenario), "--lake", str(lake))
    assert rerun.returncode == 0, rerun.stderr
    _assert_exactly(reference, lake)


@pytest.mark.slow
@pytest.mark.parametrize("die_at", [2, 10, 11, 16])
def test_an_interrupted_append_rerun_ends_where_the_uninterrupted_one_would(tmp_path, reference, die_at):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    assert _cli("run", str(scenario), "--lake", str(lake), "--months", "2").returncode == 0
    crashed = _cli("append", "--lake", str(lake), "--months", "4", env={"CHURNSIM_DIE_AT": str(die_at)})
    assert crashed.returncode == 137
    rerun = _cli("append", "--lake", str(lake), "--months", "4")
    assert rerun.returncode == 0, rerun.stderr
    _assert_exactly(reference, lake)


def _tree(lake: Path) -> dict[str, bytes]:
    """Every file under ``lake`` and its bytes (to show a command wrote nothing).

    Not the lock: a killed writer leaves its (unheld) lock file, which the next command removes.
    """
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*"))
            if p.is_file() and p.name != "lock"}


# The scheduled form: the same `append --until` every time, killed at every kind of point of its 3
# months (33 points, then 34: after the lock, before it reports), then simply run again.
@pytest.mark.slow
@pytest.mark.parametrize("die_at", [1, 5, 10, 11, 12, 22, 27, 33, 34])
def test_a_killed_append_until_retried_as_is_ends_exactly_at_its_month(tmp_path, reference, die_at):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=3)
    crashed = _cli("append", "--lake", str(lake), "--until", "2024-06", env={"CHURNSIM_DIE_AT": str(die_at)})
    assert crashed.returncode == 137, crashed.stderr
    retry = _cli("append", "--lake", str(lake), "--until", "2024-06")
    assert retry.returncode == 0, retry.stderr
    _assert_exactly(reference, lake)
    before = _tree(lake)
    again = subprocess.run([sys.executable, "-m", "sim", "append", "--lake", str(lake), "--until", "2024-06"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{lake}: already holds 2024-06 (through 2024-06-30); nothing written"
    assert _tree(lake) == before


def test_append_months_prints_its_until_and_that_until_retries_safely(tmp_path, reference):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=3)
    # Killed after its last commit, before it reports: the work is done, no success was printed.
    crashed = subprocess.run([sys.executable, "-m", "sim", "append", "--lake", str(lake), "--months", "3"],
                             capture_output=True, text=True, env={**os.environ, "CHURNSIM_DIE_AT": "34"})
    assert crashed.returncode == 137
    assert crashed.stderr.splitlines()[0] == f"{lake}: appending through 2024-06 (to retry: --until 2024-06)"
    before = _tree(lake)
    retry = _cli("append", "--lake", str(lake), "--until", "2024-06")
    assert retry.returncode == 0, retry.stderr
    assert _tree(lake) == before
    _assert_exactly(reference, lake)


def test_until_before_the_last_month_is_refused_naming_both_and_bad_forms_exit_2(tmp_path):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=2)
    before = _tree(lake)
    early = _cli("append", "--lake", str(lake), "--until", "2024-01")
    assert early.returncode == 1
    assert early.stderr.strip() == (f"Error: {lake}: --until 2024-01 is before the lake's last month, 2024-02; "
                                    "an append cannot remove months")
    bad = _cli("append", "--lake", str(lake), "--until", "June")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "Error: --until: expected a month as YYYY-MM, e.g. 2024-06 (got 'June')"
    both = _cli("append", "--lake", str(lake), "--until", "2024-04", "--months", "1")
    assert both.returncode == 2 and "--months and --until: expected one of them" in both.stderr
    assert _tree(lake) == before


def test_a_finished_run_retried_is_complete_and_another_horizon_or_scenario_still_refuses(tmp_path):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    assert _cli("run", str(scenario), "--lake", str(lake), "--months", "2").returncode == 0
    before = _tree(lake)
    again = subprocess.run([sys.executable, "-m", "sim", "run", str(scenario), "--lake", str(lake), "--months", "2"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{lake}: complete: t through 2024-02-29 (2 months, as asked); nothing written"
    longer = _cli("run", str(scenario), "--lake", str(lake), "--months", "3")
    assert longer.returncode == 1
    assert longer.stderr.strip() == (f"Error: {lake}: holds a finished run of this scenario (through 2024-02-29); "
                                     "use `churnsim append` to add months, or --overwrite to replace it")
    other = _cli("run", str(scenario), "--lake", str(lake), "--months", "2", "-s", "seed=12")
    assert other.returncode == 1 and "holds a run of another scenario" in other.stderr
    assert _tree(lake) == before


def test_an_interrupted_run_rerun_with_another_horizon_is_refused_naming_both(tmp_path):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    assert _cli("run", str(scenario), "--lake", str(lake), "--months", "3",
                env={"CHURNSIM_DIE_AT": "14"}).returncode == 137
    before = _tree(lake)
    other = _cli("run", str(scenario), "--lake", str(lake), "--months", "2")
    assert other.returncode == 1
    assert other.stderr.strip() == (f"Error: {lake}: holds an interrupted run of this scenario heading for 2024-03 "
                                    "(3 months, not 2); rerun it with --months 3 to finish it, or --overwrite to "
                                    "replace it")
    assert _tree(lake) == before


def _damage_intent(lake: Path) -> Path:
    path = lake / "_churnsim" / "intent.json"
    path.write_text('{"command": "append", "target_per')
    return path


def _damage_state(lake: Path) -> Path:
    log = sorted((lake / "_churnsim" / "state" / "_delta_log").glob("*.json"))[-1]
    log.write_text("not a delta log\n")
    return lake / "_churnsim" / "state"


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_damage_intent, _damage_state])
def test_a_damaged_intent_or_state_is_one_line_exit_1_and_nothing_written(tmp_path, damage):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=2)
    path = damage(lake)
    before = _tree(lake)
    for args in (("append", "--lake", str(lake)), ("append", "--lake", str(lake), "--until", "2024-04"),
                 ("run", str(scenario), "--lake", str(lake), "--months", "2")):
        out = _cli(*args)
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: unreadable ("), out.stderr
        assert "--overwrite" in lines[0] and "Traceback" not in out.stderr
        assert _tree(lake) == before
    # What the line says to do works: --overwrite makes the lake again.
    assert _cli("run", str(scenario), "--lake", str(lake), "--months", "2", "--overwrite").returncode == 0
    assert lake_status(lake).damaged is None


def test_an_intent_of_another_shape_is_reported_as_damaged_not_raised(tmp_path):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=1)
    path = lake / "_churnsim" / "intent.json"
    for text in ("[]", '{"command": "append", "target_period": 3}', '{"command": "run"}'):
        path.write_text(text)
        damaged = lake_status(lake).damaged
        assert damaged.startswith(f"{path}: unreadable (ValueError: not a churnsim intent"), damaged
        with pytest.raises(StorageError, match="not a churnsim intent"):
            runs.append(lake, until="2024-03")


def test_a_deleted_intent_is_continued_by_append_until(tmp_path, reference):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=3)
    (lake / "_churnsim" / "intent.json").unlink()
    runs.append(lake, until="2024-06")
    _assert_exactly(reference, lake)


@pytest.mark.slow
@pytest.mark.parametrize("inside", ["raw_transactions", "raw_transactions/sub", "_churnsim/state"])
def test_a_lake_path_in_a_delta_table_is_refused_with_exit_2_before_anything_is_written(tmp_path, inside):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=1)
    before = _tree(lake)
    table = lake / inside.removesuffix("/sub")
    for args in (("run", str(scenario)), ("append",), ("optimize",)):
        out = _cli(*args, "--lake", str(lake / inside))
        assert out.returncode == 2, out.stderr
        where = "is the Delta table" if inside != "raw_transactions/sub" else "is inside the Delta table"
        assert out.stderr.strip() == (f"Error: {lake / inside}: expected a lake directory (the one that holds the "
                                      f"tables); it {where} {table} (did you mean {lake}?)")
    assert _tree(lake) == before


def test_a_file_uri_lake_is_the_lake_at_its_path(tmp_path, reference):
    """``--lake file:///...`` (and the Python API's ``lake=``) write the lake at the URI's path."""
    lake = tmp_path / "uri lake"  # a space: the URI is percent-encoded
    runs.run(scenario_from_dict(SCEN), lake.as_uri(), months=3)
    out = _cli("append", "--lake", lake.as_uri(), "--until", "2024-06")
    assert out.returncode == 0, out.stderr
    _assert_exactly(reference, lake)


@pytest.mark.parametrize("uri", ["s3://bucket/lake", "abfss://c@acct.dfs.core.windows.net/lake", "file://otherhost/lake"])
def test_an_object_store_lake_is_refused_with_exit_2_naming_what_works(tmp_path, uri):
    scenario = _write_scenario(tmp_path)
    for args in (("run", str(scenario)), ("append",), ("optimize",), ("report",)):
        out = _cli(*args, "--lake", uri, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert f"Invalid value for '--lake': {uri}: expected " in out.stderr
        assert ("mounted path" in out.stderr) != uri.startswith("file://")
    with pytest.raises(ScenarioError, match="expected a local directory or a file:// URI"):
        runs.run(scenario_from_dict(SCEN), "s3://bucket/lake", months=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_a_refused_target_leaves_no_trace_of_the_lock(tmp_path):
    """Calibration runs under the lock: refusing the targets still leaves no directory behind."""
    lake = tmp_path / "new" / "lake"
    infeasible = scenario_from_dict({"calendar": {"days": 365}, "population": {"size": 1500},
                                     "targets": {"avg_transactions_per_customer": 3, "churn_rate": 0.05}})
    with pytest.raises(InfeasibleTargetError):
        runs.run(infeasible, lake, months=1)
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_kill_minus_9_at_random_moments(tmp_path, reference):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    for delay in (0.9, 1.4, 1.9):
        proc = subprocess.Popen([sys.executable, "-m", "sim", "-q", "run", str(scenario), "--lake", str(lake)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = _cli("run", str(scenario), "--lake", str(lake))
    if final.returncode != 0:  # one of the runs may have finished before its kill
        assert "holds a finished run" in final.stderr
    _assert_exactly(reference, lake)


_HOLD = """
import sys, time
from pathlib import Path
from sim.lake.lock import lake_lock
with lake_lock(Path(sys.argv[1]), command="optimize"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_second_writer_is_refused_while_the_first_holds_the_lake(tmp_path):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=2)
    before = {t: DeltaTable(str(lake / t)).version() for t in TABLES}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(lake)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StorageError) as refused:
            runs.append(lake, months=1)
        assert str(refused.value) == (
            f"{lake}: churnsim optimize (pid {holder.pid} on {os.uname().nodename}, since "
            f"{json.loads((lake / '_churnsim' / 'lock').read_text())['since']}) is writing this lake; "
            "wait for it to finish, then rerun")
    finally:
        holder.kill()
        holder.wait()
    assert {t: DeltaTable(str(lake / t)).version() for t in TABLES} == before
    runs.append(lake, months=1)  # the kernel let go of the killed holder's lock
    assert DeltaTable(str(lake / "raw_transactions")).version() == 2
    assert not (lake / "_churnsim" / "lock").exists()


def test_a_lock_file_naming_a_live_process_does_not_hold_the_lake(tmp_path):
    """A file left by a killed writer whose pid now belongs to another program (pid reuse)."""
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=1)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (lake / "_churnsim" / "lock").write_text(f"{os.uname().nodename}:{other.pid}")
        runs.append(lake, months=1)
    finally:
        other.kill()
        other.wait()
    assert DeltaTable(str(lake / "raw_transactions")).version() == 1


def test_concurrent_appends_never_duplicate(tmp_path):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=2)
    procs = [subprocess.Popen([sys.executable, "-m", "sim", "-q", "append", "--lake", str(lake), "--months", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    ok = [r for r in results if r[0] == 0]
    assert ok, results
    for code, err in results:
        if code:
            assert code == 1 and "is writing this lake" in err
    months = 2 + 2 * len(ok)
    tx = read_table(lake, "raw_transactions")
    ids = tx.column("transaction_id").to_numpy()
    assert len(set(ids)) == len(ids)
    assert DeltaTable(str(lake / "raw_transactions")).version() == months - 1
    labels = read_table(lake, "customer_labels")
    assert len(set(labels.column("label_date").to_pylist())) == months


def test_refusals_write_nothing(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    with pytest.raises(StorageError, match="no churnsim state to append to"):
        runs.append(lake, months=1)
    assert not (lake / "raw_transactions").exists()
    runs.run(scenario_from_dict(SCEN), lake, months=6)
    before = {t: DeltaTable(str(lake / t)).version() for t in TABLES}
    with pytest.raises(StorageError, match="holds a finished run of this scenario"):
        runs.run(scenario_from_dict(SCEN), lake, months=5)
    with pytest.raises(StorageError, match="holds a finished run of this scenario"):
        runs.run(scenario_from_dict(SCEN), lake, months=7)
    with pytest.raises(StorageError, match="holds a run of another scenario"):
        runs.run(scenario_from_dict({**SCEN, "seed": 12}), lake)
    for where in ("sim.lake.state.package_version", "sim.lake.status.package_version"):
        monkeypatch.setattr(where, lambda: "9.9.0")
    with pytest.raises(StorageError, match=r"made by churnsim 0\.1\.0 .* this is 9\.9\.0, which cannot continue it"):
        runs.append(lake, months=1)
    assert {t: DeltaTable(str(lake / t)).version() for t in TABLES} == before


def test_overwrite_replaces_a_finished_run(tmp_path):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=2)
    runs.run(scenario_from_dict({**SCEN, "seed": 12}), lake, months=1, overwrite=True)
    assert DeltaTable(str(lake / "raw_transactions")).version() == 0


def test_append_with_a_drifted_scenario_changes_behaviour_from_the_next_month(tmp_path):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict({**SCEN, "population": {"size": 3000, "shard_size": 1000}}), lake, months=3)
    drifted = scenario_from_dict({**SCEN, "population": {"size": 3000, "shard_size": 1000},
                                  "drifts": [{"name": "inflation", "parameter": "spend_median",
                                              "start": "2024-04-01", "multiplier": 1.5}]})
    runs.append(lake, months=3, scenario=drifted)
    tx = read_table(lake, "raw_transactions").to_pandas()
    month = tx["transaction_date"].astype(str).str[:7]
    mean = tx.groupby(month)["amount"].mean()
    assert mean[["2024-04", "2024-05", "2024-06"]].mean() > 1.35 * mean[["2024-01", "2024-02", "2024-03"]].mean()
    ids = read_table(lake, "raw_customers").column("customer_id").to_numpy()
    assert len(set(ids)) == len(ids) and ids.max() == len(ids)


def test_optimize_compacts_and_keeps_the_data(tmp_path, reference):
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake)
    result = optimize(lake)
    assert result["raw_transactions"]["files_before"] == 6
    assert result["raw_transactions"]["files_after"] == 1
    _assert_exactly(reference, lake)
    runs.append(lake, months=1)  # exactly-once bookkeeping survives maintenance
    assert DeltaTable(str(lake / "raw_transactions")).transaction_version("churnsim") == 7


CORRUPT = {**SCEN, "corruption": {"rate": 0.03, "rates": {"late_arrival": 0.02}}}


def test_a_corrupted_run_writes_a_manifest_that_validation_finds_exactly(tmp_path):
    from sim.quality import validate_lake

    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(CORRUPT), lake)
    manifest = read_table(lake, "quality_manifest").to_pandas()
    report = validate_lake(lake)
    assert not report.ok
    for rule, group in manifest.groupby("rule"):
        assert sorted(report[rule].keys) == sorted(group["row_key"].tolist()), rule
    flagged = {r.rule for r in report.failed}
    assert flagged == set(manifest["rule"])
    assert "late_arrival" in flagged


@pytest.mark.slow
@pytest.mark.parametrize("die_at", [6, 10, 16, 29])
def test_a_crash_in_a_corrupted_run_keeps_late_arrivals_exactly_once(tmp_path, die_at):
    ref = tmp_path / "ref"
    runs.run(scenario_from_dict(CORRUPT), ref)
    scenario = _write_scenario(tmp_path, {"corruption": CORRUPT["corruption"]})
    lake = tmp_path / "lake"
    crashed = _cli("run", str(scenario), "--lake", str(lake), env={"CHURNSIM_DIE_AT": str(die_at)})
    assert crashed.returncode == 137
    assert _cli("run", str(scenario), "--lake", str(lake)).returncode == 0
    for t in (*TABLES, "quality_manifest"):
        a, b = read_table(ref, t), read_table(lake, t)
        cols = a.column_names
        assert a.sort_by([(c, "ascending") for c in cols[:3]]).equals(b.sort_by([(c, "ascending") for c in cols[:3]])), t


@pytest.mark.slow
@pytest.mark.parametrize("die_at", [3, 14])
def test_a_crash_with_worker_processes_leaves_no_orphans_and_reruns_cleanly(tmp_path, reference, die_at):
    scenario = _write_scenario(tmp_path)
    lake = tmp_path / "lake"
    # capture_output waits for EOF on the pipes: a worker that outlived its coordinator would hang here.
    crashed = _cli("run", str(scenario), "--lake", str(lake), "--workers", "2",
                   env={"CHURNSIM_DIE_AT": str(die_at)}, timeout=120)
    assert crashed.returncode == 137
    rerun = _cli("run", str(scenario), "--lake", str(lake), "--workers", "2", timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    _assert_exactly(reference, lake)


def test_tables_are_plain_delta_any_reader_can_open(tmp_path):
    from deltalake import QueryBuilder

    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake, months=2)
    for t in TABLES:
        dt_ = DeltaTable(str(lake / t))
        proto = dt_.protocol()
        assert (proto.min_reader_version, proto.min_writer_version) == (1, 2), t
        assert not proto.reader_features and not proto.writer_features, t
        types = {f.name: str(f.type) for f in dt_.schema().fields}
        assert "timestamp_ntz" not in " ".join(types.values()).lower(), t
    tx = DeltaTable(str(lake / "raw_transactions")).schema().to_arrow()
    assert str(pa.schema(tx).field("transaction_ts").type) == "timestamp[us, tz=UTC]"
    assert str(pa.schema(tx).field("transaction_date").type) == "date32[day]"
    # The SQL reader of deltalake (the engine polars and DuckDB-over-deltalake use) answers too.
    n = QueryBuilder().register("tx", DeltaTable(str(lake / "raw_transactions"))).execute(
        "select count(*) as n from tx").read_all().column("n")[0].as_py()
    assert n == read_table(lake, "raw_transactions").num_rows


def test_a_lake_of_another_state_format_is_refused_before_a_month_is_written(tmp_path, monkeypatch):
    """Format 2 (customer_labels.experiment_arms) cannot continue a format-1 lake: appending wrote
    raw_customers and raw_transactions, then failed on the labels' schema; run resumed it blindly."""
    lake = tmp_path / "lake"
    s = scenario_from_dict(SCEN)
    runs.run(s, lake, months=2)
    versions = {t: DeltaTable(str(lake / t)).version() for t in TABLES}
    monkeypatch.setattr(lake_status_module, "STATE_FORMAT", STATE_FORMAT + 1)  # this build reads the lake as older
    with pytest.raises(StorageError, match=rf"state format {STATE_FORMAT}\); this is .*, which cannot continue it"):
        runs.append(lake, months=1)
    with pytest.raises(StorageError, match=rf"state format {STATE_FORMAT}\); this is .*, which cannot continue it; pass --overwrite"):
        runs.run(s, lake, months=3)
    assert {t: DeltaTable(str(lake / t)).version() for t in TABLES} == versions


CORRUPT_YEAR = {**SCEN, "calendar": {"start_date": "2024-01-01", "months": 12}, "population": {"size": 800, "shard_size": 400},
           "corruption": {"rate": 0.05}}


def _all_tables(lake: Path) -> dict[str, pa.Table]:
    out = {}
    for name in (*TABLES, MANIFEST_TABLE):
        t = read_table(lake, name)
        out[name] = t.sort_by([(c, "ascending") for c in t.column_names if c not in ("transaction_ts", "experiment_arms")])
    return out


def test_corruption_is_the_same_whatever_the_commands(tmp_path):
    # Every defect is a function of (scenario, seed, month): run 12 == run 6 + append 6 == run 3 +
    # three appends of 3, the manifest included, and validation finds exactly the manifest.
    from sim.quality import validate_lake

    s = scenario_from_dict(CORRUPT_YEAR)
    lakes = {k: tmp_path / f"lake{k}" for k in (12, 6, 3)}
    for k, lake in lakes.items():
        runs.run(s, lake, months=k)
        while lake_status(lake).state.period.index < 11:
            runs.append(lake, months=k)
    ref = _all_tables(lakes[12])
    manifest = ref[MANIFEST_TABLE].to_pandas()
    assert {"after_end", "late_arrival", "before_signup"} <= set(manifest["rule"])
    for k in (6, 3):
        got = _all_tables(lakes[k])
        for name, table in ref.items():
            assert got[name].equals(table), (k, name)
    report = validate_lake(lakes[3])
    for r in report.results:
        assert list(r.keys) == sorted(manifest.loc[manifest["rule"] == r.rule, "row_key"]), r.rule
