"""The ``churnsim`` command line: thin click commands over the library.

Exit codes: 0 ok, 1 checks failed (or the lake refused the operation), 2 bad input.
"""

from __future__ import annotations

import click

from sim import __version__
from sim.cli._common import verbosity_options

__all__ = ["main"]


class _Group(click.Group):
    """Gives every command it adds the shared ``-q``/``-v``, so they work after the subcommand too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(verbosity_options(cmd), name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="churnsim")
@verbosity_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """Simulate customers, transactions, churn labels and daily metrics into a Delta lake.

    Exit codes: 0 ok, 1 checks failed or the lake refused, 2 bad input.
    """
    ctx.ensure_object(dict)


# Each module adds its commands to ``main``.
from sim.cli import commands_analysis, commands_bench, commands_calibrate, commands_quality, commands_run  # noqa: E402, F401, I001
