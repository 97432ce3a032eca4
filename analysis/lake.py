"""Reading lake tables (any Delta version) without the engine.

Reads go through ``DeltaTable.file_uris()`` and pyarrow rather than ``to_pyarrow_table()``:
the latter makes the interpreter abort at exit in a share of runs (delta-rs #2184).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

__all__ = ["data_files", "last_label_date", "read_table", "table_path", "window_start"]


def table_path(lake: str | Path, name: str) -> str:
    return str(Path(lake) / name)


def data_files(table: DeltaTable) -> list[str]:
    """``table``'s data files as pyarrow opens them (deltalake percent-encodes local paths)."""
    return [u if "://" in u else unquote(u) for u in table.file_uris()]


def read_table(
    lake: str | Path,
    name: str,
    *,
    version: int | None = None,
    columns: list[str] | None = None,
    filter: ds.Expression | None = None,
) -> pa.Table:
    """One lake table as Arrow, optionally as of a Delta ``version``."""
    dt = DeltaTable(table_path(lake, name), version=version)
    schema = dt.schema().to_arrow()
    schema = pa.schema(schema) if not isinstance(schema, pa.Schema) else schema
    files = data_files(dt)
    if not files:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    dataset = ds.dataset(files, format="parquet", schema=schema)
    return dataset.to_table(columns=columns, filter=filter)



def last_label_date(lake: str | Path, *, version: int | None = None) -> dt.date:
    """The lake's last month end: its latest ``customer_labels.label_date``.

    The run labels at every month end and at the last day of a partial last month, so this is
    where the lake's data ends, read from the lake alone.

    Raises:
        ValueError: the labels table holds no rows.
    """
    dates = read_table(lake, "customer_labels", version=version, columns=["label_date"]).column("label_date")
    last = pc.max(dates).as_py()
    if last is None:
        raise ValueError(f"{table_path(lake, 'customer_labels')}: no label dates yet; pass --as-of DATE")
    return last


def window_start(lake: str | Path, *, version: int | None = None) -> dt.date | None:
    """The first simulated day: the first ``metric_date`` (None for a lake without metrics).

    raw_transactions also holds history dated before it (each initial customer's last purchase
    before the window), so its first ``transaction_date`` is not the window's start.
    """
    path = table_path(lake, "daily_metrics")
    if not DeltaTable.is_deltatable(path):
        return None
    dates = read_table(lake, "daily_metrics", version=version, columns=["metric_date"]).column("metric_date")
    return dates.to_pandas().min() if len(dates) else None
