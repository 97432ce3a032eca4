"""Commands that check a lake: validate (rules, exit 1 on failure) and report (the dashboard)."""

from __future__ import annotations

import click

from sim.cli import main
from sim.cli._common import BadInput, ChecksFailed, F, echo_json, handle_errors, lake_option
from sim.cli.commands_analysis import analysis_errors

_MAX_KEYS = 10


def _version_option(fn: F) -> F:
    return click.option("--version", "version", type=int, default=None, metavar="N",
                        help="Delta version of each table (default: latest).")(fn)


@main.command()
@lake_option
@_version_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def validate(lake: str, version: int | None, as_json: bool) -> None:
    """Check the lake's tables against the data-quality rules; exit 1 if any rule fails.

    Rules: the guide's built-in checks (ages, amounts, dates, referential integrity) plus
    duplicates, orphans, malformed e-mails, amounts over the cap and late arrivals.

    \b
    Example:
      churnsim validate --lake ./lake --json
    """
    from sim.quality import validate_lake

    report = validate_lake(lake, version=version)
    if as_json:
        echo_json(report.to_dict(max_keys=_MAX_KEYS))
    else:
        frame = report.to_frame()
        frame["keys"] = [k[:_MAX_KEYS] for k in frame["keys"]]
        click.echo(frame.drop(columns=["description"]).to_string(index=False))
    if not report.ok:
        failed = ", ".join(f"{r.rule} ({r.count})" for r in report.failed)
        raise ChecksFailed(f"{len(report.failed)} data-quality rules failed: {failed}")


@main.command()
@lake_option
@_version_option
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True,
              help="Output format.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the lake report instead: one self-contained HTML page (figures embedded).")
@click.option("--customers", type=click.IntRange(min=0), default=20, show_default=True, metavar="N",
              help="With --html: how many customer trajectories to draw.")
@handle_errors
@analysis_errors
def report(lake: str, version: int | None, fmt: str, html_path: str | None, customers: int) -> None:
    """The guide's data-quality dashboard per month (customers and transactions).

    With --html FILE: the lake report, one HTML page that opens in any browser with nothing
    fetched: what was simulated, the scenario's ground truth (drifts, interventions,
    experiments), the tables with the dashboard and the corruption manifest, the behaviour
    trajectories and a sample of customer trajectories.

    \b
    Example:
      churnsim report --lake ./lake --format markdown
      churnsim report --lake ./lake --html report.html
    """
    if html_path is not None:
        if version is not None:
            raise BadInput("--html reports the latest version of the lake: drop --version")
        from analysis.report import write_report

        try:
            click.echo(str(write_report(lake, html_path, customers=customers)))
        except OSError as exc:
            raise BadInput(f"--html {html_path}: cannot write it ({exc.strerror or exc})") from None
        return
    from analysis.quality_report import lake_dashboard, to_markdown, to_records

    frame = lake_dashboard(lake, version=version)
    if fmt == "json":
        echo_json(to_records(frame))
    elif fmt == "markdown":
        click.echo(to_markdown(frame))
    else:
        click.echo(frame.to_string())
