"""Fault injection for the crash tests: ``CHURNSIM_DIE_AT=N`` kills the writer at its N-th checkpoint."""

from __future__ import annotations

import logging
import os

__all__ = ["checkpoint", "worker_checkpoint"]

log = logging.getLogger(__name__)

_points = 0


def checkpoint(point: str) -> None:
    """Die here if ``CHURNSIM_DIE_AT`` says so (tests kill the writer at every point)."""
    global _points
    _points += 1
    die_at = os.environ.get("CHURNSIM_DIE_AT")
    if die_at and int(die_at) == _points:
        log.error("CHURNSIM_DIE_AT=%s: dying at %s", die_at, point)
        os._exit(137)


_worker_points = 0


def worker_checkpoint(point: str) -> None:
    """Die here if ``CHURNSIM_WORKER_DIE_AT`` says so: a shard worker's own count (tests kill a
    worker after it wrote its files, before the coordinator commits them)."""
    global _worker_points
    _worker_points += 1
    die_at = os.environ.get("CHURNSIM_WORKER_DIE_AT")
    if die_at and int(die_at) == _worker_points:
        log.error("CHURNSIM_WORKER_DIE_AT=%s: dying at %s", die_at, point)
        os._exit(137)
