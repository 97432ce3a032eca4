"""Validation of the tables against every data-quality rule, and the corruption it is scored on.

:func:`validate` checks the guide's built-in rules (ages, amounts, dates, referential integrity)
plus the defects :mod:`sim.corruption` injects (duplicates, orphans, malformed e-mails, amounts
over the cap, late arrivals); rule names equal the manifest's ``rule`` values, so on corrupted
data the findings can be compared with the manifest rule by rule. :func:`validate_lake` reads the
batch month of each transaction from the Delta commit that added it, so late arrivals show.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.contracts import AGE_MAX, AGE_MIN, AMOUNT_CAP
from sim.lake.read import read_table
from sim.quality.corrupt import (
    _EMAIL,
    BATCH_COLUMN,
    _month_start_days,
    _next_month,
)

__all__ = ["QualityReport", "RuleResult", "validate", "validate_features", "validate_lake"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome: ``keys`` are the offending customer or transaction ids (one per row)."""

    rule: str
    table: str
    description: str
    count: int
    keys: tuple[int, ...]
    checked: bool = True

    @property
    def passed(self) -> bool:
        return self.count == 0

    def to_dict(self, *, max_keys: int | None = None) -> dict[str, Any]:
        keys = list(self.keys if max_keys is None else self.keys[:max_keys])
        return {"rule": self.rule, "table": self.table, "description": self.description, "count": self.count,
                "keys": keys, "passed": self.passed, "checked": self.checked}


