"""A/B read-out of a scenario experiment, with the simulation's ground truth beside it.

Outcomes per customer assigned in the experiment (``customer_labels.experiment_arms`` maps each
experiment's name to the customer's arm, ``treatment``/``control``):

- ``churned_60d``: ``churned`` at the first label date on or after ``assign_date + 60 days``;
- ``revenue_60d`` and ``purchases_60d``: spend and purchase count on days
  ``assign_date .. assign_date + 59``.

The read-out compares the arms (difference of means, 95 % Welch interval). The *true* effect
comes from a twin run: the same scenario and seed with the treatment neutralised (all multipliers
1.0). Randomness is keyed per customer, so a treated customer's twin is its counterfactual
(common random numbers) and the true effect is the mean over treated customers of
(treated - twin). Pairing also shrinks the interval: compare the paired interval with the one
from an *independent* counterfactual run (different seed, same sample size).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.lake import read_table

__all__ = ["METRICS", "ab_outcomes", "ab_readout", "arm_daily", "experiment_of", "read_tables"]

log = logging.getLogger(__name__)

METRICS = ("churned_60d", "revenue_60d", "purchases_60d")
Z95 = 1.959963984540054
Tables = Mapping[str, "pa.Table | pd.DataFrame"]


def _frame(t: pa.Table | pd.DataFrame) -> pd.DataFrame:
    return t.to_pandas(date_as_object=False) if isinstance(t, pa.Table) else t


def read_tables(lake: str | Path) -> dict[str, pd.DataFrame]:
    """The columns the read-out needs from a lake."""
    return {
        "raw_transactions": _frame(read_table(lake, "raw_transactions",
                                              columns=["customer_id", "transaction_date", "amount"])),
        "customer_labels": _frame(read_table(lake, "customer_labels",
                                             columns=["customer_id", "label_date", "churned", "experiment_arms"])),
    }


def experiment_of(scenario: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """The scenario's experiment called ``name`` (or its only/first one).

    Raises:
        ValueError: the scenario has no (such) experiment.
    """
    exps = list(scenario.get("experiments") or [])
    if not exps:
        raise ValueError("the scenario has no experiments: add one under `experiments:`")
    if name is None:
        return dict(exps[0])
    for e in exps:
        if e["name"] == name:
            return dict(e)
    raise ValueError(f"no experiment named {name!r} (have: {', '.join(e['name'] for e in exps)})")


def _arms(labels: pa.Table | pd.DataFrame, experiment: str) -> pd.DataFrame:
    """``customer_id`` and ``arm`` of each customer assigned in ``experiment`` (its first label saying so)."""
    if isinstance(labels, pa.Table):
        arm = pc.map_lookup(labels["experiment_arms"], pa.scalar(experiment, pa.string()), "first").to_pandas()
    else:  # pandas holds a map cell as a list of (key, value) pairs
        arm = pd.Series([dict(m).get(experiment) if isinstance(m, list | tuple | dict | np.ndarray) else None
                         for m in labels["experiment_arms"]], index=labels.index, dtype=object)
    out = pd.DataFrame({"customer_id": np.asarray(labels["customer_id"]), "arm": np.asarray(arm, dtype=object)})
    return out.dropna(subset=["arm"]).drop_duplicates("customer_id").reset_index(drop=True)


def ab_outcomes(tables: Tables, experiment: Mapping[str, Any], *, window_days: int = 60) -> pd.DataFrame:
    """One row per assigned customer: ``customer_id``, ``arm`` and the :data:`METRICS`.

    Raises:
        ValueError: nobody was assigned, or the run ends before ``assign_date + window_days``.
    """
    arms = _arms(tables["customer_labels"], experiment["name"])
    if arms.empty:
        raise ValueError(f"experiment {experiment['name']!r}: no customer's experiment_arms names it")
    labels = _frame(tables["customer_labels"])
    tx = _frame(tables["raw_transactions"])
    assign = pd.Timestamp(dt.date.fromisoformat(str(experiment["assign_date"])))
    end = assign + pd.Timedelta(days=window_days)
    dates = pd.to_datetime(labels["label_date"])
    later = dates[dates >= end]
    if later.empty:
        raise ValueError(f"experiment {experiment['name']!r}: the run ends before {end.date()} "
                         f"(assign_date + {window_days} days); simulate more months")
    label_date = later.min()
    at = labels.loc[dates == label_date, ["customer_id", "churned"]]
    tdate = pd.to_datetime(tx["transaction_date"])
    win = tx.loc[(tdate >= assign) & (tdate < end), ["customer_id", "amount"]]
    agg = win.groupby("customer_id")["amount"].agg(revenue_60d="sum", purchases_60d="size")
    out = arms.merge(at, on="customer_id", how="left")
    out = out.merge(agg, left_on="customer_id", right_index=True, how="left")
    out["churned_60d"] = out.pop("churned").astype(float)
    out[["revenue_60d", "purchases_60d"]] = out[["revenue_60d", "purchases_60d"]].fillna(0.0)
    out.attrs["label_date"] = str(label_date.date())
    return out.sort_values("customer_id").reset_index(drop=True)


def _mean_ci(x: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error."""
    x = x[np.isfinite(x)]
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Difference of independent means and its (Welch) standard error."""
    ma, sa = _mean_ci(a)
    mb, sb = _mean_ci(b)
    return ma - mb, float(np.hypot(sa, sb))


def _interval(est: float, se: float) -> dict[str, float]:
    return {"estimate": est, "ci_low": est - Z95 * se, "ci_high": est + Z95 * se, "ci_width": 2 * Z95 * se}


def ab_readout(
    tables: Tables,
    experiment: Mapping[str, Any],
    *,
    twin: Tables | None = None,
    independent: Tables | None = None,
    window_days: int = 60,
) -> dict[str, Any]:
    """Per-arm outcomes, treatment - control with a 95 % CI, and the true effect if a twin is given.

    Args:
        tables: ``raw_transactions`` and ``customer_labels`` of the run with the experiment.
        experiment: one entry of the scenario's ``experiments`` (see :func:`experiment_of`).
        twin: the same tables from the same scenario and seed with the treatment neutralised.
        independent: the same tables from a neutralised run with a *different* seed.
        window_days: outcome window after assignment.

    Returns:
        A JSON-able dict: ``arms`` (n and mean outcomes per arm), and per metric under
        ``metrics``: ``ab`` (difference and CI); with a twin, ``true_effect`` (the paired CRN
        estimate and CI) and ``covered`` (the A/B interval holds the true effect); with an
        independent run, ``independent`` (treated - independent counterfactuals, CI).
    """
    out = ab_outcomes(tables, experiment, window_days=window_days)
    treated = out[out["arm"] == "treatment"]
    control = out[out["arm"] == "control"]
    result: dict[str, Any] = {
        "experiment": experiment["name"],
        "assign_date": str(experiment["assign_date"]),
        "window_days": window_days,
        "outcome_label_date": out.attrs["label_date"],
        "arms": {arm: {"n": int(len(g)), **{m: float(g[m].mean()) for m in METRICS}}
                 for arm, g in (("treatment", treated), ("control", control))},
        "metrics": {},
    }
    paired = None
    if twin is not None:
        cf = ab_outcomes(twin, experiment, window_days=window_days)
        paired = treated.merge(cf, on="customer_id", suffixes=("", "_twin"))
        if len(paired) != len(treated):
            log.warning("twin run matches %d of %d treated customers", len(paired), len(treated))
    indep = None
    if independent is not None:
        ind = ab_outcomes(independent, experiment, window_days=window_days)
        indep = ind[ind["arm"] == "treatment"].head(len(treated))
        if len(indep) < len(treated):
            log.warning("independent run has %d customers in the treatment arm, fewer than %d",
                        len(indep), len(treated))
    for m in METRICS:
        row: dict[str, Any] = {"ab": _interval(*_diff(treated[m].to_numpy(float), control[m].to_numpy(float)))}
        if paired is not None:
            d = paired[m].to_numpy(float) - paired[f"{m}_twin"].to_numpy(float)
            row["true_effect"] = _interval(*_mean_ci(d))
            truth = row["true_effect"]["estimate"]
            row["covered"] = bool(row["ab"]["ci_low"] <= truth <= row["ab"]["ci_high"])
        if indep is not None:
            row["independent"] = _interval(*_diff(treated[m].to_numpy(float), indep[m].to_numpy(float)))
        result["metrics"][m] = row
    return result


def arm_daily(tables: Tables, *, experiment: str) -> pd.DataFrame:
    """Purchases and revenue per customer per day in each arm of ``experiment`` (for plots).

    Returns:
        Columns ``date``, ``arm``, ``purchases_per_customer``, ``revenue_per_customer``.
    """
    arms = _arms(tables["customer_labels"], experiment)
    if arms.empty:
        return pd.DataFrame(columns=["date", "arm", "purchases_per_customer", "revenue_per_customer"])
    tx = _frame(tables["raw_transactions"])
    sizes = arms.groupby("arm").size()
    t = tx.merge(arms, on="customer_id")
    t["date"] = pd.to_datetime(t["transaction_date"])
    label_dates = pd.to_datetime(_frame(tables["customer_labels"])["label_date"])
    # Simulated days only: history before the first label month (README) and defects dated after the
    # last label date are not days of the experiment.
    start, end = label_dates.min().to_period("M").start_time, label_dates.max()
    t = t[(t["date"] >= start) & (t["date"] <= end)]
    daily = t.groupby(["date", "arm"])["amount"].agg(["size", "sum"]).unstack("arm").fillna(0)
    full = pd.date_range(start, end)
    daily = daily.reindex(full, fill_value=0)
    rows = []
    for arm, n in sizes.items():
        rows.append(pd.DataFrame({"date": full, "arm": arm,
                                  "purchases_per_customer": daily[("size", arm)].to_numpy() / n,
                                  "revenue_per_customer": daily[("sum", arm)].to_numpy() / n}))
    return pd.concat(rows, ignore_index=True)
