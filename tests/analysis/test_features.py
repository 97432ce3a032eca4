"""Point-in-time features: hand-checked values, no leakage, the Delta table, the CLI."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from analysis.features import FEATURES_SCHEMA, compute_features, load_inputs, month_ends, write_features
from analysis.lake import read_table
from sim.cli import main

D = dt.date(2024, 3, 1)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    customers = pd.DataFrame({
        "customer_id": [1, 2, 3],
        "segment": ["mid_stable", "young_active", "new_customer"],
        "customer_since_date": pd.to_datetime(["2023-01-01", "2024-01-15", "2024-03-01"]),
    })
    tx = pd.DataFrame({
        "customer_id": [1, 1, 1, 1, 3, 1],
        "transaction_date": pd.to_datetime(["2023-06-01", "2023-12-20", "2024-02-10", "2024-02-25",
                                            "2024-03-01", "2024-03-01"]),
        "amount": [10.0, 20.0, 30.0, 40.0, 99.0, 500.0],
    })
    return customers, tx


def test_values_by_hand() -> None:
    customers, tx = _frames()
    f = compute_features(customers, tx, D).set_index("customer_id")
    assert list(f.index) == [1, 2]  # customer 3 signs up on the as-of date: not yet a customer
    one, two = f.loc[1], f.loc[2]
    assert one["recency_days"] == 5  # last purchase 2024-02-25; the one on 2024-03-01 is excluded
    assert (one["frequency_30d"], one["frequency_90d"], one["frequency_365d"], one["frequency_lifetime"]) == (2, 3, 4, 4)
    assert one["total_spend_30d"] == 70.0 and one["total_spend_90d"] == 90.0 and one["total_spend_lifetime"] == 100.0
    assert one["avg_amount"] == 25.0 and one["avg_amount_90d"] == 30.0
    assert one["tenure_days"] == (D - dt.date(2023, 1, 1)).days
    # 2 purchases in the last 30 days, 1 in the 60 before: (2 - 0.5) / (2 + 0.5)
    assert one["trend"] == pytest.approx(0.6)
    assert two["recency_days"] == two["tenure_days"] == (D - dt.date(2024, 1, 15)).days  # from signup
    assert two["frequency_lifetime"] == 0 and np.isnan(two["avg_amount"]) and two["trend"] == 0.0


def test_several_dates_equal_one_at_a_time(analysis_lake) -> None:
    customers, tx = load_inputs(analysis_lake)
    dates = [dt.date(2024, 4, 17), dt.date(2024, 9, 30), dt.date(2024, 6, 1)]
    together = compute_features(customers, tx, dates)
    apart = pd.concat([compute_features(customers, tx, d) for d in sorted(dates)], ignore_index=True)
    pd.testing.assert_frame_equal(together, apart)


def test_no_leakage(analysis_lake) -> None:
    """Changing, moving, dropping or adding transactions on/after the as-of date changes nothing."""
    customers, tx = load_inputs(analysis_lake)
    as_of = dt.date(2024, 7, 15)
    before = compute_features(customers, tx, as_of)
    future = pd.to_datetime(tx["transaction_date"]) >= pd.Timestamp(as_of)
    assert future.sum() > 1000
    changed = tx.copy()
    changed.loc[future, "amount"] *= 7.5
    changed.loc[future, "transaction_date"] = pd.Timestamp(as_of)  # moved to the boundary day
    changed = changed.drop(changed.index[future.to_numpy()][::3])
    extra = changed[pd.to_datetime(changed["transaction_date"]) >= pd.Timestamp(as_of)].head(500)
    changed = pd.concat([changed, extra], ignore_index=True).sample(frac=1.0, random_state=1)
    after = compute_features(customers, changed, as_of)
    pd.testing.assert_frame_equal(before, after)
    # ... while a change the day before does change something
    past = pd.to_datetime(tx["transaction_date"]) == pd.Timestamp(as_of - dt.timedelta(days=1))
    earlier = tx.copy()
    earlier.loc[past, "amount"] += 1.0
    assert not compute_features(customers, earlier, as_of).equals(before)


def test_fast_on_two_million_transactions() -> None:
    rng = np.random.default_rng(0)
    n, m = 100_000, 2_000_000
    customers = pd.DataFrame({
        "customer_id": np.arange(1, n + 1), "segment": rng.choice(["mid_stable", "young_active"], n),
        "customer_since_date": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D"),
    })
    tx = pd.DataFrame({
        "customer_id": rng.integers(1, n + 1, m),
        "transaction_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 366, m), "D"),
        "amount": rng.gamma(2.0, 30.0, m),
    })
    t0 = time.perf_counter()
    f = compute_features(customers, tx, month_ends(dt.date(2024, 1, 1), dt.date(2024, 12, 31)))
    assert time.perf_counter() - t0 < 15
    assert len(f) > 900_000


def test_write_features_is_idempotent_per_date(analysis_lake, tmp_path) -> None:
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(analysis_lake, lake)
    dates = month_ends(dt.date(2024, 5, 1), dt.date(2024, 7, 31))
    frame = write_features(lake, dates)
    table = read_table(lake, "customer_features")
    assert table.schema.equals(FEATURES_SCHEMA)
    assert table.schema.field("as_of_date").type == pa.date32()
    assert table.num_rows == len(frame)
    write_features(lake, dates[-1:])
    again = read_table(lake, "customer_features").to_pandas()
    assert len(again) == len(frame)
    assert not again.duplicated(["customer_id", "as_of_date"]).any()
    assert DeltaTable(str(lake / "customer_features")).version() == len(dates)  # one commit per snapshot


def test_cli_features_every_month(analysis_lake, tmp_path) -> None:
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(analysis_lake, lake)
    r = CliRunner().invoke(main, ["features", "--lake", str(lake), "--as-of", "2024-12-31", "--every", "month",
                                  "--json"])
    assert r.exit_code == 0, r.output
    assert '"2024-01-31"' in r.output and '"2024-12-31"' in r.output
    dates = read_table(lake, "customer_features", columns=["as_of_date"]).column(0).unique()
    assert len(dates) == 12
    bad = CliRunner().invoke(main, ["features", "--lake", str(lake), "--as-of", "2024-13-01"])
    assert bad.exit_code == 2 and "expected a date" in bad.output
    assert "Example:" in CliRunner().invoke(main, ["features", "--help"]).output