@dataclass(frozen=True)
class QualityReport:
    """The outcome of :func:`validate`, one :class:`RuleResult` per rule (unchecked rules pass)."""

    results: tuple[RuleResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    def __getitem__(self, rule: str) -> RuleResult:
        for r in self.results:
            if r.rule == rule:
                return r
        raise KeyError(rule)

    def keys(self) -> dict[str, list[int]]:
        """Offending keys per rule (the shape of a manifest grouped by ``rule``)."""
        return {r.rule: list(r.keys) for r in self.results}

    def to_dict(self, *, max_keys: int | None = None) -> dict[str, Any]:
        return {"ok": self.ok, "rules": {r.rule: r.to_dict(max_keys=max_keys) for r in self.results}}

    def to_frame(self) -> pd.DataFrame:
        """One row per rule: rule, table, description, count, passed, checked, keys (list)."""
        rows = [r.to_dict() for r in self.results]
        return pd.DataFrame(rows, columns=["rule", "table", "description", "count", "passed", "checked", "keys"])


def _as_frame(data: pd.DataFrame | pa.Table | None) -> pd.DataFrame | None:
    if data is None or isinstance(data, pd.DataFrame):
        return data
    return data.to_pandas(date_as_object=False)


def _result(rule: str, table: str, description: str, keys: pd.Series, mask: Any, *, checked: bool = True) -> RuleResult:
    mask = np.asarray(mask, dtype=bool)
    found = np.sort(keys.to_numpy()[mask]).astype(np.int64)
    return RuleResult(rule, table, description, len(found), tuple(found.tolist()), checked)


def _epoch(t: pd.Timestamp) -> int:
    return int(np.datetime64(t.date(), "D").astype(np.int64))


def _dates(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).astype("datetime64[ms]")


def validate(
    customers: pd.DataFrame | pa.Table,
    transactions: pd.DataFrame | pa.Table,
    labels: pd.DataFrame | pa.Table | None = None,
    *,
    end_date: dt.date | None = None,
    start_date: dt.date | None = None,
    batch_month: Sequence[str | None] | np.ndarray | pd.Series | None = None,
    window_start: dt.date | None = None,
) -> QualityReport:
    """Check the guide's rules (and the defects of :data:`ISSUE_KINDS`) on the raw tables.

    Rule names equal the manifest's ``rule``. Extra rules, never injected: ``duplicate_customer``,
    ``since_after_end`` (customer_since_date after the end; the tenure may start years before the
    window, so there is no lower bound), ``before_start`` (transaction before ``start_date``) and
    ``orphan_label``.

    Args:
        customers: ``raw_customers`` (pandas or Arrow).
        transactions: ``raw_transactions``.
        labels: ``customer_labels``; checked for orphans, and its latest ``label_date`` is the
            default end date.
        end_date: last valid day; without it and without labels, the end rules are not checked.
        start_date: first valid transaction day; ``before_start`` is checked only when given.
        batch_month: the ``YYYY-MM`` batch that delivered each transaction row (aligned with
            ``transactions``, ``None`` where unknown); default its :data:`BATCH_COLUMN` if present.
            ``late_arrival`` flags rows dated before their batch month; checked only with batch months.
            ``after_end`` then flags rows dated after their batch's month end (its "today", capped
            at ``end_date``); rows without a batch are checked against ``end_date``.
        window_start: first simulated day; rows dated before it are history, not late arrivals.

    Returns:
        A :class:`QualityReport`.
    """
    cust, txn, lab = _as_frame(customers), _as_frame(transactions), _as_frame(labels)
    if end_date is None and lab is not None and len(lab):
        end_date = pd.Timestamp(lab["label_date"].max()).date()
    end = pd.Timestamp(end_date) if end_date is not None else None
    cid, tid = cust["customer_id"], txn["transaction_id"]
    age = pd.to_numeric(cust["age"])
    email_ok = cust["email"].astype(object).fillna("").astype(str).str.fullmatch(_EMAIL).to_numpy(dtype=bool)
    since = _dates(cust["customer_since_date"])
    tdate = _dates(txn["transaction_date"])
    amount = pd.to_numeric(txn["amount"])
    known = txn["customer_id"].isin(cid).to_numpy()
    first_since = pd.Series(since.to_numpy(), index=cid.to_numpy())
    first_since = first_since[~first_since.index.duplicated()]
    signup = pd.Series(first_since.reindex(txn["customer_id"].to_numpy()).to_numpy(), index=txn.index)
    never = np.zeros(len(txn), dtype=bool)

    if batch_month is None and BATCH_COLUMN in txn.columns:
        batch_month = txn[BATCH_COLUMN]
    day = tdate.to_numpy().astype("datetime64[D]").astype(np.int64)
    # A batch's "today" is its month's end (the lake's end for its last batch): later is the future.
    today = np.full(len(txn), _epoch(end) if end is not None else np.iinfo(np.int64).max)
    if batch_month is not None:
        labels_ = np.asarray(batch_month, dtype=object)
        has = ~pd.isna(labels_)
        starts = np.full(len(txn), np.iinfo(np.int64).min)
        if has.any():
            starts[has] = _month_start_days(labels_[has])
            today[has] = np.minimum(today[has], _month_start_days(_next_month(labels_[has])) - 1)
        # Rows before the window are history (README), delivered with the first batch, never late.
        opened = day >= _epoch(pd.Timestamp(window_start)) if window_start is not None else True
        late = has & (day < starts) & opened
    else:
        late = never
    results = [
        _result("null_age", "raw_customers", "age is null", cid, age.isna()),
        _result("invalid_age", "raw_customers", f"age outside {AGE_MIN}-{AGE_MAX}", cid,
                age.notna() & ((age < AGE_MIN) | (age > AGE_MAX))),
        _result("malformed_email", "raw_customers", "email is not name@domain.tld", cid, ~email_ok),
        _result("duplicate_customer", "raw_customers", "customer_id repeated", cid, cid.duplicated()),
        _result("since_after_end", "raw_customers", "customer_since_date after the end date", cid,
                (since > end) if end is not None else np.zeros(len(cust), bool), checked=end is not None),
        _result("negative_amount", "raw_transactions", "amount < 0", tid, amount < 0),
        _result("amount_over_cap", "raw_transactions", f"amount > {AMOUNT_CAP:g}", tid, amount > AMOUNT_CAP),
        _result("duplicate_transaction", "raw_transactions", "transaction_id repeated", tid, tid.duplicated()),
        _result("orphan_transaction", "raw_transactions", "customer_id not in raw_customers", tid, ~known),
        _result("before_signup", "raw_transactions", "transaction_date before customer_since_date", tid,
                (tdate < signup).to_numpy(dtype=bool)),
        _result("after_end", "raw_transactions", "transaction_date after the end date (of its batch month)", tid,
                day > today, checked=end is not None or batch_month is not None),
        _result("before_start", "raw_transactions", "transaction_date before the start date", tid,
                (tdate < pd.Timestamp(start_date)) if start_date is not None else never,
                checked=start_date is not None),
    ]
    results.append(_result("late_arrival", "raw_transactions", "transaction_date before its batch month", tid,
                           late, checked=batch_month is not None))
    if lab is not None:
        results.append(_result("orphan_label", "customer_labels", "customer_id not in raw_customers",
                               lab["customer_id"], ~lab["customer_id"].isin(cid)))
    report = QualityReport(tuple(results))
    for r in report.failed:
        log.info("%s: %d rows (%s)", r.rule, r.count, r.description)
    return report


def validate_features(df: pd.DataFrame) -> None:
    """Refuse a feature frame with nulls, ages outside 18-100 or negative amounts/spend.

    Raises:
        ValueError: naming each failed rule and its count, e.g. ``"age: 12 null values"``.
    """
    problems = [f"{c}: {n} null values" for c, n in df.isna().sum().items() if n]
    if "age" in df.columns:
        age = pd.to_numeric(df["age"])
        n = int((age.notna() & ((age < AGE_MIN) | (age > AGE_MAX))).sum())
        if n:
            problems.append(f"age: {n} values outside {AGE_MIN}-{AGE_MAX}")
    for c in df.columns:
        if (c == "amount" or "spend" in str(c)) and pd.api.types.is_numeric_dtype(df[c]):
            n = int((df[c] < 0).sum())
            if n:
                problems.append(f"{c}: {n} negative values")
    if problems:
        raise ValueError("; ".join(problems))


# --------------------------------------------------------------------------- the lake


def _commit_months(path: str, version: int | None) -> tuple[list[str], list[str | None]]:
    """Each live file of a Delta table and the batch month of the commit that added it.

    The month is the ``month`` of the commit's ``churnsim`` metadata (written by the lake writer).
    Files of other commits (OPTIMIZE rewrites mix months; foreign writers say nothing) or whose log
    is gone get ``None``: late arrivals there cannot be told apart from on-time rows.
    """
    from deltalake import DeltaTable

    from sim.lake.read import data_files

    table = DeltaTable(path, version=version)
    final = data_files(table)
    # The history of the latest table: a table loaded at an old version numbers its history wrongly.
    history = {h.get("version"): h for h in DeltaTable(path).history()}
    added: dict[str, int] = {}
    prev: set[str] = set()
    for v in range(table.version() + 1):
        try:
            files = set(data_files(DeltaTable(path, version=v)))
        except Exception:  # the log was cleaned up: those files stay without a batch
            log.debug("%s: version %d not loadable", path, v)
            continue
        for f in files - prev:
            added[f] = v
        prev = files
    months: list[str | None] = []
    for f in final:
        meta = history.get(added.get(f, -1), {}).get("churnsim")
        months.append(json.loads(meta).get("month") if meta else None)
    return final, months


def _transactions_with_batches(path: str, version: int | None) -> tuple[pa.Table, np.ndarray]:
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    schema = DeltaTable(path, version=version).schema().to_arrow()
    schema = schema if isinstance(schema, pa.Schema) else pa.schema(schema)
    files, months = _commit_months(path, version)
    if not files:
        return schema.empty_table(), np.empty(0, dtype=object)
    parts, batches = [], []
    for month in dict.fromkeys(months):
        group = [f for f, m in zip(files, months, strict=True) if m == month]
        tab = ds.dataset(group, format="parquet", schema=schema).to_table()
        parts.append(tab)
        batches.append(np.full(tab.num_rows, month, dtype=object))
    return pa.concat_tables(parts), np.concatenate(batches)


def validate_lake(lake: str | Path, *, version: int | None = None) -> QualityReport:
    """:func:`validate` on a lake's tables (each as of Delta ``version``), late arrivals included.

    The end date is the last ``metric_date`` of ``daily_metrics`` (the last simulated day), the
    window start its first; each transaction's batch month is its commit's.
    """
    customers = read_table(lake, "raw_customers", version=version)
    labels = read_table(lake, "customer_labels", version=version)
    transactions, batch = _transactions_with_batches(str(Path(lake) / "raw_transactions"), version)
    metrics = read_table(lake, "daily_metrics", version=version, columns=["metric_date"])
    dates = metrics["metric_date"].to_pandas()
    end = pd.Timestamp(dates.max()).date() if metrics.num_rows else None
    start = pd.Timestamp(dates.min()).date() if metrics.num_rows else None
    return validate(customers, transactions, labels, end_date=end, batch_month=batch, window_start=start)
