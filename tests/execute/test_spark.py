"""The Spark engine (local mode) makes the same tables as the local engine."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from sim.batch.tables import TABLES
from sim.scenario import Scenario

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` for quick feedback; CI runs them all


@pytest.fixture(scope="module")
def spark():
    from sim.execute.spark import local_session

    session = local_session(cores=2)
    yield session
    session.stop()


def test_pack_round_trip() -> None:
    import numpy as np

    from sim.execute.spark import pack, unpack

    arrays = {"a": np.arange(5, dtype=np.int8), "b": np.array([1.5, np.nan]), "c": np.zeros((3, 4)),
              "d": np.empty(0, np.uint64), "e": np.array([True, False])}
    back = unpack(pack(arrays))
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


def test_spark_lake_matches_local(assert_same_tables, spark, scenario: Scenario, reference: dict[str, pa.Table], tmp_path: Path) -> None:
    from analysis.lake import read_table
    from sim.execute.spark import run_spark

    run_spark(spark, scenario, tmp_path / "lake")
    assert_same_tables({n: read_table(tmp_path / "lake", n) for n in TABLES}, reference)


@pytest.fixture(scope="module")
def cluster():
    """Two executor JVMs with their own Python workers: nothing shared with the driver but files."""
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local-cluster[2,1,1024]").appName("churnsim-test")
               .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    yield session
    session.stop()


def test_executors_write_the_lake_the_driver_commits_metadata_only(assert_same_tables, cluster, scenario: Scenario,
                                                                   reference: dict[str, pa.Table], tmp_path: Path) -> None:
    from deltalake import DeltaTable

    from analysis.lake import read_table
    from sim.engine.state import StoredShard
    from sim.execute import runs
    from sim.execute.spark import SparkRunner, run_spark

    lake = tmp_path / "lake"
    state = run_spark(cluster, scenario, lake, months=2)
    assert all(isinstance(a, StoredShard) for a in state.shards.values())  # the driver holds no customers
    names = [Path(u).name for u in DeltaTable(str(lake / "raw_transactions")).file_uris()]
    assert len(names) == 12 and not [n for n in names if "-all-" in n]  # one part per shard and month, from the tasks
    assert not (lake / "_churnsim" / "staging").exists() or not any((lake / "_churnsim" / "staging").iterdir())
    runs.append(lake, until="2024-04", runner=SparkRunner(cluster))  # each task reads its shard's state from the lake
    assert_same_tables({n: read_table(lake, n) for n in TABLES}, reference)


def test_a_driver_killed_between_the_phases_reruns_the_month_once_and_optimize_cleans_up(
        spark, scenario: Scenario, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from deltalake import DeltaTable

    from analysis.lake import read_table
    from sim.execute import runs
    from sim.execute.spark import run_spark
    from sim.lake.maintenance import optimize
    from sim.lake.staging import staging_dir

    lake, clean = tmp_path / "lake", tmp_path / "clean"
    code = ("import sys; from sim.execute.spark import local_session, run_spark; from sim import scenario_from_dict; "
            f"run_spark(local_session(cores=2), scenario_from_dict({scenario.to_dict()!r}), {str(lake)!r}, months=2)")
    died = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CHURNSIM_DIE_AT": "1"},
                          capture_output=True, text=True, timeout=600)
    assert died.returncode == 137, died.stderr[-2000:]
    assert len(list(staging_dir(lake, 1).iterdir())) == 6  # every shard's purchases staged, none committed
    assert not DeltaTable.is_deltatable(str(lake / "raw_customers")) and list((lake / "raw_customers").iterdir())
    run_spark(spark, scenario, lake, months=2)
    runs.run(scenario, clean, months=2)
    optimize(lake, retention_hours=0)
    assert not staging_dir(lake).exists()
    keys = {"raw_customers": ["customer_id"], "raw_transactions": ["transaction_id"],
            "customer_labels": ["customer_id", "label_date"], "daily_metrics": ["metric_date", "segment"]}
    for name, key in keys.items():
        got, want = (read_table(x, name).sort_by([(k, "ascending") for k in key]) for x in (lake, clean))
        assert got.num_rows == want.num_rows and got.equals(want), name  # each month once, no duplicates
        files = {p.name for p in (lake / name).iterdir() if p.suffix == ".parquet"}
        assert files == {Path(u).name for u in DeltaTable(str(lake / name)).file_uris()}, name  # orphans vacuumed


def test_month_dataframes_are_read_from_the_files_of_the_months_commit(spark, scenario: Scenario, tmp_path: Path) -> None:
    from sim.errors import StorageError
    from sim.execute import runs
    from sim.execute.spark import month_dataframes
    from sim.lake.read import month_files, read_table

    lake = tmp_path / "lake"
    runs.run(scenario, lake, months=2)
    dfs = month_dataframes(spark, lake, "2024-02")
    for name, df in dfs.items():
        files = month_files(lake, name, "2024-02")
        assert files and all(f.startswith(str(lake / name)) for f in files)
        # Exactly the rows month 2 added: the table at version 1 minus the table at version 0.
        want = read_table(lake, name, version=1).num_rows - read_table(lake, name, version=0).num_rows
        assert df.count() == want > 0, name
        assert df.columns == read_table(lake, name).column_names
    got = dfs["raw_customers"].toArrow().column("customer_id").to_pylist()
    assert sorted(got) == sorted(set(read_table(lake, "raw_customers").column("customer_id").to_pylist())
                                 - set(read_table(lake, "raw_customers", version=0).column("customer_id").to_pylist()))
    with pytest.raises(StorageError, match="expected a commit of month 2024-03"):
        month_dataframes(spark, lake, "2024-03")
