"""Drift detection against the scenario's ground truth: a spend drift and the baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from analysis.drift import SPEND_FEATURES, Window, drift_report, ks_statistic, psi, score_drift
from analysis.plots import load_scenario_json
from sim.cli import main

BEFORE = (Window.parse("2024-04-01:2024-05-31"), Window.parse("2024-06-01:2024-06-30"))
AFTER = (Window.parse("2024-04-01:2024-06-30"), Window.parse("2024-08-01:2024-10-31"))


def _report(lake, windows):
    return drift_report(lake, reference=windows[0], current=windows[1])


def test_psi_and_ks() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    assert psi(a, b) < 0.02 and ks_statistic(a, b)[1] > 0.01
    shifted = rng.normal(1.0, 1, 5000)
    assert psi(a, shifted) > 0.5 and ks_statistic(a, shifted)[0] > 0.3
    counts = rng.poisson(1.0, 5000)  # tied quantiles merge bins
    assert psi(counts, rng.poisson(1.0, 5000)) < 0.02


def test_spend_drift_flags_spend_after_onset(drift_lake) -> None:
    truth = load_scenario_json(drift_lake)
    report = _report(drift_lake, AFTER)
    score = score_drift(report, truth)
    assert score["ok"], score
    assert SPEND_FEATURES <= set(score["hits"])
    assert not score["false_alarms"]
    by = {c.column: c for c in report.columns}
    assert by["avg_amount_90d"].mean_change == pytest.approx(0.25, abs=0.08)
    assert by["daily_avg_amount"].alert_20pct


def test_spend_drift_quiet_before_onset(drift_lake) -> None:
    report = _report(drift_lake, BEFORE)
    score = score_drift(report, load_scenario_json(drift_lake))
    assert score["expected"] == [] and report.flagged == [] and score["ok"]


@pytest.mark.parametrize("windows", [BEFORE, AFTER], ids=["before", "after"])
def test_baseline_flags_nothing(analysis_lake, windows) -> None:
    report = _report(analysis_lake, windows)
    score = score_drift(report, load_scenario_json(analysis_lake))
    assert report.flagged == [] and score["ok"], [c for c in report.columns if c.drift and c.scored]


def test_two_lakes_and_versions(analysis_lake, drift_lake) -> None:
    # Same seed, so before the onset the two lakes agree; after it the drift lake's spend is up.
    report = drift_report(analysis_lake, reference=AFTER[1], current=AFTER[1], other_lake=drift_lake)
    assert SPEND_FEATURES <= set(report.flagged)
    # Delta version 6 holds Jan..Jul (one version per month): a window inside it reads the same.
    same = drift_report(drift_lake, reference=BEFORE[0], current=BEFORE[0], current_version=6)
    assert same.flagged == []


def test_window_inside_warmup_is_refused(analysis_lake) -> None:
    with pytest.raises(ValueError, match="90 days of history"):
        drift_report(analysis_lake, reference=Window.parse("2024-01-01:2024-02-29"), current=BEFORE[1])


def test_cli_drift_exit_codes(drift_lake, analysis_lake) -> None:
    after = ["--reference", str(AFTER[0]), "--current", str(AFTER[1])]
    r = CliRunner().invoke(main, ["drift", "--lake", str(drift_lake), *after, "--json"])
    assert r.exit_code == 1
    body = r.output[: r.output.rindex("}") + 1]
    assert json.loads(body)["score"]["ok"] is True
    assert "Error: drift in" in r.output
    ok = CliRunner().invoke(main, ["drift", "--lake", str(analysis_lake), *after])
    assert ok.exit_code == 0, ok.output
    assert "ground truth: expected none" in ok.output
    bad = CliRunner().invoke(main, ["drift", "--lake", str(analysis_lake), "--reference", "2024-06-01",
                                    "--current", str(AFTER[1])])
    assert bad.exit_code == 2 and "START:END" in bad.output
    assert "Example:" in CliRunner().invoke(main, ["drift", "--help"]).output
