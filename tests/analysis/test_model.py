"""The churn-model check on a small run: plausible AUCs, calibration, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.features import load_inputs
from analysis.lake import read_table
from analysis.model import model_check, reliability_table, training_frame
from sim.cli import main


@pytest.fixture(scope="module")
def check(analysis_lake):
    return model_check(analysis_lake)


def test_aucs_are_plausible(check) -> None:
    assert [m.name for m in check.models] == ["logistic_regression", "gradient_boosting"]
    for m in check.models:
        assert 0.6 < m.roc_auc < 0.97, m
        assert m.brier < m.brier_base_rate  # better than predicting the base rate
    assert check.train_label_dates[-1] < check.test_label_dates[0]  # time split


def test_reliability_table_is_calibrated(check) -> None:
    for m in check.models:
        rel = m.reliability
        assert sum(r["n"] for r in rel) == check.n_test
        pred = np.array([r["mean_predicted"] for r in rel])
        obs = np.array([r["observed_rate"] for r in rel])
        assert np.all(np.diff(pred) >= 0)
        assert np.abs(pred - obs).max() < 0.1


def test_training_frame_uses_features_sixty_days_before(analysis_lake) -> None:
    customers, tx = load_inputs(analysis_lake)
    labels = read_table(analysis_lake, "customer_labels").to_pandas(date_as_object=False)
    frame = training_frame(customers, tx, labels)
    assert ((frame["label_date"] - frame["as_of_date"]).dt.days == 60).all()
    first = pd.to_datetime(tx["transaction_date"]).min()
    assert (frame["as_of_date"] >= first + pd.Timedelta(days=90)).all()
    # feature recency (60 days earlier) never exceeds label recency minus 60 for a churned customer's window
    assert frame["churned"].dtype == bool and 0.05 < frame["churned"].mean() < 0.6


@pytest.mark.slow
def test_all_population_flags_implausible_auc(analysis_lake) -> None:
    """Scoring already-lapsed customers too inflates the AUC: the check says so."""
    result = model_check(analysis_lake, population="all")
    assert all(m.roc_auc > 0.9 for m in result.models)
    assert result.warnings and "outside the plausible" in result.warnings[0]


def test_reliability_table_bins() -> None:
    y = np.array([0, 0, 1, 1] * 25, float)
    p = np.linspace(0, 1, 100)
    rows = reliability_table(y, p, bins=4)
    assert [r["n"] for r in rows] == [25, 25, 25, 25]


def test_cli_model_check(analysis_lake) -> None:
    r = CliRunner().invoke(main, ["model-check", "--lake", str(analysis_lake), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert {m["name"] for m in data["models"]} == {"logistic_regression", "gradient_boosting"}
    assert "Example:" in CliRunner().invoke(main, ["model-check", "--help"]).output
    missing = CliRunner().invoke(main, ["model-check", "--lake", str(analysis_lake / "nope")])
    assert missing.exit_code == 2 and "Error: no Delta table there" in missing.output
