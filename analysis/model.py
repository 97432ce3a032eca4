"""Does the lake support a churn model? A time-split check with two standard learners.

Features are taken ``horizon_days`` (60) before each label date, so the feature window
(transactions before ``label_date - 60``) and the label window (the 60 days up to the label date)
do not overlap. Label dates whose feature date falls less than ``warmup_days`` after the
simulation's first day are skipped: before that the features see too little history. Training
uses the earlier label dates and testing the later ones (no shuffling across time).

Real churn models score ROC AUC 0.70-0.90; near 1.0 suggests label leakage, near 0.5 no signal.

By default the model scores only customers *active* at the feature date (a purchase, or signup,
within the last ``horizon_days``), as a deployed churn model would: a customer already lapsed for
60 days is churned at the label date unless it comes back, and in the simulation dropout is
absorbing, so including them (``population="all"``) mostly measures that lapsed customers stay
lapsed and inflates the AUC towards 0.95.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.features import FEATURE_COLUMNS, compute_features, load_inputs
from analysis.lake import read_table, window_start

__all__ = ["ModelCheck", "ModelScore", "model_check", "reliability_table", "training_frame"]

log = logging.getLogger(__name__)

#: ROC AUC range of real churn models; outside it the data is suspicious.
PLAUSIBLE_AUC = (0.70, 0.90)


@dataclass
class ModelScore:
    """One learner's test-set scores."""

    name: str
    roc_auc: float
    brier: float
    brier_base_rate: float
    reliability: list[dict[str, float]]


@dataclass
class ModelCheck:
    """The check's result: the split, the base rates and one :class:`ModelScore` per learner."""

    population: str
    train_label_dates: list[str]
    test_label_dates: list[str]
    n_train: int
    n_test: int
    churn_rate_train: float
    churn_rate_test: float
    models: list[ModelScore] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_frame(
    customers: pd.DataFrame,
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    horizon_days: int = 60,
    warmup_days: int = 90,
    start: dt.date | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Features as of ``label_date - horizon_days`` joined to ``churned`` at ``label_date``.

    Args:
        customers: as for :func:`~analysis.features.compute_features`.
        transactions: as for :func:`~analysis.features.compute_features`.
        labels: ``customer_id``, ``label_date``, ``churned``.
        horizon_days: how far ahead of the features the label is.
        warmup_days: skip label dates whose feature date is closer than this to ``start``.
        start: the simulation's first day (default: the first day of the first label month).

    Returns:
        Feature columns plus ``label_date`` and ``churned`` (customers present at both dates).
    """
    lab = labels[["customer_id", "label_date", "churned"]].dropna(subset=["churned"]).copy()
    lab["label_date"] = pd.to_datetime(lab["label_date"])
    lab["as_of_date"] = lab["label_date"] - pd.Timedelta(days=horizon_days)
    # The window opens in the first label month: transactions before it are history (README).
    first = pd.Timestamp(start) if start is not None else lab["label_date"].min().to_period("M").start_time
    lab = lab[lab["as_of_date"] >= first + pd.Timedelta(days=warmup_days)]
    dates = [d.date() for d in sorted(lab["as_of_date"].unique())]
    feats = compute_features(customers, transactions, dates)
    out = feats.merge(lab, on=["customer_id", "as_of_date"], how="inner")
    out["churned"] = out["churned"].astype(bool)
    return out


def reliability_table(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> list[dict[str, float]]:
    """Mean prediction against observed rate in equal-count bins of the prediction."""
    order = np.argsort(p, kind="stable")
    rows = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            rows.append({"mean_predicted": float(p[chunk].mean()), "observed_rate": float(y[chunk].mean()),
                         "n": int(len(chunk))})
    return rows


def _design(frame: pd.DataFrame, segments: list[str]) -> np.ndarray:
    x = frame[list(FEATURE_COLUMNS)].to_numpy(np.float64)
    onehot = np.stack([(frame["segment"] == s).to_numpy(np.float64) for s in segments], axis=1)
    return np.hstack([x, onehot])


def _learners(seed: int) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic_regression": make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                             LogisticRegression(max_iter=2000)),
        "gradient_boosting": HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed),
    }


def model_check(
    lake: str | Path,
    *,
    horizon_days: int = 60,
    warmup_days: int = 90,
    test_share: float = 0.34,
    population: Literal["active", "all"] = "active",
    seed: int = 0,
) -> ModelCheck:
    """Train on earlier label dates, test on later ones, and score ROC AUC and calibration.

    Args:
        lake: the lake directory (reads raw_customers, raw_transactions, customer_labels).
        horizon_days: label date minus feature date.
        warmup_days: history the first feature date needs (see :func:`training_frame`).
        test_share: share of the usable label dates (the latest ones) held out for testing.
        population: ``"active"`` scores customers active at the feature date (recency below
            ``horizon_days``); ``"all"`` every customer signed up by then.
        seed: the gradient-boosting learner's seed.

    Returns:
        The :class:`ModelCheck`; ``warnings`` says when an AUC is outside 0.70-0.90.

    Raises:
        ValueError: fewer than two usable label dates, or one class only.
    """
    from sklearn.metrics import brier_score_loss, roc_auc_score

    customers, transactions = load_inputs(lake)
    labels = read_table(lake, "customer_labels", columns=["customer_id", "label_date", "churned"]).to_pandas(
        date_as_object=False)
    frame = training_frame(customers, transactions, labels, horizon_days=horizon_days, warmup_days=warmup_days,
                           start=window_start(lake))
    if population == "active":
        frame = frame[frame["recency_days"] < horizon_days]
    dates = sorted(frame["label_date"].unique())
    if len(dates) < 2:
        raise ValueError(f"model check needs at least 2 label dates after the warm-up (got {len(dates)}); "
                         "simulate more months")
    n_test = min(len(dates) - 1, max(1, round(len(dates) * test_share)))
    train_dates, test_dates = dates[:-n_test], dates[-n_test:]
    train = frame[frame["label_date"].isin(train_dates)]
    test = frame[frame["label_date"].isin(test_dates)]
    y_train, y_test = train["churned"].to_numpy(), test["churned"].to_numpy()
    if y_train.min() == y_train.max() or y_test.min() == y_test.max():
        raise ValueError("model check needs churned and retained customers in both train and test")
    segments = sorted(frame["segment"].dropna().unique())
    x_train, x_test = _design(train, segments), _design(test, segments)
    iso = [str(pd.Timestamp(d).date()) for d in dates]
    result = ModelCheck(population, iso[:-n_test], iso[-n_test:], len(train), len(test),
                        float(y_train.mean()), float(y_test.mean()))
    for name, learner in _learners(seed).items():
        learner.fit(x_train, y_train)
        p = learner.predict_proba(x_test)[:, 1]
        score = ModelScore(name, float(roc_auc_score(y_test, p)),
                           float(brier_score_loss(y_test, p)),
                           float(brier_score_loss(y_test, np.full(len(y_test), y_train.mean()))),
                           reliability_table(y_test.astype(float), p))
        result.models.append(score)
        log.info("%s: ROC AUC %.3f, Brier %.4f", name, score.roc_auc, score.brier)
        lo, hi = PLAUSIBLE_AUC
        if not lo <= score.roc_auc <= hi:
            why = "label leakage?" if score.roc_auc > hi else "little signal"
            result.warnings.append(f"{name}: ROC AUC {score.roc_auc:.3f} outside the plausible {lo}-{hi} ({why})")
    return result
