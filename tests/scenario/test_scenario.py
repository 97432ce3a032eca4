"""Scenario loading: every malformed input gets one exact line, exit code 2, and no lake."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from sim import ScenarioError, load_scenario, scenario_from_dict
from sim.cli import main
from sim.scenario import apply_overrides

MALFORMED = [
    ('unknown_top_key', 'seeed: 3\n',
     "Error: {file}: seeed: unknown key (did you mean 'seed'?); expected one of schema_version, name, description, seed, calendar, seasonality, population, targets, interventions, drifts, experiments, corruption, notes (got 3)"),
    ('unknown_nested_key', 'population:\n  sise: 10\n',
     "Error: {file}: population.sise: unknown key (did you mean 'size'?); expected one of size, shard_size, recency_scale_days, segments, heterogeneity, acquisition, changes, category_weights (got 10)"),
    ('wrong_type_size', 'population:\n  size: lots\n',
     "Error: {file}: population.size: expected an integer (got 'lots')"),
    ('float_size', 'population:\n  size: 10.5\n',
     'Error: {file}: population.size: expected an integer (got 10.5)'),
    ('negative_rate', 'population:\n  segments:\n    young_active:\n      purchase_rate: -0.1\n',
     'Error: {file}: population.segments.young_active.purchase_rate: expected a number in (0, 50] (got -0.1)'),
    ('share_out_of_range', 'population:\n  segments:\n    young_active:\n      share: 1.4\n',
     'Error: {file}: population.segments.young_active.share: expected a number in [0, 1] (got 1.4)'),
    ('shares_not_summing', 'population:\n  segments:\n    young_active:\n      share: 0.3\n',
     'Error: {file}: population.segments.*.share: expected shares summing to 1 (got 1.05)'),
    ('age_below_18', 'population:\n  segments:\n    young_active:\n      age: [16, 33]\n',
     'Error: {file}: population.segments.young_active.age: expected ages within [18, 100] (got [16, 33])'),
    ('age_above_100', 'population:\n  segments:\n    senior_declining:\n      age: [51, 120]\n',
     'Error: {file}: population.segments.senior_declining.age: expected ages within [18, 100] (got [51, 120])'),
    ('age_reversed', 'population:\n  segments:\n    mid_stable:\n      age: [50, 34]\n',
     'Error: {file}: population.segments.mid_stable.age: expected [low, high] with low <= high (got [50, 34])'),
    ('unknown_segment', 'population:\n  segments:\n    young_activ:\n      share: 0.25\n',
     "Error: {file}: population.segments.young_activ: unknown key (did you mean 'young_active'?); expected one of young_active, mid_stable, senior_declining, new_customer (got {'share': 0.25})"),
    ('bad_date', 'calendar:\n  start_date: 2024-13-01\n  months: 3\n',
     'Error: {file}: malformed YAML value: month must be in 1..12'),
    ('days_and_months', 'calendar:\n  days: 30\n  months: 3\n',
     "Error: {file}: calendar: expected exactly one of days or months (got {'days': 30, 'months': 3})"),
    ('intervention_before_start', 'calendar: {months: 3}\ninterventions:\n  - {name: x, start: 2023-12-01}\n',
     "Error: {file}: interventions[0].start: expected a date on or after calendar.start_date (2024-01-01) (got '2023-12-01')"),
    ('intervention_unknown_segment', 'calendar: {months: 3}\ninterventions:\n  - {name: x, start: 2024-02-01, target: {segment: seniors}}\n',
     "Error: {file}: interventions[0].target.segment: expected a segment, one of young_active, mid_stable, senior_declining, new_customer (got 'seniors')"),
    ('intervention_bad_kind', 'calendar: {months: 3}\ninterventions:\n  - {name: x, start: 2024-02-01, kind: coupon}\n',
     "Error: {file}: interventions[0].kind: expected one of 'retention_campaign', 'spend_shock', 'outage' (got 'coupon')"),
    ('intervention_missing_name', 'calendar: {months: 3}\ninterventions:\n  - {start: 2024-02-01}\n',
     'Error: {file}: interventions[0].name: expected a string (required key missing) (got None)'),
    ('drift_bad_parameter', 'calendar: {months: 3}\ndrifts:\n  - {name: d, parameter: spend, start: 2024-02-01}\n',
     "Error: {file}: drifts[0].parameter: expected one of 'spend_median', 'purchase_rate', 'decay_per_year', 'dropout_hazard', 'dropout_per_purchase', 'acquisition_mix' (got 'spend')"),
    ('drift_mix_not_summing', 'calendar: {months: 3}\ndrifts:\n  - {name: d, parameter: acquisition_mix, start: 2024-02-01, mix: {young_active: 0.5}}\n',
     "Error: {file}: drifts[0].mix: expected shares summing to 1 (got {'young_active': 0.5})"),
    ('experiment_after_end', 'calendar: {months: 3}\nexperiments:\n  - {name: e, assign_date: 2025-01-01}\n',
     "Error: {file}: experiments[0].assign_date: expected a date [2024-01-01, 2024-03-31] (got '2025-01-01')"),
    ('duplicate_names', 'calendar: {months: 3}\ninterventions:\n  - {name: x, start: 2024-02-01}\ndrifts:\n  - {name: x, parameter: spend_median, start: 2024-02-01}\n',
     "Error: {file}: drifts[0].name: expected a name not used by another intervention, drift or experiment (got 'x')"),
    ('churn_rate_above_1', 'targets: {churn_rate: 1.5}\n',
     'Error: {file}: targets.churn_rate: expected a number in (0, 1] (got 1.5)'),
    ('schema_version', 'schema_version: 2\n',
     'Error: {file}: schema_version: expected 1 (got 2)'),
    ('malformed_yaml', 'population:\n  size: [1, 2\n',
     "Error: {file}: line 3, column 1: malformed YAML: expected ',' or ']', but got '<stream end>'"),
    ('top_level_list', '- 1\n- 2\n',
     'Error: {file}: <root>: expected a mapping at the top level (got [1, 2])'),
    ('weekly_length', 'seasonality: {weekly: [1, 1, 1]}\n',
     'Error: {file}: seasonality.weekly: expected 7 non-negative multipliers, Monday first (got [1.0, 1.0, 1.0])'),
    ('acquisition_only_without_mix', 'population: {acquisition: {share: 1.0}, segments: {young_active: {share: 0}, '
     'mid_stable: {share: 0}, senior_declining: {share: 0}, new_customer: {share: 1.0}}}\n',
     'Error: {file}: population.acquisition.mix: expected a graduation mix when young_active, mid_stable and '
     'senior_declining all have share 0 (got None)'),
    ('acquisition_window_zero', 'population: {acquisition: {window_days: 0}}\n',
     'Error: {file}: population.acquisition.window_days: expected an integer in [1, 36500] (got 0)'),
    ('acquisition_window_shape_zero', 'population: {acquisition: {window_days: 30, window_shape: 0}}\n',
     'Error: {file}: population.acquisition.window_shape: expected a number in (0, 10] (got 0.0)'),
    ('acquisition_window_shape_big', 'population: {acquisition: {window_days: 30, window_shape: 11}}\n',
     'Error: {file}: population.acquisition.window_shape: expected a number in (0, 10] (got 11.0)'),
    ('dropout_per_purchase_above_one', 'population: {segments: {mid_stable: {dropout_per_purchase: 1.5}}}\n',
     'Error: {file}: population.segments.mid_stable.dropout_per_purchase: expected a number in [0, 1] (got 1.5)'),
    ('segment_heterogeneity_shape_zero', 'population: {segments: {senior_declining: {heterogeneity_shape: 0}}}\n',
     'Error: {file}: population.segments.senior_declining.heterogeneity_shape: expected a number in [0.1, 1000] (got 0.0)'),
    ('dropout_concentration_zero', 'population: {heterogeneity: {dropout_concentration: 0}}\n',
     'Error: {file}: population.heterogeneity.dropout_concentration: expected a number in (0, 1000000] (got 0.0)'),
    ('acquisition_too_big', 'population: {acquisition: {share: 0.5}}\n',
     'Error: {file}: population.acquisition.share: expected at most population.segments.new_customer.share (0.15) (got 0.5)'),
    # Issue 18: attribute changes.
    ('move_rate_negative', 'population: {changes: {move_rate_per_year: -0.1}}\n',
     'Error: {file}: population.changes.move_rate_per_year: expected a number in [0, 12] (got -0.1)'),
    ('late_share_above_one', 'population: {changes: {late_share: 1.5}}\n',
     'Error: {file}: population.changes.late_share: expected a number in [0, 1] (got 1.5)'),
    ('late_max_days_zero', 'population: {changes: {late_max_days: 0}}\n',
     'Error: {file}: population.changes.late_max_days: expected a number in (0, 365] (got 0.0)'),
    ('half_life_zero', 'population: {changes: {spend_half_life_months: 0}}\n',
     'Error: {file}: population.changes.spend_half_life_months: expected a number in (0, 120] (got 0.0)'),
    ('downgrade_ratio_above_one', 'population: {changes: {tier_downgrade_ratio: 1.2}}\n',
     'Error: {file}: population.changes.tier_downgrade_ratio: expected a number in [0, 1] (got 1.2)'),
    ('tier_unknown', 'population: {changes: {tier_thresholds: {silver: 50, gold: 100, platnum: 200}}}\n',
     "Error: {file}: population.changes.tier_thresholds.platnum: expected one of silver, gold, platinum (did you mean 'platinum'?) (got 200.0)"),
    ('tier_missing', 'population: {changes: {tier_thresholds: {silver: 50, gold: 100}}}\n',
     "Error: {file}: population.changes.tier_thresholds: expected a threshold for each of silver, gold, platinum (got {'silver': 50.0, 'gold': 100.0})"),
    ('tier_not_rising', 'population: {changes: {tier_thresholds: {silver: 50, gold: 40, platinum: 200}}}\n',
     "Error: {file}: population.changes.tier_thresholds: expected thresholds rising from silver to platinum (got {'silver': 50.0, 'gold': 40.0, 'platinum': 200.0})"),
    ('tier_not_positive', 'population: {changes: {tier_thresholds: {silver: 0, gold: 40, platinum: 200}}}\n',
     'Error: {file}: population.changes.tier_thresholds.silver: expected a positive spend per month (got 0.0)'),
    ('tier_not_a_number', 'population: {changes: {tier_thresholds: {silver: lots, gold: 40, platinum: 200}}}\n',
     "Error: {file}: population.changes.tier_thresholds.silver: expected a number (got 'lots')"),
    # Issue 13.5: the flag word holds 32 interventions and 16 experiments; beyond, an IndexError.
    ('too_many_interventions', 'calendar: {months: 3}\ninterventions:\n'
     + ''.join(f'  - {{name: c{i}, start: 2024-02-01}}\n' for i in range(40)),
     'Error: {file}: interventions: expected at most 32 interventions (got 40)'),
    ('too_many_experiments', 'calendar: {months: 3}\nexperiments:\n'
     + ''.join(f'  - {{name: e{i}, assign_date: 2024-02-01}}\n' for i in range(17)),
     'Error: {file}: experiments: expected at most 16 experiments (got 17)'),
]


@pytest.mark.parametrize(("name", "text", "error"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_scenario_is_refused_at_load(tmp_path, name, text, error):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    lake = tmp_path / "lake"
    result = CliRunner().invoke(main, ["run", str(path), "--lake", str(lake)])
    assert result.exit_code == 2
    assert result.output.strip() == error.replace("{file}", str(path))
    assert "\n" not in result.output.strip()
    assert not lake.exists()


def test_overrides_apply_before_validation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("population: {size: 100}\n")
    s = load_scenario(path, overrides=["population.size=5000", "seed=7", "calendar.months=3"])
    assert (s.population.size, s.seed, s.calendar.months) == (5000, 7, 3)
    with pytest.raises(ScenarioError, match=r"population.size: expected an integer \(got 'x'\)"):
        load_scenario(path, overrides=["population.size=x"])
    with pytest.raises(ScenarioError, match="expected KEY.PATH=VALUE"):
        apply_overrides({}, ["nonsense"])


def test_the_guides_environments_file_loads_with_env():
    from sim.scenario.shipped import shipped_path

    prod = load_scenario(shipped_path("environments"), env="prod")
    assert prod.population.size == 100_000 and prod.calendar.days == 730
    assert prod.targets.avg_transactions_per_customer == 20 and prod.targets.churn_rate == 0.15
    staging = load_scenario(shipped_path("environments"), env="staging")
    assert staging.corruption.rate == 0.02
    with pytest.raises(ScenarioError, match=r"environments.prd: expected one of dev, staging, prod \(did you mean 'prod'\?\)"):
        load_scenario(shipped_path("environments"), env="prd")
    with pytest.raises(ScenarioError, match="--env NAME"):
        load_scenario(shipped_path("environments"))


def test_shipped_environment_files_match_the_environments_file():
    from sim.scenario.shipped import shipped_path

    for env in ("dev", "staging", "prod"):
        a = load_scenario(shipped_path(env))
        b = load_scenario(shipped_path("environments"), env=env)
        assert (a.population.size, a.calendar.days, a.targets, a.corruption.rate) == (
            b.population.size, b.calendar.days, b.targets, b.corruption.rate)


def test_scenario_round_trips_through_its_dict():
    from sim.scenario.shipped import shipped_path

    for name in ("ab_retention", "drift_senior_decline", "holiday_season"):
        s = load_scenario(shipped_path(name))
        again = scenario_from_dict(s.to_dict())
        assert again == s and again.digest() == s.digest()


def test_scenarios_are_frozen():
    s = scenario_from_dict({})
    with pytest.raises(AttributeError):
        s.seed = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- model numbers as keys


def test_category_weights_choose_the_categories():
    from sim import simulate

    s = scenario_from_dict({"seed": 3, "calendar": {"months": 1}, "population": {
        "size": 300, "category_weights": {"books": 1.0, "travel": 3.0}}})
    cats = simulate(s)["raw_transactions"].column("category").to_pylist()
    assert set(cats) == {"books", "travel"} and 0.6 < cats.count("travel") / len(cats) < 0.9


@pytest.mark.parametrize("weights, expected", [
    ({"bookz": 1.0}, "population.category_weights.bookz: expected one of groceries, "),
    ({"books": -1.0}, "population.category_weights.books: expected a non-negative weight (got -1.0)"),
    ({"books": 0.0}, "population.category_weights: expected at least one positive weight"),
])
def test_bad_category_weights_are_refused(weights, expected):
    with pytest.raises(ScenarioError, match=re.escape(expected)):
        scenario_from_dict({"population": {"category_weights": weights}})


def test_graduation_jitter_and_ramp_steps_are_keys():
    import numpy as np

    from sim.model.calendar import horizon_periods
    from sim.model.effects import breakpoints
    from sim.model.population import create_agents

    s = scenario_from_dict({"population": {"acquisition": {"graduation_days": 50, "graduation_jitter_days": 0}}})
    since = np.array([19_800.0, 19_850.5])
    agents, _ = create_agents(s, np.array([1, 2]), np.full(2, 3, np.int8), since, 19_700.0, np.random.default_rng(0))
    assert (agents.graduate_at - since).tolist() == [50.0, 50.0]
    drift = {"name": "d", "parameter": "spend_median", "start": "2024-01-05", "shape": "ramp", "ramp_days": 20,
             "multiplier": 2.0}
    month = horizon_periods(scenario_from_dict({"calendar": {"months": 1}}).calendar)[0]
    for step, count in ((7, 4), (2, 11)):
        s = scenario_from_dict({"calendar": {"months": 1}, "drifts": [{**drift, "ramp_step_days": step}]})
        assert len(breakpoints(s, month)) == count


def test_too_many_interventions_are_refused_by_scenarios_check(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("calendar: {months: 3}\ninterventions:\n"
                    + "".join(f"  - {{name: c{i}, start: 2024-02-01}}\n" for i in range(40)))
    result = CliRunner().invoke(main, ["scenarios", "--check", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {path}: interventions: expected at most 32 interventions (got 40)"
