"""Commands that analyse a lake: features, model-check, drift, ab, plot.

Exit codes follow the group's: 0 ok; 1 the check found something (``drift``: a scored column
drifted; ``model-check``: an AUC outside the plausible 0.70-0.90); 2 bad input.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import click

from sim.cli import main
from sim.cli._common import BadInput, ChecksFailed, F, echo_json, handle_errors, lake_option, load, scenario_options


def analysis_errors(fn: F) -> F:
    """Analysis raises ``ValueError`` for unusable input and deltalake errors for a missing table."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from deltalake.exceptions import TableNotFoundError

        try:
            return fn(*args, **kwargs)
        except TableNotFoundError as exc:
            raise BadInput(f"no Delta table there: {str(exc).splitlines()[0]}") from None
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date YYYY-MM-DD (got {value!r})") from None


def _window(ctx: click.Context, param: click.Parameter, value: str):
    from analysis.drift import Window

    try:
        return Window.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@lake_option
@click.option("--as-of", "as_of", default=None, callback=_date, metavar="DATE",
              help="Snapshot date: only transactions strictly before it count. Default: the lake's last "
                   "month end (its latest label date).")
@click.option("--every", type=click.Choice(["month"]), default=None,
              help="Also write a snapshot at every month end from the first transaction up to --as-of.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
@analysis_errors
def features(lake: str, as_of: dt.date | None, every: str | None, as_json: bool) -> None:
    """Write point-in-time customer features to LAKE/customer_features.

    One Delta commit per as-of date; re-running a date replaces its snapshot.

    \b
    Example:
      churnsim features --lake ./lake --every month
    """
    from analysis.features import load_inputs, month_ends, write_features
    from analysis.lake import last_label_date, window_start

    if as_of is None:
        as_of = last_label_date(lake)
    dates = [as_of]
    if every == "month":
        _, tx = load_inputs(lake)
        if len(tx):
            # From the simulation's first day: the history rows before it are not a month of their own.
            first = window_start(lake) or tx["transaction_date"].min()
            dates = sorted({*month_ends(first.date() if hasattr(first, "date") else first, as_of), as_of})
    frame = write_features(lake, dates)
    summary = {"table": str(Path(lake) / "customer_features"), "as_of_dates": [str(d) for d in dates],
               "rows": len(frame), "customers_last_snapshot": int((frame["as_of_date"] == frame["as_of_date"].max()).sum())}
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"customer_features: {summary['rows']:,} rows over {len(dates)} snapshot(s) "
                   f"({dates[0]} .. {dates[-1]}) -> {summary['table']}")


@main.command("model-check")
@lake_option
@click.option("--population", type=click.Choice(["active", "all"]), default="active", show_default=True,
              help="Score customers active at the feature date, or every customer.")
@click.option("--horizon-days", type=click.IntRange(min=1), default=60, show_default=True,
              help="Days between the feature date and the label date.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
@analysis_errors
def model_check_cmd(lake: str, population: str, horizon_days: int, as_json: bool) -> None:
    """Train churn models on earlier label dates, test on later ones; report AUC and calibration.

    Features are taken HORIZON days before each label date. Real churn models score ROC AUC
    0.70-0.90: exit 1 when a model falls outside (near 1.0 suggests leakage, near 0.5 no signal).

    \b
    Example:
      churnsim model-check --lake ./lake --json
    """
    from analysis.model import model_check

    result = model_check(lake, population=population, horizon_days=horizon_days)  # type: ignore[arg-type]
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"population: {result.population}; train label dates {result.train_label_dates[0]} .. "
                   f"{result.train_label_dates[-1]} (n={result.n_train:,}, churn {result.churn_rate_train:.1%}); "
                   f"test {result.test_label_dates[0]} .. {result.test_label_dates[-1]} "
                   f"(n={result.n_test:,}, churn {result.churn_rate_test:.1%})")
        for m in result.models:
            click.echo(f"{m.name:22s} ROC AUC {m.roc_auc:.3f}  Brier {m.brier:.4f} (base rate {m.brier_base_rate:.4f})")
            click.echo("  reliability (mean predicted -> observed, n): " + ", ".join(
                f"{r['mean_predicted']:.2f}->{r['observed_rate']:.2f}" for r in m.reliability))
    if result.warnings:
        raise ChecksFailed("; ".join(result.warnings))


