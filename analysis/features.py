"""Point-in-time customer features (the guide's ``customer_features``).

For an as-of date ``D`` a customer appears when it signed up before ``D``
(``customer_since_date < D``), and only its transactions dated strictly before ``D`` count, so
changing any transaction on or after ``D`` changes no feature (no label leakage). Given the
lake's ``customer_history``, ``segment`` and ``tier`` are those in force before ``D`` 00:00 UTC
(``valid_from < D``): the same rule, what happened strictly before the as-of instant
(:mod:`analysis.history`); without it, ``segment`` is the one at signup and ``tier`` null.

Transactions are sorted by day once; every as-of date then reads contiguous slices (a window
``[D - w, D)`` is one ``searchsorted``) and aggregates them with ``np.bincount``. Lifetime
aggregates (last/first purchase, count, spend) are carried forward incrementally across the
as-of dates in ascending order, so the cost is one pass over the transactions plus
``O(customers)`` per snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from analysis.lake import read_table, table_path

__all__ = [
    "FEATURE_COLUMNS",
    "FEATURES_SCHEMA",
    "FEATURES_TABLE",
    "compute_features",
    "features_to_arrow",
    "load_inputs",
    "month_ends",
    "write_features",
]

log = logging.getLogger(__name__)

FEATURES_TABLE = "customer_features"
WINDOWS = (30, 90, 365)
_EPOCH = dt.date(1970, 1, 1)

FEATURES_SCHEMA = pa.schema([
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("as_of_date", pa.date32(), nullable=False),
    pa.field("segment", pa.string()),
    pa.field("tier", pa.string()),
    pa.field("recency_days", pa.int32()),
    pa.field("tenure_days", pa.int32()),
    pa.field("frequency_30d", pa.int32()),
    pa.field("frequency_90d", pa.int32()),
    pa.field("frequency_365d", pa.int32()),
    pa.field("frequency_lifetime", pa.int32()),
    pa.field("total_spend_30d", pa.float64()),
    pa.field("total_spend_90d", pa.float64()),
    pa.field("total_spend_365d", pa.float64()),
    pa.field("total_spend_lifetime", pa.float64()),
    pa.field("avg_amount", pa.float64()),
    pa.field("avg_amount_90d", pa.float64()),
    pa.field("avg_gap_days", pa.float64()),
    pa.field("trend", pa.float64()),
])

#: Numeric feature columns (everything but the keys, ``segment`` and ``tier``).
FEATURE_COLUMNS: tuple[str, ...] = tuple(f.name for f in FEATURES_SCHEMA)[4:]


def _day(d: dt.date | np.datetime64 | str | pd.Timestamp) -> int:
    return int((pd.Timestamp(d).normalize() - pd.Timestamp(_EPOCH)).days)


def _days(values: pd.Series | np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Dates (date32, datetime64 or date objects) as int64 epoch days."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return np.asarray(values.cast(pa.int32()).to_numpy(zero_copy_only=False), np.int64)
    arr = np.asarray(pd.to_datetime(pd.Series(values)).to_numpy("datetime64[D]"))
    return arr.astype(np.int64)


def month_ends(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every month end ``m`` with ``start <= m <= end``."""
    out = []
    for p in pd.period_range(pd.Timestamp(start), pd.Timestamp(end), freq="M"):
        m = p.end_time.date()
        if start <= m <= end:
            out.append(m)
    return out


