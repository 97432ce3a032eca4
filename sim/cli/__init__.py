"""The ``churnsim`` command line: thin click commands over the library.

Exit codes: 0 ok, 1 checks failed (or the lake refused the operation), 2 bad input.
"""

from __future__ import annotations

import click

from sim import __version__
from sim.cli._common import setup_logging

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="churnsim")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and results; no progress bars.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: int) -> None:
    """Simulate customers, transactions, churn labels and daily metrics into a Delta lake.

    Exit codes: 0 ok, 1 checks failed or the lake refused, 2 bad input.
    """
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    setup_logging(quiet, verbose)


# Each module adds its commands to ``main``.
from sim.cli import commands_analysis, commands_bench, commands_calibrate, commands_quality, commands_run  # noqa: E402, F401, I001
