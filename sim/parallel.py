"""How shards are executed: in this process, in worker processes, or as Spark tasks."""

from __future__ import annotations

from typing import Literal

from sim.engine import ShardRunner, local_runner

__all__ = ["make_runner"]


def make_runner(*, workers: int | None = None, engine: Literal["local", "spark"] = "local") -> ShardRunner:
    """A shard runner for ``engine`` with ``workers`` processes (default: one)."""
    return local_runner