def compute_features(
    customers: pd.DataFrame,
    transactions: pd.DataFrame,
    as_of: dt.date | Sequence[dt.date],
    *,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Point-in-time features for one or several as-of dates.

    Args:
        customers: ``customer_id``, ``segment``, ``customer_since_date`` (one row per customer;
            duplicates keep the first).
        transactions: ``customer_id``, ``transaction_date``, ``amount``. Transactions of unknown
            customers are ignored; a null amount counts as a purchase of 0.
        as_of: one date or several. Only transactions dated strictly before it count.
        history: ``customer_history`` rows (``customer_id``, ``valid_from``, ``segment``, ``tier``);
            when given, segment and tier are those in force before the as-of date's midnight (UTC).

    Returns:
        One row per (customer signed up before the as-of date, as-of date), columns as
        :data:`FEATURES_SCHEMA`. ``recency_days`` counts from the last purchase, or from signup
        for a customer without one; ``avg_amount``, ``avg_amount_90d`` and ``avg_gap_days`` are
        NaN where undefined; ``trend`` is ``(f30 - f60p/2) / (f30 + f60p/2)`` with ``f60p`` the
        purchases in the 60 days before the last 30 (so -1 .. 1, 0 without purchases).
    """
    dates = [as_of] if isinstance(as_of, dt.date) else list(as_of)
    cust = customers.drop_duplicates("customer_id")
    cid = np.asarray(cust["customer_id"], np.int64)
    order = np.argsort(cid, kind="stable")
    cid = cid[order]
    since = _days(cust["customer_since_date"])[order]
    segment = np.asarray(cust["segment"].astype(object), object)[order]
    tier = np.full(len(cid), None, object)
    h_idx = h_day = h_seg = h_tier = np.empty(0)
    if history is not None:
        h = history.sort_values("valid_from", kind="stable")
        h_cid = np.asarray(h["customer_id"], np.int64)
        h_pos = np.searchsorted(cid, h_cid)
        ok = (h_pos < len(cid)) & (cid[np.minimum(h_pos, len(cid) - 1)] == h_cid)
        # Microseconds since the epoch: a row counts for as-of day d when valid_from < d 00:00.
        epoch = pd.Timestamp("1970-01-01", tz="UTC")
        h_us = np.asarray((pd.to_datetime(h["valid_from"], utc=True) - epoch) // pd.Timedelta(microseconds=1), np.int64)
        h_idx, h_day = h_pos[ok], h_us[ok]
        h_seg = np.asarray(h["segment"].astype(object), object)[ok]
        h_tier = np.asarray(h["tier"].astype(object), object)[ok]
    h_done = 0

    t_cid = np.asarray(transactions["customer_id"], np.int64)
    t_day = _days(transactions["transaction_date"])
    t_amt = np.nan_to_num(np.asarray(transactions["amount"], np.float64))
    pos = np.searchsorted(cid, t_cid)
    known = (pos < len(cid)) & (cid[np.minimum(pos, len(cid) - 1)] == t_cid)
    if not known.all():
        log.warning("ignoring %d transactions of unknown customers", int((~known).sum()))
    t_idx, t_day, t_amt = pos[known], t_day[known], t_amt[known]
    o = np.argsort(t_day, kind="stable")
    t_idx, t_day, t_amt = t_idx[o], t_day[o], t_amt[o]

    n = len(cid)
    last = np.full(n, np.iinfo(np.int64).min)
    first = np.full(n, np.iinfo(np.int64).max)
    count = np.zeros(n, np.int64)
    spend = np.zeros(n)
    done = 0
    frames = []
    for d_date in sorted(set(dates)):
        d = _day(d_date)
        hi = int(np.searchsorted(t_day, d, side="left"))
        if hi > done:
            sl = slice(done, hi)
            np.maximum.at(last, t_idx[sl], t_day[sl])
            np.minimum.at(first, t_idx[sl], t_day[sl])
            count += np.bincount(t_idx[sl], minlength=n)
            spend += np.bincount(t_idx[sl], weights=t_amt[sl], minlength=n)
            done = hi

        def window(lo_day: int, hi_day: int) -> tuple[np.ndarray, np.ndarray]:
            lo_i, hi_i = np.searchsorted(t_day, [lo_day, hi_day], side="left")
            idx = t_idx[lo_i:hi_i]
            return (np.bincount(idx, minlength=n),
                    np.bincount(idx, weights=t_amt[lo_i:hi_i], minlength=n))

        h_hi = int(np.searchsorted(h_day, d * 86_400_000_000, side="left"))
        if h_hi > h_done:  # each customer's last row before d (rows in time order) wins
            _, back = np.unique(h_idx[h_done:h_hi][::-1], return_index=True)
            latest = h_hi - 1 - back
            segment[h_idx[latest]] = h_seg[latest]
            tier[h_idx[latest]] = h_tier[latest]
            h_done = h_hi

        win = {w: window(d - w, d) for w in WINDOWS}
        prior60, _ = window(d - 90, d - 30)
        rows = np.flatnonzero(since < d)
        has = count[rows] > 0
        f30 = win[30][0][rows].astype(np.float64)
        half = prior60[rows] / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            trend = np.where(f30 + half > 0, (f30 - half) / (f30 + half), 0.0)
            avg = np.where(has, spend[rows] / count[rows], np.nan)
            avg90 = np.where(win[90][0][rows] > 0, win[90][1][rows] / win[90][0][rows], np.nan)
            gap = np.where(count[rows] > 1, (last[rows] - first[rows]) / (count[rows] - 1), np.nan)
        frame = {
            "customer_id": cid[rows],
            "as_of_date": np.full(len(rows), d),
            "segment": segment[rows],
            "tier": tier[rows],
            "recency_days": d - np.where(has, last[rows], since[rows]),
            "tenure_days": d - since[rows],
        }
        for w in WINDOWS:
            frame[f"frequency_{w}d"] = win[w][0][rows]
        frame["frequency_lifetime"] = count[rows]
        for w in WINDOWS:
            frame[f"total_spend_{w}d"] = np.round(win[w][1][rows], 2)
        frame["total_spend_lifetime"] = np.round(spend[rows], 2)
        frame.update(avg_amount=avg, avg_amount_90d=avg90, avg_gap_days=gap, trend=trend)
        frames.append(pd.DataFrame(frame))
    if not frames:
        return _to_frame(FEATURES_SCHEMA.empty_table())
    out = pd.concat(frames, ignore_index=True)
    out["as_of_date"] = (out["as_of_date"].to_numpy().astype("datetime64[D]"))
    for f in FEATURES_SCHEMA:
        if pa.types.is_int32(f.type):
            out[f.name] = out[f.name].astype(np.int32)
    return out


def _to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(date_as_object=False)


def features_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A features frame as Arrow with :data:`FEATURES_SCHEMA` (date32 dates, plain strings)."""
    cols = {}
    for f in FEATURES_SCHEMA:
        v = frame[f.name]
        if f.name == "as_of_date":
            cols[f.name] = pa.array(np.asarray(v, "datetime64[D]").astype(np.int32), pa.int32()).cast(pa.date32())
        elif f.name in ("segment", "tier"):
            cols[f.name] = pa.array(v.astype(object).tolist(), pa.string())
        else:
            cols[f.name] = pa.array(np.asarray(v), f.type, from_pandas=True)
    return pa.table(cols, schema=FEATURES_SCHEMA)


def load_inputs(lake: str | Path, *, version: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(customers, transactions)`` frames with just the columns features need."""
    customers = _to_frame(read_table(lake, "raw_customers", version=version,
                                     columns=["customer_id", "segment", "customer_since_date"]))
    transactions = _to_frame(read_table(lake, "raw_transactions", version=version,
                                        columns=["customer_id", "transaction_date", "amount"]))
    return customers, transactions


def write_features(
    lake: str | Path,
    as_of_dates: Iterable[dt.date],
    *,
    version: int | None = None,
) -> pd.DataFrame:
    """Compute features at each as-of date and write them to ``LAKE/customer_features``.

    Each as-of date is one Delta commit that replaces that date's snapshot (a
    predicate overwrite), so re-running a date leaves no duplicate rows.

    Args:
        lake: the lake directory.
        as_of_dates: snapshot dates (e.g. :func:`month_ends` for ``--every month``).
        version: read the raw tables as of this Delta version (the same for both tables).

    Returns:
        The features written, as one frame.
    """
    from analysis.history import load_history

    dates = sorted(set(as_of_dates))
    customers, transactions = load_inputs(lake, version=version)
    frame = compute_features(customers, transactions, dates, history=load_history(lake, version=version))
    path = table_path(lake, FEATURES_TABLE)
    exists = (Path(path) / "_delta_log").is_dir()
    for d in dates:
        part = features_to_arrow(frame[frame["as_of_date"] == pd.Timestamp(d)])
        if exists:
            write_deltalake(path, part, mode="overwrite", predicate=f"as_of_date = '{d.isoformat()}'")
        else:
            write_deltalake(path, part, mode="append")
            exists = True
        log.info("customer_features as of %s: %d rows", d, part.num_rows)
    if exists:
        log.info("customer_features at version %d", DeltaTable(path).version())
    return frame
