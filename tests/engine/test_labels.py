"""Labels and 30-day activity are recomputable from raw_transactions and raw_customers alone.

The README's rule: at ``label_date`` D, ``recency_days`` counts from the last transaction on or
before D (from ``customer_since_date`` for a customer without one), ``tenure_days`` from
``customer_since_date``, and ``churned`` is tenure >= 60 and recency >= 60. Initial customers'
last purchases before the window are in raw_transactions as history, so nothing is missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim import load_scenario, simulate
from sim.scenario.shipped import shipped, shipped_path


def _frames(tables) -> dict[str, pd.DataFrame]:
    return {k: v.to_pandas(date_as_object=False) for k, v in tables.items()}


def recomputed_labels(customers: pd.DataFrame, transactions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``labels``' keys with churned, recency_days and tenure_days recomputed by the README's rule."""
    lab = labels[["customer_id", "label_date"]].copy()
    lab["label_date"] = pd.to_datetime(lab["label_date"]).astype("datetime64[ns]")
    tx = transactions[["customer_id", "transaction_date"]].copy()
    tx["transaction_date"] = pd.to_datetime(tx["transaction_date"]).astype("datetime64[ns]")
    last = pd.merge_asof(lab.sort_values("label_date"), tx.sort_values("transaction_date"), left_on="label_date",
                         right_on="transaction_date", by="customer_id", direction="backward")
    since = customers.set_index("customer_id")["customer_since_date"]
    last["since"] = pd.to_datetime(last["customer_id"].map(since)).astype("datetime64[ns]")
    activity = last["transaction_date"].fillna(last["since"])
    last["recency_days"] = (last["label_date"] - activity).dt.days
    last["tenure_days"] = (last["label_date"] - last["since"]).dt.days
    last["churned"] = (last["tenure_days"] >= 60) & (last["recency_days"] >= 60)
    return last.drop(columns=["transaction_date", "since"])


def recomputed_active_30d(transactions: pd.DataFrame, dates: pd.Series) -> pd.Series:
    """Customers with a transaction on any of the 30 days up to and including each date."""
    day = pd.to_datetime(transactions["transaction_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
    pairs = pd.DataFrame({"c": transactions["customer_id"].to_numpy(), "d": day}).drop_duplicates()
    want = np.sort(pd.to_datetime(dates.unique()).to_numpy().astype("datetime64[D]").astype(np.int64))
    counts = np.zeros(len(want), np.int64)
    for c_days in pairs.groupby("c")["d"]:
        d = np.sort(c_days[1].to_numpy())
        # Date w is active when the last purchase on or before w is at most 29 days back.
        k = np.searchsorted(d, want, side="right") - 1
        counts += (k >= 0) & (want - d[np.maximum(k, 0)] < 30)
    return pd.Series(counts, index=want.astype("datetime64[D]"))


def _disagreements(f: dict[str, pd.DataFrame]) -> int:
    lab = f["customer_labels"].copy()
    lab["label_date"] = pd.to_datetime(lab["label_date"]).astype("datetime64[ns]")
    got = recomputed_labels(f["raw_customers"], f["raw_transactions"], lab)
    m = lab.merge(got, on=["customer_id", "label_date"], suffixes=("", "_log"))
    assert len(m) == len(lab)
    bad = ((m["churned"] != m["churned_log"]) | (m["recency_days"] != m["recency_days_log"])
           | (m["tenure_days"] != m["tenure_days_log"]))
    return int(bad.sum())


@pytest.mark.parametrize("name", sorted(set(shipped()) - {"environments"}))
def test_labels_and_activity_are_recomputable_from_the_tables(name):
    s = load_scenario(shipped_path(name), overrides=["population.size=800"])
    f = _frames(simulate(s, months=4))
    assert _disagreements(f) == 0
    m = f["daily_metrics"]
    active = m.groupby("metric_date")["active_customers_30d"].sum()
    want = recomputed_active_30d(f["raw_transactions"], m["metric_date"])
    assert (active.to_numpy() == want.to_numpy()).all()
    # The history: one row per initial customer who had bought, dated before the window.
    start = pd.Timestamp(s.calendar.start_date)
    tx = f["raw_transactions"]
    history = tx[pd.to_datetime(tx["transaction_date"]) < start]
    assert len(history) > 0 and history["customer_id"].is_unique
    since = pd.to_datetime(history["customer_id"].map(f["raw_customers"].set_index("customer_id")["customer_since_date"]))
    assert (pd.to_datetime(history["transaction_date"]) >= since).all()
    assert (pd.to_datetime(m["metric_date"]) >= start).all()
    assert m["transactions"].sum() == len(tx) - len(history)
    ids = tx["transaction_id"].to_numpy()
    assert (np.diff(ids) > 0).all() and tx["transaction_ts"].is_monotonic_increasing  # ids follow time order
