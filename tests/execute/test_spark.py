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


def test_month_dataframes(spark, reference: dict[str, pa.Table]) -> None:
    from sim.execute.spark import month_dataframes

    dfs = month_dataframes(spark, {n: t.slice(0, 50) for n, t in reference.items()})
    for name, df in dfs.items():
        assert df.toArrow().num_rows == min(50, reference[name].num_rows)
        assert df.columns == reference[name].column_names
