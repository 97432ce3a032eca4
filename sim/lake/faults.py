"""Fault injection for the crash tests: ``CHURNSIM_DIE_AT=N`` kills the writer at its N-th checkpoint,
``CHURNSIM_WORKER_DIE_AT=N`` a shard worker at its own N-th."""

from __future__ import annotations

import logging
import os
from collections import Counter

__all__ = ["checkpoint", "worker_checkpoint"]

log = logging.getLogger(__name__)

_passed: Counter[str] = Counter()  # checkpoints passed in this process, per variable


def _die_at(variable: str, point: str) -> None:
    _passed[variable] += 1
    die_at = os.environ.get(variable)
    if die_at and int(die_at) == _passed[variable]:
        log.error("%s=%s: dying at %s", variable, die_at, point)
        os._exit(137)


def checkpoint(point: str) -> None:
    """Die here if ``CHURNSIM_DIE_AT`` says so (tests kill the writer at every point)."""
    _die_at("CHURNSIM_DIE_AT", point)


def worker_checkpoint(point: str) -> None:
    """Die here if ``CHURNSIM_WORKER_DIE_AT`` says so (tests kill a worker after it wrote its files,
    before the coordinator commits them)."""
    _die_at("CHURNSIM_WORKER_DIE_AT", point)
