"""Data files written anywhere (a worker, a Spark executor), committed by the coordinator.

A writer turns a table part into one Parquet file inside the table's directory and returns a
:class:`DataFile`: the small, picklable metadata of a Delta ``add`` action (path relative to the
table, size, modification time, row count, column statistics, partition values). The coordinator
commits every file of a table's month in one Delta commit (:func:`commit_files`), so the rows
travel from the writer to storage, never through the coordinator. A file no commit references
(its writer or the coordinator was killed before the commit) is invisible to every reader and is
removed by ``optimize``'s vacuum.

Tables are addressed by a local path or a URI (``file://``, ``s3://``, ``abfss://``...);
``storage_options`` go to deltalake unchanged, and writers reach object stores through
deltalake's own storage handler, so one set of credentials serves both.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.transaction import AddAction, create_table_with_add_actions

__all__ = ["DataFile", "commit_files", "file_stats", "footer_stats", "part_name", "table_fs", "write_part"]


@dataclass(frozen=True)
class DataFile:
    """A Parquet file written into a table's directory, not yet committed."""

    path: str  # relative to the table (Delta add actions name files so)
    size: int
    modification_time: int  # milliseconds since the epoch
    num_records: int
    stats: str  # the Delta stats JSON: numRecords, minValues, maxValues, nullCount
    partition_values: dict[str, str | None] = field(default_factory=dict)

    def action(self) -> AddAction:
        return AddAction(self.path, self.size, self.partition_values, self.modification_time, True, self.stats)


def _is_uri(where: str) -> bool:
    return "://" in where


