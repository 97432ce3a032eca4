"""Commands that simulate: run, append, optimize, scenarios."""

from __future__ import annotations

import time

import click

from sim.cli import main
from sim.cli._common import echo_json, handle_errors, lake_option, load, scenario_options


class _Progress:
    """A progress bar over months showing rows written and the rate."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.quiet, self.total, self.rows, self.t0 = quiet, total, 0, time.perf_counter()
        self.bar = None

    def __call__(self, written) -> None:
        self.rows += sum(written.rows.values())
        if self.bar is None and not self.quiet:  # started late: a refusal prints nothing before its error
            self.bar = click.progressbar(length=self.total, label="months", show_pos=True, file=None)
            self.bar.__enter__()
        if self.bar:
            rate = self.rows / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.label = f"{written.period.label}: {self.rows:,} rows ({rate:,.0f} rows/s)"
            self.bar.update(1)

    def close(self) -> None:
        if self.bar:
            self.bar.__exit__(None, None, None)


def _summary(state, seconds: float, rows: int) -> dict:
    p = state.period
    return {"scenario": state.scenario.name, "seed": state.scenario.seed, "last_month": p.label if p else None,
            "through": str(p.end) if p else None, "customers": state.next_customer_id - 1,
            "transactions": state.next_transaction_id - 1, "rows_written": rows, "seconds": round(seconds, 3)}


def _drive(ctx, as_json: bool, workers: int | None, engine: str, call, *, heading: str | None = None):
    """Run ``call(runner, progress, on_plan)`` with a progress bar and a runner that is always closed.

    Returns (the summary to print, ``None`` when quiet; the plan taken under the lake's lock). With
    ``--json`` the summary is printed here. ``heading`` (a format of ``plan``) is printed to stderr
    once the plan is known, before anything is written.
    """
    from sim.execute.parallel import close_runner, make_runner

    quiet = ctx.obj["quiet"]
    bar = _Progress(0, quiet=quiet or as_json)
    plans = []

    def on_plan(plan) -> None:
        plans.append(plan)
        bar.total = plan.target - (plan.state.period.index if plan.state is not None else -1)
        if heading and plan.action != "complete" and not quiet:
            click.echo(heading.format(plan=plan), err=True)

    t0 = time.perf_counter()
    runner = make_runner(workers=workers, engine=engine)
    try:
        state = call(runner, bar, on_plan)
    finally:
        bar.close()
        close_runner(runner)
    plan = plans[0]
    summary = {**_summary(state, time.perf_counter() - t0, bar.rows), "action": plan.action, "until": plan.until}
    if as_json:
        echo_json(summary)
    return (None if quiet and not as_json else summary), plan


def _engine_options(fn):
    fn = click.option("--workers", type=click.IntRange(min=1), default=None,
                      help="Worker processes for shards (default: all cores but one, which commits to Delta).")(fn)
    fn = click.option("--engine", type=click.Choice(["local", "spark", "process"]), default="local", show_default=True,
                      help="Where shards run: local processes, Spark tasks, or `process`: every customer "
                           "one SimPy process, in this process (slow; the same tables).")(fn)
    return fn


@main.command()
@click.argument("scenario")
@lake_option
@click.option("--months", type=click.IntRange(min=1), default=None,
              help="Months to simulate (default: the scenario's horizon).")
@click.option("--overwrite", is_flag=True, help="Replace a lake that holds a finished or different run.")
@click.option("--corrupt", "corrupt", type=float, default=None, metavar="RATE",
              help="Inject data-quality defects at RATE (recorded in the quality_manifest table).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@scenario_options
@_engine_options
@click.pass_context
@handle_errors
def run(ctx, scenario, lake, months, overwrite, corrupt, as_json, overrides, env, workers, engine):
    """Simulate SCENARIO month by month into the Delta lake.

    SCENARIO is a YAML file or the name of a shipped scenario (see `churnsim scenarios`).
    Each month is committed once to every table; rerunning an interrupted run resumes it.

    \b
    Example:
      churnsim run baseline --lake ./lake --months 12 -s population.size=5000
    """
    from sim.execute import runs

    if corrupt is not None:
        overrides = (*overrides, f"corruption.rate={corrupt}")
    s = load(scenario, overrides, env)
    summary, plan = _drive(ctx, as_json, workers, engine,
                           lambda runner, bar, on_plan: runs.run(s, lake, months=months, overwrite=overwrite,
                                                                  runner=runner, progress=bar, on_plan=on_plan))
    if summary and not as_json:
        if plan.action == "complete":
            click.echo(f"{lake}: complete: {s.name} through {summary['through']} ({plan.target + 1} months, "
                       "as asked); nothing written")
        else:
            click.echo(f"{lake}: {summary['customers']:,} customers, {summary['transactions']:,} transactions "
                       f"through {summary['through']} ({summary['seconds']:.1f} s)")


@main.command()
@lake_option
@click.option("--months", type=click.IntRange(min=1), default=None,
              help="Months to add after the lake's last month (default 1). Not safe to retry: a retry after "
                   "success adds them again; a scheduled job uses --until.")
@click.option("--until", "until", default=None, metavar="YYYY-MM",
              help="The last month the lake must hold: nothing to do when it holds it, the rest of an "
                   "interrupted append otherwise. Safe to retry.")
@click.option("--scenario", "scenario", default=None,
              help="Carry the population on under this scenario from the next month (drift).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@scenario_options
@_engine_options
@click.pass_context
@handle_errors
def append(ctx, lake, months, until, scenario, as_json, overrides, env, workers, engine):
    """Append months of the same population to the lake: --months N more, or --until YYYY-MM.

    Ids continue where the lake left off. A rerun of an interrupted append finishes it. --until is
    absolute, so a retried --until writes nothing once the lake holds that month: the form for a
    scheduled job. --months N prints the --until it is heading for.

    \b
    Example:
      churnsim append --lake ./lake --months 1 --scenario scenarios/drift_spend_inflation.yaml
      churnsim append --lake ./lake --until 2025-03
    """
    from sim.execute import runs

    s = load(scenario, overrides, env) if scenario else None
    heading = None if until else f"{lake}: appending through {{plan.until}} (to retry: --until {{plan.until}})"
    summary, plan = _drive(ctx, as_json, workers, engine,
                           lambda runner, bar, on_plan: runs.append(lake, months=months, until=until, scenario=s,
                                                                     runner=runner, progress=bar, on_plan=on_plan),
                           heading=heading)
    if summary and not as_json:
        if plan.action == "complete":
            click.echo(f"{lake}: already holds {plan.until} (through {summary['through']}); nothing written")
        else:
            click.echo(f"{lake}: now through {summary['through']}: {summary['customers']:,} customers, "
                       f"{summary['transactions']:,} transactions ({summary['seconds']:.1f} s)")


@main.command()
@lake_option
@click.option("--retention-hours", type=click.IntRange(min=0), default=168, show_default=True,
              help="Vacuum files unreferenced for longer than this (below 168 h disables the safety check).")
@click.option("--json", "as_json", is_flag=True, help="Print files and bytes per table as JSON.")
@handle_errors
def optimize(lake, retention_hours, as_json):
    """Compact small files (z-order transactions by customer), checkpoint and vacuum.

    \b
    Example:
      churnsim optimize --lake ./lake
    """
    from sim.lake.maintenance import optimize

    result = optimize(lake, retention_hours=retention_hours)
    if as_json:
        echo_json(result)
        return
    for name, r in result.items():
        click.echo(f"{name}: {r['files_before']} files / {r['bytes_before']:,} B -> "
                   f"{r['files_after']} files / {r['bytes_after']:,} B")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--check", "check", default=None, metavar="FILE",
              help="Validate a scenario file (with -s/--env) instead of listing; exit 2 if it is bad.")
@scenario_options
@handle_errors
def scenarios(as_json, check, overrides, env):
    """List the shipped scenarios with one-line descriptions, or --check a file.

    \b
    Example:
      churnsim scenarios
      churnsim scenarios --check my.yaml -s population.size=500
    """
    if check:
        s = load(check, overrides, env)
        if as_json:
            echo_json({"name": s.name, "digest": s.digest(), "scenario": s.to_dict()})
        else:
            click.echo(f"{check}: ok ({s.name}, digest {s.digest()})")
        return
    from sim.scenario.shipped import shipped

    items = shipped()
    if as_json:
        echo_json(items)
        return
    width = max(map(len, items), default=0)
    for name, desc in items.items():
        click.echo(f"{name:<{width}}  {desc}")
