"""The history's cost measurement: an honest baseline (the same job, only without customer_history)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from sim.batch.tables import TABLES
from sim.execute.memory import simulate
from sim.model.changes import BENCH_NO_HISTORY_ENV, history_recorded
from sim.scenario import Scenario


def test_the_history_is_recorded_unless_the_bench_baseline_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BENCH_NO_HISTORY_ENV, raising=False)
    assert history_recorded()
    monkeypatch.setenv(BENCH_NO_HISTORY_ENV, "0")
    assert history_recorded()
    monkeypatch.setenv(BENCH_NO_HISTORY_ENV, "1")
    assert not history_recorded()


def test_baseline_in_memory_differs_only_by_the_missing_history(
        monkeypatch: pytest.MonkeyPatch, scenario: Scenario, reference: dict[str, pa.Table]) -> None:
    monkeypatch.setenv(BENCH_NO_HISTORY_ENV, "1")
    got = simulate(scenario)
    assert reference["customer_history"].num_rows > 0
    assert got["customer_history"].num_rows == 0
    for name in TABLES[:4]:
        assert got[name].num_rows > 0 and got[name].equals(reference[name]), name


def test_baseline_to_delta_commits_no_history_and_the_same_other_tables(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scenario: Scenario, reference: dict[str, pa.Table]) -> None:
    from analysis.lake import read_table
    from sim.execute import runs

    monkeypatch.setenv(BENCH_NO_HISTORY_ENV, "1")
    runs.run(scenario, tmp_path / "lake")
    assert not (tmp_path / "lake" / "customer_history").exists()
    for name in TABLES[:4]:
        got = read_table(tmp_path / "lake", name)
        assert got.num_rows > 0 and got.sort_by(_keys(name)).equals(reference[name].sort_by(_keys(name))), name


def _keys(name: str) -> list[tuple[str, str]]:
    cols = {"raw_customers": ["customer_id"], "raw_transactions": ["transaction_id"],
            "customer_labels": ["label_date", "customer_id"], "daily_metrics": ["metric_date", "segment"]}[name]
    return [(c, "ascending") for c in cols]


@pytest.mark.slow  # eight fresh interpreters (the CLI's bench test runs one round)
def test_history_cost_reports_both_sides_of_each_job() -> None:
    from sim.bench_history import JOBS, history_cost

    out = history_cost(size="small", rounds=2)
    assert out["rounds"] == 2
    for job in JOBS:
        j = out[job]
        assert len(j["with_seconds"]) == len(j["without_seconds"]) == 2
        assert min(j["with_seconds"] + j["without_seconds"] + j["with_cpu_seconds"] + j["without_cpu_seconds"]) > 0
        assert j["ratio"] > 0 and j["cpu_ratio"] > 0
        # The baseline really runs without the history; the measured side makes it.
        assert j["history_rows"] > 0 and j["baseline_history_rows"] == 0


def test_history_cost_needs_a_round() -> None:
    from sim.bench_history import history_cost

    with pytest.raises(ValueError, match=r"rounds: expected at least 1 \(got 0\)"):
        history_cost(size="small", rounds=0)
