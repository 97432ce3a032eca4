"""``churnsim calibrate``: fit a scenario to a real transaction log."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from sim.cli import main
from sim.cli._common import BadInput, echo_json, handle_errors


def _parse_columns(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BadInput(f"--columns: expected KEY=NAME pairs like customer_id=cust,date=dt,amount=value (got {item!r})")
        out[key.strip()] = value.strip()
    return out


@main.command()
@click.argument("log_path", metavar="LOG", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Scenario YAML to write.")
@click.option("--columns", "columns", default=None, metavar="KEY=NAME,...",
              help="Map customer_id, date, amount to the log's columns, e.g. customer_id=cust,date=dt,amount=value "
                   "(a file without a header row names its columns by position: customer_id=1,date=3,amount=5).")
@click.option("--segments", type=click.IntRange(1, 4), default=4, show_default=True, help="Segments to find.")
@click.option("--model", type=click.Choice(["auto", "steady", "acquired"]), default="auto", show_default=True,
              help="steady: a customer base in segments plus acquisitions; acquired: every customer acquired "
                   "in the window at its first purchase (a cohort); auto: the better fit.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the fit and of the scenario.")
@click.option("--report", "report", default=None, type=click.Path(file_okay=False),
              help="Also write fit_report.{md,json,png} comparing the log with a simulation of the fit.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary (and the report's distances) as JSON.")
@click.pass_context
@handle_errors
def calibrate(ctx, log_path, out, columns, segments, model, seed, report, as_json):
    """Fit a scenario (segments, rates, spend, dropout, seasonality) to a transaction LOG.

    LOG is a CSV or Parquet file, or a Delta table directory, with a customer id, a date and an
    amount per row. The written YAML loads with ``churnsim run``.

    \b
    Example:
      churnsim calibrate transactions.csv --out fitted.yaml --columns customer_id=cust,date=dt,amount=value --report fit/
    """
    from sim.fit import fit_report, read_log
    from sim.fit import fit_scenario as fit

    cols = _parse_columns(columns)
    df = read_log(log_path, columns=cols)
    scenario = fit(df, columns=cols, segments=segments, model=model, seed=seed, name=Path(out).stem)
    Path(out).write_text(yaml.safe_dump(scenario.to_dict(), sort_keys=False))
    summary = {"scenario": out, "customers": scenario.population.size,
               "start_date": scenario.calendar.start_date.isoformat(), "days": scenario.calendar.days,
               "segments": {k: round(v.share, 4) for k, v in scenario.population.segments.items()}}
    if report:
        summary["report"] = fit_report(df, scenario, out_dir=report, columns=cols)["distances"]
    if as_json:
        echo_json(summary)
    elif not ctx.obj["quiet"]:
        click.echo(f"{out}: {summary['customers']:,} customers over {summary['days']} days from {summary['start_date']}")
        if report:
            click.echo(f"{report}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["report"].items()))
