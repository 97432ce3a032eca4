"""Files written elsewhere and committed by the coordinator; per-shard state files (issue #16)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import CommitProperties, DeltaTable, QueryBuilder, Transaction

from sim import scenario_from_dict
from sim.execute import runs
from sim.lake.files import commit_files, file_stats, footer_stats, part_name, write_part
from sim.lake.maintenance import optimize
from sim.lake.read import read_delta, read_table
from sim.lake.state import META_KEY, STATE_FILES_KEY, read_shard_state
from sim.lake.status import lake_status

SCEN = {"name": "t", "seed": 11, "calendar": {"start_date": "2024-01-01", "months": 2},
        "population": {"size": 1500, "shard_size": 500}}

ROWS = pa.table({
    "id": pa.array([3, 1, 2], pa.int64()),
    "day": pa.array([dt.date(2024, 1, 2), None, dt.date(2024, 1, 31)], pa.date32()),
    "ts": pa.array([5, 86_400_000_123, 7], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    "amount": pa.array([1.5, float("nan"), -2.0]),
    "name": pa.array(["b", "a", None]),
    "arms": pa.array([[("e", "treatment")], None, []], pa.map_(pa.string(), pa.string())),
})


def _props(k: int) -> CommitProperties:
    return CommitProperties(app_transactions=[Transaction("churnsim", k)], custom_metadata={META_KEY: f'{{"k": {k}}}'})


@pytest.mark.parametrize("uri", [False, True])
def test_files_written_elsewhere_commit_as_one_version_each_with_their_stats(tmp_path: Path, uri: bool) -> None:
    table = f"file://{tmp_path / 't'}" if uri else str(tmp_path / "t")
    for k in (1, 2):
        files = [write_part(table, ROWS.slice(i, 2), name=part_name(month=k, shard=i, kind="x")) for i in (0, 1)]
        commit_files(table, files, schema=ROWS.schema, mode="append", commit_properties=_props(k))
    dt_ = DeltaTable(table)
    assert dt_.version() == 1 and dt_.transaction_version("churnsim") == 2
    assert json.loads(dt_.history(1)[0][META_KEY]) == {"k": 2}
    got = read_delta(dt_)
    assert got.column("id").to_pylist() == [3, 1, 1, 2] * 2  # files in commit order, rows in file order
    assert got.select(["day", "ts", "name"]).slice(0, 2).equals(ROWS.select(["day", "ts", "name"]).slice(0, 2))
    stats = json.loads(files[1].stats)
    assert stats["numRecords"] == 2 and stats["nullCount"] == {"id": 0, "day": 1, "ts": 0, "amount": 0, "name": 1}
    assert stats["minValues"]["ts"] == "1970-01-01T00:00:00.000007Z"
    assert stats["maxValues"]["ts"] == "1970-01-02T00:00:00.000123Z"
    assert stats["maxValues"]["day"] == "2024-01-31" and "arms" not in stats["minValues"]
    # Data skipping with these stats keeps exactly the rows a filter asks for (microseconds kept).
    n = QueryBuilder().register("t", dt_).execute(
        "select count(*) as n from t where ts >= '1970-01-02T00:00:00.000123Z'").read_all().column("n")[0].as_py()
    assert n == 4  # one row of the first file of each month


@pytest.mark.parametrize("group", [1, 2, 3])
@pytest.mark.parametrize("rows", [ROWS, ROWS.slice(1, 1), ROWS.slice(0, 0)], ids=["all", "nan-and-nulls", "empty"])
def test_stats_from_the_footer_are_the_stats_of_the_rows(tmp_path: Path, rows: pa.Table, group: int) -> None:
    # write_part takes the Delta stats from the Parquet footer (no second pass over the rows):
    # the same JSON as computing them from the rows, however the rows fall into row groups.
    footer: list[pq.FileMetaData] = []
    pq.write_table(rows, tmp_path / "f.parquet", row_group_size=group, metadata_collector=footer)
    assert json.loads(footer_stats(rows.schema, footer[0])) == json.loads(file_stats(rows))


def test_overwrite_replaces_every_file_in_one_commit_even_with_another_schema(tmp_path: Path) -> None:
    table = str(tmp_path / "t")
    one = write_part(table, ROWS, name=part_name(month=1, shard=None, kind="x"))
    commit_files(table, [one], schema=ROWS.schema, mode="overwrite", commit_properties=_props(1))
    other = pa.table({"v": [1, 2]})
    two = write_part(table, other, name=part_name(month=2, shard=None, kind="x"))
    commit_files(table, [two], schema=other.schema, mode="overwrite", commit_properties=_props(2))
    dt_ = DeltaTable(table)
    assert dt_.transaction_version("churnsim") == 2 and read_delta(dt_).equals(other)


def test_an_uncommitted_file_is_invisible_and_optimize_vacuums_it(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    runs.run(scenario_from_dict(SCEN), lake)
    before = read_table(lake, "raw_transactions")
    # What a worker killed between writing its file and the coordinator's commit leaves behind.
    orphan = write_part(lake / "raw_transactions", before.slice(0, 10), name=part_name(month=2, shard=0, kind="x"))
    state_dir = lake / "_churnsim" / "state"
    state_orphan = write_part(state_dir, pq.read_table(DeltaTable(str(state_dir)).file_uris()[0]),
                              name=part_name(month=3, shard=0, kind="state"))
    assert (lake / "raw_transactions" / orphan.path).exists()
    assert read_table(lake, "raw_transactions").equals(before)
    kept = lake_status(lake).meta[STATE_FILES_KEY]
    optimize(lake, retention_hours=0)
    assert not (lake / "raw_transactions" / orphan.path).exists() and not (state_dir / state_orphan.path).exists()
    assert all((state_dir / f).exists() for f in kept.values())
    assert read_table(lake, "raw_transactions").sort_by("transaction_id").equals(before.sort_by("transaction_id"))


def test_each_shard_state_is_its_own_file_and_reads_alone(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    state = runs.run(scenario_from_dict(SCEN), lake)
    status = lake_status(lake)
    files = status.meta[STATE_FILES_KEY]
    assert sorted(files) == [str(k) for k in sorted(state.shards)] and len(set(files.values())) == len(files)
    state_dir = lake / "_churnsim" / "state"
    assert sorted(DeltaTable(str(state_dir)).file_uris()) == sorted(str(state_dir / f) for f in files.values())
    for k, agents in state.shards.items():
        assert set(pq.read_table(state_dir / files[str(k)]).column("shard").to_pylist()) == {k}
        got = read_shard_state(state_dir, status.meta, k)
        for name, col in agents.columns().items():
            np.testing.assert_array_equal(got.columns()[name], col, err_msg=name)
    assert len(read_shard_state(state_dir, status.meta, 99)) == 0


def _cli_run(lake: Path, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    lake.parent.mkdir(parents=True, exist_ok=True)
    scen = lake.parent / "s.yaml"
    scen.write_text(yaml.safe_dump({**SCEN, "calendar": {"start_date": "2024-01-01", "months": 3}}))
    return subprocess.run([sys.executable, "-m", "sim", "-q", "run", str(scen), "--lake", str(lake), "--workers", "2"],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def _parquet(table: Path) -> set[str]:
    return {p.name for p in table.iterdir() if p.suffix == ".parquet"}


@pytest.fixture(scope="module")
def clean_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("clean") / "lake"
    clean = _cli_run(lake)
    assert clean.returncode == 0, clean.stderr
    return lake


def _assert_once_then_vacuumed(lake: Path, clean: Path) -> None:
    """Every table holds each month once, row for row as a clean run; vacuum leaves only committed files."""
    for name in ("raw_customers", "raw_transactions", "customer_labels", "daily_metrics"):
        assert read_table(lake, name).equals(read_table(clean, name)), name  # no duplicate rows, the same order
        assert DeltaTable(str(lake / name)).transaction_version("churnsim") == 3
    optimize(lake, retention_hours=0)
    keys = {"raw_customers": ["customer_id"], "raw_transactions": ["transaction_id"],
            "customer_labels": ["customer_id", "label_date"]}
    for name, key in keys.items():  # optimize compacts: the same rows, in other files
        assert _parquet(lake / name) == {Path(u).name for u in DeltaTable(str(lake / name)).file_uris()}, name
        assert read_table(lake, name).sort_by([(k, "ascending") for k in key]).equals(
            read_table(clean, name).sort_by([(k, "ascending") for k in key])), name


# Worker 0 (shards 0 and 2) dies in month 1 after writing shard 2's customers, labels and state
# (phase one, its 2nd checkpoint), or after shard 0's transactions (phase two, its 3rd): nothing committed.
@pytest.mark.parametrize("die_at", [2, 3], ids=["phase-one", "phase-two"])
def test_a_worker_killed_after_writing_its_files_leaves_orphans_the_rerun_commits_once_and_vacuum_removes(
        tmp_path: Path, clean_lake: Path, die_at: int) -> None:
    lake = tmp_path / "killed" / "lake"
    died = _cli_run(lake, env={"CHURNSIM_WORKER_DIE_AT": str(die_at)})
    assert died.returncode != 0
    assert not DeltaTable.is_deltatable(str(lake / "raw_customers"))
    assert len(_parquet(lake / "raw_customers")) == 3  # every shard wrote month 1; no commit names them
    if die_at == 3:
        assert _parquet(lake / "raw_transactions")  # shard 0's transactions, named by no commit
        assert not DeltaTable.is_deltatable(str(lake / "raw_transactions"))
    rerun = _cli_run(lake)
    assert rerun.returncode == 0, rerun.stderr
    referenced = {Path(u).name for u in DeltaTable(str(lake / "raw_customers")).file_uris()}
    assert _parquet(lake / "raw_customers") - referenced  # the killed month's files are orphans
    _assert_once_then_vacuumed(lake, clean_lake)


# The coordinator dies at its 1st checkpoint (month 1, every worker's files written, nothing
# committed) or its 13th (month 2: raw_customers committed, raw_transactions not; 11 a month: five
# tables before and after, then the state).
@pytest.mark.parametrize("die_at", [1, 13], ids=["before-any-commit", "between-tables"])
def test_a_coordinator_killed_after_the_workers_wrote_their_files_commits_each_month_once_on_rerun(
        tmp_path: Path, clean_lake: Path, die_at: int) -> None:
    lake = tmp_path / "killed" / "lake"
    died = _cli_run(lake, env={"CHURNSIM_DIE_AT": str(die_at)})
    assert died.returncode == 137, died.stderr
    uncommitted = _parquet(lake / "raw_transactions") - (
        {Path(u).name for u in DeltaTable(str(lake / "raw_transactions")).file_uris()}
        if DeltaTable.is_deltatable(str(lake / "raw_transactions")) else set())
    killed = 1 if die_at == 1 else 2
    by_month = Counter(int(name.split("-")[1]) for name in uncommitted)
    # The killed month's transactions, one part per shard, in no commit; the next month's may be
    # there too (its workers write while the killed month commits), nothing older.
    assert by_month[killed] == 3 and set(by_month) <= {killed, killed + 1}, by_month
    if die_at == 13:
        assert DeltaTable(str(lake / "raw_customers")).transaction_version("churnsim") == 2
        assert DeltaTable(str(lake / "raw_transactions")).transaction_version("churnsim") == 1
    rerun = _cli_run(lake)
    assert rerun.returncode == 0, rerun.stderr
    _assert_once_then_vacuumed(lake, clean_lake)
