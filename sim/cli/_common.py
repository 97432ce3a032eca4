"""What every command shares: error handling, exit codes, scenario options, output."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sim.errors import ScenarioError, SimError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_CHECKS_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(click.ClickException):
    """Bad scenario, config or option: exit code 2."""

    exit_code = EXIT_BAD_INPUT


class ChecksFailed(click.ClickException):
    """The command ran, and what it checked failed (or the lake refused): exit code 1."""

    exit_code = EXIT_CHECKS_FAILED


def handle_errors(fn: F) -> F:
    """Turn library errors into one ``Error:`` line and a meaningful exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ScenarioError as exc:
            raise BadInput(str(exc)) from None
        except SimError as exc:
            raise ChecksFailed(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def scenario_options(fn: F) -> F:
    """``-s KEY=VALUE`` overrides and ``--env NAME`` for commands that take a scenario."""
    fn = click.option("-s", "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                      help="Override a scenario value, e.g. -s population.size=5000 -s seed=7.")(fn)
    fn = click.option("--env", "env", default=None, metavar="NAME",
                      help="Environment to pick from an environments file (dev, staging, prod).")(fn)
    return fn


def resolve_scenario(path: str) -> Path:
    """A scenario path, or the name of a shipped scenario (``baseline``, ``dev``, ...)."""
    p = Path(path)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    from sim.scenario.shipped import shipped_path

    return shipped_path(path)


def load(path: str, overrides: tuple[str, ...], env: str | None):
    from sim.scenario import load_scenario

    return load_scenario(resolve_scenario(path), overrides=overrides, env=env)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _lake_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from sim.errors import ScenarioError
    from sim.lake.status import local_path

    try:
        return str(local_path(value))
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def lake_option(fn: F) -> F:
    return click.option("--lake", "lake", default="./lake", show_default=True, type=click.Path(file_okay=False),
                        callback=_lake_path, help="Directory of the Delta lake (a path or a file:// URI).")(fn)


def setup_logging(quiet: bool, verbose: int) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # Set the level apart from basicConfig: a -q or -v after the subcommand comes second.
    root.setLevel(level)


def _verbosity(ctx: click.Context, param: click.Parameter, value: bool | int) -> None:
    obj = ctx.ensure_object(dict)
    if "verbose" not in obj:
        obj.update(quiet=False, verbose=0)
        # Undo at the end: in-process callers (CliRunner, scripts) run many commands in one interpreter.
        root = logging.getLogger()
        ctx.find_root().call_on_close(functools.partial(root.setLevel, root.level))
    if param.name == "quiet":
        obj["quiet"] = obj["quiet"] or bool(value)
    else:
        obj["verbose"] += int(value)
    setup_logging(obj["quiet"], obj["verbose"])


def verbosity_options(fn: F) -> F:
    """``-q`` and ``-v``: on the group and on every subcommand, so they go before or after it.

    Given in both places they add up (``-v run ... -v`` is ``-vv``); the result is in
    ``ctx.obj["quiet"]`` and ``ctx.obj["verbose"]``.
    """
    if isinstance(fn, click.Command) and any(p.name == "quiet" for p in fn.params):
        return fn
    fn = click.option("-v", "--verbose", count=True, expose_value=False, callback=_verbosity,
                      help="More logging (-vv for debug).")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_verbosity,
                      help="Print only errors and results; no progress bars.")(fn)
    return fn
