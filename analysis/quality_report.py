"""The guide's data-quality dashboard queries, per month, from the lake tables.

Months: transactions by ``transaction_date`` month; customers by the month of the batch that
wrote them, which is the ``customer_since_date`` month clipped to the run's first day (customers
who signed up before the window arrive with the first batch). The run's first day is the first
``metric_date`` of ``daily_metrics`` (else the first transaction). A ``total`` row repeats the
guide's whole-table queries.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.lake import read_table
from sim.contracts import AGE_MAX, AGE_MIN, AMOUNT_CAP

__all__ = ["COLUMNS", "dashboard", "lake_dashboard", "to_json", "to_markdown", "to_records"]

SUSPICIOUS_AMOUNT = 10000.0

CUSTOMER_COLUMNS = ["total_customers", "null_ages", "invalid_ages", "avg_age", "earliest_customer", "latest_customer"]
TRANSACTION_COLUMNS = ["total_transactions", "negative_amounts", "suspicious_high", "over_cap", "avg_amount",
                       "total_revenue", "first_txn", "last_txn"]
COLUMNS = CUSTOMER_COLUMNS + TRANSACTION_COLUMNS


def _frame(data: pd.DataFrame | pa.Table) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else data.to_pandas(date_as_object=False)


def _customer_stats(df: pd.DataFrame) -> pd.Series:
    age = pd.to_numeric(df["age"])
    return pd.Series({
        "total_customers": len(df),
        "null_ages": int(age.isna().sum()),
        "invalid_ages": int(((age < AGE_MIN) | (age > AGE_MAX)).sum()),
        "avg_age": age.mean(),
        "earliest_customer": df["customer_since_date"].min(),
        "latest_customer": df["customer_since_date"].max(),
    })


def _transaction_stats(df: pd.DataFrame) -> pd.Series:
    amount = pd.to_numeric(df["amount"])
    return pd.Series({
        "total_transactions": len(df),
        "negative_amounts": int((amount < 0).sum()),
        "suspicious_high": int((amount > SUSPICIOUS_AMOUNT).sum()),
        "over_cap": int((amount > AMOUNT_CAP).sum()),
        "avg_amount": amount.mean(),
        "total_revenue": amount.sum(),
        "first_txn": df["transaction_date"].min(),
        "last_txn": df["transaction_date"].max(),
    })


def _per_month(df: pd.DataFrame, month: pd.Series, stats: Any) -> pd.DataFrame:
    rows = {m: stats(part) for m, part in df.groupby(month.to_numpy(), sort=True)}
    rows["total"] = stats(df)
    return pd.DataFrame(rows).T


def dashboard(
    customers: pd.DataFrame | pa.Table,
    transactions: pd.DataFrame | pa.Table,
    *,
    run_start: dt.date | None = None,
) -> pd.DataFrame:
    """The guide's customer and transaction quality queries, one row per month plus ``total``.

    Args:
        customers: ``raw_customers``.
        transactions: ``raw_transactions``.
        run_start: first simulated day (customers signed up before it count in its month);
            default the first transaction date.

    Returns:
        A frame indexed by ``YYYY-MM`` (and ``total``) with :data:`COLUMNS`; a month with only
        customers or only transactions has NaN in the other half.
    """
    cust, txn = _frame(customers), _frame(transactions)
    for df, col in ((cust, "customer_since_date"), (txn, "transaction_date")):
        df[col] = pd.to_datetime(df[col])
    start = pd.Timestamp(run_start) if run_start is not None else txn["transaction_date"].min()
    since = cust["customer_since_date"]
    cust_month = (since.where(since >= start, start) if pd.notna(start) else since).dt.strftime("%Y-%m")
    c = _per_month(cust, cust_month, _customer_stats)
    tdate = txn["transaction_date"]
    # History rows (dated before the run, delivered with its first batch) count in its first month.
    t = _per_month(txn, (tdate.where(tdate >= start, start) if pd.notna(start) else tdate).dt.strftime("%Y-%m"),
                   _transaction_stats)
    out = c.join(t, how="outer")
    order = sorted(i for i in out.index if i != "total") + ["total"]
    out = out.reindex(order)[COLUMNS]
    out.index.name = "month"
    counts = [c for c in COLUMNS if c.startswith(("total_c", "total_t", "null", "invalid", "negative", "susp", "over"))]
    out[counts] = out[counts].fillna(0).astype(np.int64)
    for c in ("avg_age", "avg_amount", "total_revenue"):
        out[c] = pd.to_numeric(out[c]).round(2)
    for c in ("earliest_customer", "latest_customer", "first_txn", "last_txn"):
        out[c] = pd.to_datetime(out[c]).dt.date
    return out


def lake_dashboard(lake: str | Path, *, version: int | None = None) -> pd.DataFrame:
    """:func:`dashboard` on a lake's tables, each as of Delta ``version`` (default latest)."""
    customers = read_table(lake, "raw_customers", version=version)
    transactions = read_table(lake, "raw_transactions", version=version)
    metrics = read_table(lake, "daily_metrics", version=version, columns=["metric_date"])
    start = metrics["metric_date"].to_pandas().min() if metrics.num_rows else None
    return dashboard(customers, transactions, run_start=start)


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, (dt.date, pd.Timestamp)):
        return v.isoformat()
    return v.item() if isinstance(v, np.generic) else v


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain JSON-able dicts (``month`` first; dates ISO, NaN as null)."""
    return [{"month": m, **{c: _cell(v) for c, v in row.items()}} for m, row in frame.iterrows()]


def to_json(frame: pd.DataFrame) -> str:
    return json.dumps(to_records(frame), indent=2)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no ``tabulate`` dependency)."""
    header = ["month", *frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for rec in to_records(frame):
        lines.append("| " + " | ".join("" if rec[h] is None else str(rec[h]) for h in header) + " |")
    return "\n".join(lines)
