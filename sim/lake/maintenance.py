"""Lake maintenance: compact small files (z-order transactions by customer), checkpoint, vacuum."""

from __future__ import annotations

import os
from pathlib import Path

from deltalake import DeltaTable

from sim.batch.tables import TABLES
from sim.lake.lock import lake_lock
from sim.lake.read import data_files
from sim.lake.staging import clear_staging
from sim.lake.state import internal_dir
from sim.lake.status import lake_dir


def _files(path: Path) -> tuple[int, int]:
    dt_ = DeltaTable(str(path))
    files = data_files(dt_)
    return len(files), sum(os.path.getsize(f.removeprefix("file://")) for f in files)


def _vacuum(dt_: DeltaTable, retention_hours: int) -> None:
    # full: also the files no commit ever referenced (a worker's or coordinator's killed month).
    dt_.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=retention_hours >= 168,
               full=True)


def optimize(lake: str | Path = "./lake", *, retention_hours: int = 168) -> dict[str, dict[str, int]]:
    """Compact small files (z-order transactions by customer), checkpoint, vacuum old and orphaned files.

    Returns files and bytes per table before and after.
    """
    lake = lake_dir(lake)
    out: dict[str, dict[str, int]] = {}
    with lake_lock(lake, command="optimize"):
        for name in TABLES:
            path = lake / name
            if not DeltaTable.is_deltatable(str(path)):
                continue
            files0, bytes0 = _files(path)
            dt_ = DeltaTable(str(path))
            # Maintenance commits keep the month's app transaction, so exactly-once checks still hold.
            if name == "raw_transactions":
                dt_.optimize.z_order(["customer_id"])
            else:
                dt_.optimize.compact()
            dt_ = DeltaTable(str(path))
            dt_.create_checkpoint()
            _vacuum(dt_, retention_hours)
            files1, bytes1 = _files(path)
            out[name] = {"files_before": files0, "bytes_before": bytes0, "files_after": files1, "bytes_after": bytes1}
        state = internal_dir(lake) / "state"
        if DeltaTable.is_deltatable(str(state)):
            # Not compacted: the state commit names each shard's own file.
            _vacuum(DeltaTable(str(state)), retention_hours)
        clear_staging(lake)  # a killed month's staged purchases (no run is writing: we hold the lock)
    return out
