"""Reading the lake's tables back: pyarrow over the Delta log's files.

``DeltaTable.to_pyarrow_table()`` makes the interpreter abort at exit in a share of runs here
(delta-rs #2184); a pyarrow dataset over ``DeltaTable.file_uris()`` reads the same rows and exits
cleanly.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from sim.lake.state import META_KEY

__all__ = ["data_files", "month_files", "read_delta", "read_table"]


def data_files(table: DeltaTable) -> list[str]:
    """``table``'s data files as pyarrow opens them: deltalake percent-encodes local paths (a
    lake under ``My Drive`` lists ``My%20Drive``), which pyarrow would not find."""
    return [u if "://" in u else unquote(u) for u in table.file_uris()]


def read_delta(table: DeltaTable, *, columns: list[str] | None = None) -> pa.Table:
    """All rows of ``table`` (at the version it was loaded at)."""
    schema = table.schema().to_arrow()
    schema = schema if isinstance(schema, pa.Schema) else pa.schema(schema)
    files = data_files(table)
    if not files:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return ds.dataset(files, format="parquet", schema=schema).to_table(columns=columns)


def read_table(lake: str | Path, name: str, *, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
    """The lake's table ``name``, optionally as of a Delta ``version``."""
    return read_delta(DeltaTable(str(Path(lake) / name), version=version), columns=columns)


def month_files(lake: str | Path, name: str, month: str) -> list[str]:
    """The data files table ``name``'s commit of ``month`` (``YYYY-MM``) added, in commit order.

    What the month's writers put in storage: readers (Spark on Databricks) take the month's rows
    from these files, not from any process's memory. Empty when the table holds no such commit.
    """
    path = str(Path(lake) / name)
    dt_ = DeltaTable(path)
    version = next((h["version"] for h in dt_.history()
                    if META_KEY in h and json.loads(h[META_KEY]).get("month") == month), None)
    if version is None:
        return []
    before = set(data_files(DeltaTable(path, version=version - 1))) if version > 0 else set()
    return [f for f in data_files(DeltaTable(path, version=version)) if f not in before]
