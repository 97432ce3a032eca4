"""A shard's purchases staged between the two phases of a month, for stateless workers (Spark tasks).

Phase one writes each shard's purchases, in time order, as an Arrow IPC file under
``_churnsim/staging/<month>/``; phase two reads them back, in whichever task gets the shard, once
the coordinator has given each (day, shard) its first transaction id. The coordinator removes a
month's staging once every shard's transactions are written (before the month's commits); what a
killed run leaves there is removed by ``optimize``. Nothing in staging is ever read as data: a
rerun stages the month again under new names.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pyarrow as pa

from sim.lake.state import internal_dir
from sim.model.agents import Purchases

__all__ = ["clear_staging", "read_staged", "stage_purchases", "staging_dir"]


def staging_dir(lake: Path, month_no: int | None = None) -> Path:
    """The lake's staging directory, or month ``month_no``'s (1-based) in it."""
    root = internal_dir(lake) / "staging"
    return root if month_no is None else root / f"{month_no:05d}"


def stage_purchases(lake: Path, month_no: int, shard: int, purchases: Purchases) -> str:
    """Write one shard's purchases (in time order) for phase two; returns the file's path."""
    where = staging_dir(lake, month_no)
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{shard:06d}-{uuid.uuid4().hex}.arrow"
    table = pa.table({f: getattr(purchases, f) for f in Purchases.FIELDS})
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    tmp.rename(path)  # a reader never sees half a file
    return str(path)


def read_staged(path: str) -> Purchases:
    """The purchases :func:`stage_purchases` wrote."""
    with pa.OSFile(path, "rb") as source:  # read into memory: the arrays outlive the file
        table = pa.ipc.open_file(source).read_all()
    return Purchases(*(table.column(f).to_numpy() for f in Purchases.FIELDS))


def clear_staging(lake: Path, month_no: int | None = None) -> None:
    """Remove month ``month_no``'s staging, or all of it (``optimize``: no run is writing)."""
    shutil.rmtree(staging_dir(lake, month_no), ignore_errors=True)
