"""Reading a real transaction log and reducing it to purchase occasions (one per customer and day)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sim.errors import ScenarioError

__all__ = ["CANONICAL", "occasions", "read_log"]

CANONICAL = ("customer_id", "date", "amount")


def read_log(path: str | Path, *, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a transaction log from CSV, Parquet or a Delta table directory.

    Args:
        path: a ``.csv`` (or ``.txt``/``.tsv``, delimiter sniffed), ``.parquet`` file, or a Delta directory.
        columns: maps ``customer_id``/``date``/``amount`` to the file's column names (checked later).

    Returns:
        The raw frame, with ``attrs["source"]`` naming the file for later error messages.
    """
    p = Path(path)
    src = str(p)
    try:
        if p.is_dir():
            if not (p / "_delta_log").is_dir():
                raise ScenarioError(f"{src}: expected a Delta table directory (no _delta_log) or a CSV/Parquet file")
            import pyarrow.dataset as ds
            from deltalake import DeltaTable

            from sim.lake.read import data_files

            # file_uris + pyarrow: DeltaTable.to_pyarrow_table() aborts the interpreter at exit.
            df = ds.dataset(data_files(DeltaTable(src)), format="parquet").to_table().to_pandas()
        elif p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif p.suffix.lower() in (".csv", ".txt", ".tsv", ".dat"):
            df = _read_text(p)
        else:
            raise ScenarioError(f"{src}: expected a .csv, .parquet file or a Delta table directory")
    except FileNotFoundError:
        raise ScenarioError(f"{src}: no such file or directory") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{src}: cannot read transaction log ({str(exc).splitlines()[0]})") from None
    df.attrs["source"] = src
    return df


def _read_text(p: Path) -> pd.DataFrame:
    """A delimited text log: the delimiter sniffed, else runs of whitespace (CDNOW's format). A file
    whose first row is all numbers has no header: its columns are named by position, from 1."""
    sep: str | None = None
    try:
        df = pd.read_csv(p, sep=sep, engine="python")
    except pd.errors.ParserError:
        df = None
    if df is None or any(str(c).startswith("Unnamed: ") for c in df.columns):  # a space sniffed in runs of spaces
        sep = r"\s+"
        df = pd.read_csv(p, sep=sep, engine="python")
    if all(_is_number(c) for c in df.columns):
        df = pd.read_csv(p, sep=sep, engine="python", header=None)
        df.columns = [str(i + 1) for i in range(df.shape[1])]
    return df


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _parse_dates(col: pd.Series, src: str, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        d = col
    elif pd.api.types.is_integer_dtype(col):
        d = pd.to_datetime(col.astype(str), format="%Y%m%d", errors="coerce")
    else:
        d = pd.to_datetime(col, errors="coerce", format="mixed")
    bad = d.isna().to_numpy()
    if bad.any():
        value = col.iloc[int(np.argmax(bad))]
        raise ScenarioError(f"{src}: column {name!r}: expected dates (YYYY-MM-DD or YYYYMMDD) (got {value!r})")
    if getattr(d.dt, "tz", None) is not None:
        d = d.dt.tz_convert("UTC").dt.tz_localize(None)
    return d.to_numpy().astype("datetime64[D]").astype(np.int64)


def occasions(df: pd.DataFrame, *, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Check a transaction log and reduce it to purchase occasions.

    Args:
        df: the log; ``df.attrs["source"]`` (set by :func:`read_log`) names it in errors.
        columns: maps ``customer_id``/``date``/``amount`` to ``df``'s column names.

    Returns:
        One row per customer and day: ``customer_id``, ``day`` (days since 1970-01-01), ``amount`` (summed).

    Raises:
        ScenarioError: missing columns, no rows, unparseable dates, negative or non-numeric amounts,
            fewer than two customers.
    """
    src = str(df.attrs.get("source", "log")) if isinstance(df, pd.DataFrame) else "log"
    if not isinstance(df, pd.DataFrame):
        raise ScenarioError(f"{src}: expected a pandas DataFrame (got {type(df).__name__})")
    names = {k: k for k in CANONICAL}
    for key, value in (columns or {}).items():
        if key not in names:
            raise ScenarioError(f"{src}: columns: expected keys among {', '.join(CANONICAL)} (got {key!r})")
        names[key] = value
    missing = [f"{v!r}" + (f" ({k})" if k != v else "") for k, v in names.items() if v not in df.columns]
    if missing:
        raise ScenarioError(f"{src}: missing column {', '.join(missing)}; expected columns for customer id, "
                            f"date and amount (got {list(map(str, df.columns))})")
    if len(df) == 0:
        raise ScenarioError(f"{src}: expected transactions (the log is empty)")
    cid = df[names["customer_id"]]
    if cid.isna().any():
        raise ScenarioError(f"{src}: column {names['customer_id']!r}: expected a customer id on every row (got a missing value)")
    day = _parse_dates(df[names["date"]], src, names["date"])
    amount = pd.to_numeric(df[names["amount"]], errors="coerce")
    bad = amount.isna().to_numpy()
    if bad.any():
        value = df[names["amount"]].iloc[int(np.argmax(bad))]
        raise ScenarioError(f"{src}: column {names['amount']!r}: expected a number (got {value!r})")
    if (amount < 0).any():
        value = float(amount[amount < 0].iloc[0])
        raise ScenarioError(f"{src}: column {names['amount']!r}: expected non-negative amounts (got {value})")
    out = pd.DataFrame({"customer_id": cid.to_numpy(), "day": day, "amount": amount.to_numpy(float)})
    out = out.groupby(["customer_id", "day"], as_index=False, sort=True)["amount"].sum()
    n = out["customer_id"].nunique()
    if n < 2:
        raise ScenarioError(f"{src}: expected transactions of at least 2 customers (got {n})")
    return out