@main.command()
@lake_option
@click.option("--reference", required=True, callback=_window, metavar="START:END",
              help="Reference window, e.g. 2024-04-01:2024-06-30 (inclusive).")
@click.option("--current", required=True, callback=_window, metavar="START:END",
              help="Current window, e.g. 2024-08-01:2024-10-31 (inclusive).")
@click.option("--other-lake", type=click.Path(file_okay=False), default=None,
              help="Read the current window from this lake instead.")
@click.option("--reference-version", type=int, default=None, metavar="N", help="Delta version for the reference.")
@click.option("--current-version", type=int, default=None, metavar="N", help="Delta version for the current window.")
@click.option("--population", type=click.Choice(["active", "all"]), default="active", show_default=True,
              help="Compare features over active customers (a purchase in 90 days) or everyone.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
@analysis_errors
def drift(lake: str, reference, current, other_lake: str | None, reference_version: int | None,
          current_version: int | None, population: str, as_json: bool) -> None:
    """Compare feature and daily-metric distributions between two windows; exit 1 on drift.

    Per column: PSI (reference quantile bins), KS statistic, relative mean change and the
    guide's 20 % alert. A feature drifts when PSI >= 0.2, or |mean change| >= 15 % with KS
    p < 0.001 (metrics: the mean rule only). When the lake holds _churnsim/scenario.json the
    flags are scored against its drifts. Exit 1 when a scored column drifts.

    \b
    Example:
      churnsim drift --lake ./lake --reference 2024-04-01:2024-06-30 --current 2024-08-01:2024-10-31
    """
    from analysis.drift import drift_report, score_drift
    from analysis.plots import load_scenario_json

    report = drift_report(lake, reference=reference, current=current, other_lake=other_lake,
                          reference_version=reference_version, current_version=current_version,
                          population=population)  # type: ignore[arg-type]
    truth = load_scenario_json(other_lake or lake)
    score = score_drift(report, truth) if truth else None
    if as_json:
        echo_json({**report.to_dict(), "score": score})
    else:
        click.echo(f"reference {report.reference}  current {report.current}  population {report.population}")
        click.echo(f"{'column':32s} {'mean ref':>11s} {'mean cur':>11s} {'change':>8s} {'PSI':>6s} {'KS':>6s}  verdict")
        for c in report.columns:
            verdict = ("DRIFT" if c.drift else "ok") + ("" if c.scored else " (not scored)")
            alert = " 20%-alert" if c.alert_20pct else ""
            click.echo(f"{c.column:32s} {c.mean_reference:11.3f} {c.mean_current:11.3f} {c.mean_change:+8.1%} "
                       f"{c.psi:6.3f} {c.ks:6.3f}  {verdict}{alert}")
        if score is not None:
            click.echo(f"ground truth: expected {score['expected'] or 'none'}; hits {score['hits'] or 'none'}; "
                       f"misses {score['misses'] or 'none'}; false alarms {score['false_alarms'] or 'none'}")
    if report.flagged:
        raise ChecksFailed(f"drift in {len(report.flagged)} column(s): {', '.join(report.flagged)}")


def _neutralised(data: dict[str, Any], *, seed: int | None = None, experiment: str | None = None) -> dict[str, Any]:
    """The twin: ``experiment``'s treatment (every experiment's when None) with multipliers 1.0."""
    twin = json.loads(json.dumps(data))
    for e in twin.get("experiments") or []:
        if experiment is not None and e["name"] != experiment:
            continue  # the other experiments run in the twin as in the run: the twin differs by one treatment
        for key in list(e.get("treatment") or {}):
            if key.endswith("_multiplier"):
                e["treatment"][key] = 1.0
    if seed is not None:
        twin["seed"] = seed
    return twin


@main.command()
@click.argument("scenario")
@click.option("--experiment", "name", default=None, help="Which experiment (default: the first).")
@click.option("--json", "as_json", is_flag=True, help="Print the read-out as JSON.")
@scenario_options
@handle_errors
@analysis_errors
def ab(scenario: str, name: str | None, as_json: bool, overrides: tuple[str, ...], env: str | None) -> None:
    """A/B read-out of SCENARIO's experiment, with the true effect beside it.

    Runs SCENARIO in memory, a twin with the treatment neutralised (multipliers 1.0, same seed:
    common random numbers, so each treated customer's twin is its counterfactual), and an
    independent neutralised run (seed + 1). Reports per arm 60-day churn, revenue and purchases,
    treatment - control with a 95 % CI, the true effect (paired over treated customers), and the
    CI widths of the paired and the independent estimate.

    \b
    Example:
      churnsim ab scenarios/retention_ab.yaml -s population.size=5000 --json
    """
    from analysis.ab import ab_readout, experiment_of
    from sim.execute.memory import simulate
    from sim.scenario import scenario_from_dict

    s = load(scenario, overrides, env)
    data = s.to_dict()
    experiment = experiment_of(data, name)
    from sim.execute.targets import solve_targets

    # One set of target scales for all three runs: the twin must differ from the run by the treatment only.
    c = solve_targets(s)
    only = experiment["name"]
    runs = [simulate(x, scales=c) for x in (s, scenario_from_dict(_neutralised(data, experiment=only)),
                                                 scenario_from_dict(_neutralised(data, seed=s.seed + 1, experiment=only)))]
    result = ab_readout(runs[0], experiment, twin=runs[1], independent=runs[2])
    if as_json:
        echo_json(result)
        return
    arms = result["arms"]
    click.echo(f"experiment {result['experiment']} assigned {result['assign_date']}; outcomes over "
               f"{result['window_days']} days (churn at {result['outcome_label_date']})")
    click.echo(f"n: treatment {arms['treatment']['n']:,}, control {arms['control']['n']:,}")
    for metric, row in result["metrics"].items():
        a, t = row["ab"], row["true_effect"]
        click.echo(f"{metric:14s} treatment {arms['treatment'][metric]:9.3f}  control {arms['control'][metric]:9.3f}  "
                   f"diff {a['estimate']:+.3f} [{a['ci_low']:+.3f}, {a['ci_high']:+.3f}]  "
                   f"true {t['estimate']:+.3f} ({'covered' if row['covered'] else 'NOT covered'})")
        click.echo(f"{'':14s} CI width: paired (CRN) {t['ci_width']:.3f} vs independent "
                   f"{row['independent']['ci_width']:.3f}")


@main.command()
@lake_option
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Directory for the PNGs.")
@click.option("--customers", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Also write customers.png: N customer trajectories, stratified by segment, seeded by the scenario.")
@handle_errors
@analysis_errors
def plot(lake: str, out: str, customers: int) -> None:
    """Plot behaviour trajectories of the lake as PNGs in OUT.

    activity.png, cohort_retention.png, intensity_hazard.png, churn_vs_recency.png and, when the
    lake ran an experiment, ab_arms.png. Interventions, drift onsets and experiment assignments
    (from LAKE/_churnsim/scenario.json) are marked. With --customers N, customers.png: one row per
    sampled customer (purchases sized by amount, segment changes, latent dropout, churned months).

    \b
    Example:
      churnsim plot --lake ./lake --out ./plots --customers 20
    """
    from analysis.figures import plot_all

    for p in plot_all(lake, out, customers=customers):
        click.echo(str(p))