def table_fs(table: str | Path, storage_options: Mapping[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the table's root in it (local paths and ``file://`` natively)."""
    where = str(table)
    if not _is_uri(where):
        return pafs.LocalFileSystem(), os.path.abspath(where)
    if where.startswith("file://") and not storage_options:
        return pafs.LocalFileSystem(), where.removeprefix("file://")
    from deltalake.fs import DeltaStorageHandler

    # Paths in a DeltaStorageHandler are relative to the URI it was opened on.
    return pafs.PyFileSystem(DeltaStorageHandler(where, dict(storage_options or {}))), ""


def part_name(*, month: int, shard: int | None, kind: str) -> str:
    """A new file's name: which month and shard wrote it (for people), and a uuid (never reused).

    A retried month writes new names, so a file a commit may already reference is never rewritten;
    ``shard`` None: a part of every shard (built by the coordinator).
    """
    who = "all" if shard is None else f"{shard:06d}"
    return f"part-{month:05d}-{who}-{kind}-{uuid.uuid4().hex}.snappy.parquet"


def _stat_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.timezone.utc) if value.tzinfo else value
        # Microseconds kept: a maximum truncated to milliseconds could skip a row a filter wants.
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _stats_json(num_rows: int, mins: dict[str, Any], maxs: dict[str, Any], nulls: dict[str, int]) -> str:
    return json.dumps({"numRecords": num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
                      separators=(",", ":"))


def file_stats(table: pa.Table) -> str:
    """The Delta ``stats`` of ``table``'s rows; nested columns have none (as delta-rs writes them)."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_nested(col.type):
            continue
        nulls[name] = col.null_count
        if len(col) == col.null_count or pa.types.is_binary(col.type):
            continue
        mm = pc.min_max(col)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        if lo is None or (isinstance(lo, float) and lo != lo):  # all NaN: no bound
            continue
        mins[name], maxs[name] = _stat_value(lo), _stat_value(hi)
    return _stats_json(table.num_rows, mins, maxs, nulls)


def footer_stats(schema: pa.Schema, meta: pq.FileMetaData) -> str:
    """:func:`file_stats` from the statistics the Parquet writer already put in the footer.

    No second pass over the rows (on the coordinator's hot path); a column some row group has no
    bounds for gets none, so a reader never skips a file that holds a row it wants.
    """
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls = {f.name: 0 for f in schema if not pa.types.is_nested(f.type)}
    flat = set(nulls)
    bounded = {f.name for f in schema if f.name in flat and not pa.types.is_binary(f.type)}
    floats = {f.name for f in schema if pa.types.is_floating(f.type)}
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for i in range(rg.num_columns):
            col = rg.column(i)
            name = col.path_in_schema
            if name not in flat:
                continue
            st = col.statistics
            nulls[name] += st.null_count if st is not None and st.has_null_count else 0
            if name not in bounded:
                continue
            if st is None or not st.has_min_max:
                # Floats: the writer leaves NaN out of the bounds (as file_stats does); any other
                # column with values but no bounds gets none for the file.
                if st is None or (st.null_count != col.num_values and name not in floats):
                    bounded.discard(name)
                    mins.pop(name, None)
                    maxs.pop(name, None)
                continue
            lo, hi = st.min, st.max
            mins[name] = lo if name not in mins else min(mins[name], lo)
            maxs[name] = hi if name not in maxs else max(maxs[name], hi)
    return _stats_json(meta.num_rows, {k: _stat_value(v) for k, v in mins.items()},
                       {k: _stat_value(v) for k, v in maxs.items()}, nulls)


def write_part(table: str | Path, rows: pa.Table, *, name: str,
               partition_values: Mapping[str, str | None] | None = None,
               storage_options: Mapping[str, str] | None = None) -> DataFile:
    """Write ``rows`` as one Parquet file ``name`` under ``table`` (under its partition directory)."""
    fs, root = table_fs(table, storage_options)
    parts = dict(partition_values or {})
    rel = "/".join([*(f"{k}={v}" for k, v in parts.items()), name])
    # Partition columns live in the path, not the file (the Delta layout).
    # No pandas or other schema metadata in the files: the rows are the data (as delta-rs writes).
    body = rows.drop_columns([k for k in parts if k in rows.column_names]).replace_schema_metadata(None)
    full = f"{root}/{rel}" if root else rel
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(full), exist_ok=True)
    footer: list[pq.FileMetaData] = []
    # Dictionary pages for strings only: numbers dictionary-encode poorly here and cost ~25 % of the write.
    strings = [f.name for f in body.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(body, full, filesystem=fs, compression="snappy", metadata_collector=footer, use_dictionary=strings)
    info = fs.get_file_info(full)
    mtime = int(info.mtime.timestamp() * 1000) if info.mtime is not None else int(time.time() * 1000)
    return DataFile(rel, int(info.size), mtime, rows.num_rows, footer_stats(body.schema, footer[0]), parts)


def _is_table(table: str, storage_options: Mapping[str, str] | None) -> bool:
    return DeltaTable.is_deltatable(table, storage_options=dict(storage_options or {}) or None)


def commit_files(table: str | Path, files: Sequence[DataFile], *, schema: pa.Schema,
                 mode: Literal["append", "overwrite"], commit_properties: CommitProperties,
                 partition_by: list[str] | None = None,
                 storage_options: Mapping[str, str] | None = None,
                 current: DeltaTable | None | Literal["look"] = "look") -> None:
    """One Delta commit adding ``files`` to ``table`` (created by this commit when missing).

    ``overwrite`` removes every file the table held before (one commit: readers see the old
    version or the new one). ``current``: the table as the caller just loaded it (None: there is
    none yet), so it is not loaded twice; by default it is looked up here.
    """
    where = str(table)
    actions = [f.action() for f in files]
    options = dict(storage_options or {}) or None
    if isinstance(current, str):  # "look"
        current = DeltaTable(where, storage_options=options) if mode == "append" and _is_table(where, storage_options) else None
    if mode == "append" and current is not None:
        current.create_write_transaction(
            actions, "append", Schema.from_arrow(schema), partition_by=partition_by, commit_properties=commit_properties)
        return
    # A new table, or a whole table replaced (its schema may change, e.g. another scenario's state).
    create_table_with_add_actions(where, Schema.from_arrow(schema), actions, mode="overwrite" if mode == "overwrite" else "error",
                                  partition_by=partition_by, storage_options=options,
                                  commit_properties=commit_properties)
