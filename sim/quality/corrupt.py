"""Data-quality defects with a manifest of ground truth.

Corruption (:func:`add_data_quality_issues` on pandas frames, :func:`corrupt_month` on one monthly
Arrow batch of the lake) injects the kinds in :data:`ISSUE_KINDS` into disjoint rows, so every
defective row carries exactly one defect and :func:`sim.quality.validate` can attribute it: on
corrupted data the rule findings equal the manifest (precision and recall 1.0 per rule).

Default proportions follow the guide: null ages ``rate/2`` and invalid ages ``rate/2`` of customers,
negative amounts ``rate`` of transactions; every other kind ``rate/4`` (see :func:`default_rates`);
``rates={kind: r}`` overrides single kinds.

Every defect of a lake batch is a pure function of (scenario, seed, month), never of the command
that writes it, so ``run 12`` equals ``run 6`` + ``append 6``. A batch's "today" is its own month
end: ``after_end`` dates a row 1-30 days after it (the future as seen by that batch).

Late arrivals: a transaction of month *m* delivered in the next batch. In the lake,
:func:`corrupt_month` holds the row back (``carry``, kept in the engine state between commands)
and the next batch delivers it and records it in its manifest, so a lake at any month holds
exactly the defects its manifest lists; rows held back by a lake's last batch are in flight until
the next ``append``. Validation flags a row whose ``transaction_date`` precedes its batch month. In a pandas
frame the delivery is only visible when the frame has a :data:`BATCH_COLUMN` (``"YYYY-MM"``): then
the row's batch is moved to the next month; without that column no late arrival is injected (a
defect nobody could ever observe would only be noise in the manifest).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.batch.tables import SCHEMAS
from sim.contracts import AGE_MAX, AMOUNT_CAP, ISSUE_KINDS
from sim.model import keyed
from sim.model.calendar import Period, epoch_day

__all__ = [
    "BATCH_COLUMN",
    "MANIFEST_SCHEMA",
    "add_data_quality_issues",
    "corrupt_month",
    "default_rates",
]

log = logging.getLogger(__name__)

CUSTOMER_KINDS: tuple[str, ...] = ("null_age", "invalid_age", "malformed_email")
# Order matters: kinds with restricted eligibility pick their rows first.
TRANSACTION_KINDS: tuple[str, ...] = ("before_signup", "negative_amount", "amount_over_cap", "duplicate_transaction",
                                      "after_end", "orphan_transaction", "late_arrival")

BATCH_COLUMN = "batch_month"
# Far above any simulated customer id, so an orphan can never hit a real customer.
ORPHAN_ID_OFFSET = 10**12
# How far before signup / after the end an injected date lands (days, uniform).
MAX_SHIFT_DAYS = 30
_CORRUPT_STREAM = keyed.STREAMS["corrupt"]
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"

MANIFEST_SCHEMA = pa.schema([
    pa.field("table", pa.string(), nullable=False),
    pa.field("row_key", pa.int64(), nullable=False),
    pa.field("column", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("original_value", pa.string()),
    pa.field("injected_value", pa.string()),
])
MONTH_MANIFEST_SCHEMA = MANIFEST_SCHEMA.append(pa.field("month", pa.string(), nullable=False))


def default_rates(rate: float, rates: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per-kind rates: the guide's split of ``rate`` (see module doc), then ``rates`` on top.

    Raises:
        ValueError: an unknown kind or a rate outside [0, 0.5].
    """
    out = {k: rate / 4 for k in ISSUE_KINDS}
    out.update(null_age=rate / 2, invalid_age=rate / 2, negative_amount=rate)
    for k, v in (rates or {}).items():
        if k not in ISSUE_KINDS:
            raise ValueError(f"rates.{k}: expected one of {', '.join(ISSUE_KINDS)}")
        out[k] = float(v)
    for k, v in out.items():
        if not 0 <= v <= 0.5:
            raise ValueError(f"rates.{k}: expected a number in [0, 0.5] (got {v})")
    return out


# --------------------------------------------------------------------------- picking rows


def _pick(rng: np.random.Generator, n: int, kinds: Sequence[str], rates: Mapping[str, float],
          eligible: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Disjoint sorted row positions per kind: ``round(rate * n)`` of them, fewer if too few are eligible."""
    perm = rng.permutation(n)
    used = np.zeros(n, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for kind in kinds:
        want = int(round(rates[kind] * n))
        ok = ~used[perm]
        if kind in eligible:
            ok &= eligible[kind][perm]
        take = perm[ok][:want]
        if len(take) < want:
            log.debug("%s: %d eligible rows, %d wanted", kind, len(take), want)
        used[take] = True
        out[kind] = np.sort(take)
    return out


def _manifest(table: str, keys: Any, column: str, rule: str, original: Any, injected: Any) -> pd.DataFrame:
    def text(v: Any) -> Any:
        if v is None:
            return None
        return pd.Series(np.asarray(v, dtype=object)).map(lambda x: None if pd.isna(x) else str(x)).to_numpy()

    n = len(keys)
    return pd.DataFrame({"table": [table] * n, "row_key": np.asarray(keys, dtype=np.int64), "column": [column] * n,
                         "rule": [rule] * n, "original_value": text(original) if original is not None else [None] * n,
                         "injected_value": text(injected) if injected is not None else [None] * n})


def _days(values: Any) -> np.ndarray:
    """Dates (datetime64 of any unit, or ``date`` objects) as int64 epoch days."""
    return pd.to_datetime(pd.Series(values)).to_numpy().astype("datetime64[D]").astype(np.int64)


def _iso(days: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def _month_start_days(labels: Any) -> np.ndarray:
    """``YYYY-MM`` labels as the epoch day of the month's first day."""
    return pd.PeriodIndex(np.asarray(labels, dtype=object), freq="M").start_time.to_numpy().astype(
        "datetime64[D]").astype(np.int64)


def _next_month(labels: np.ndarray) -> np.ndarray:
    return np.asarray((pd.PeriodIndex(labels, freq="M") + 1).strftime("%Y-%m"), dtype=object)


# --------------------------------------------------------------------------- corrupting frames


def _corrupt_customers(customers: pd.DataFrame, rates: Mapping[str, float],
                       rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = customers.copy()
    picks = _pick(rng, len(out), CUSTOMER_KINDS, rates, {})
    keys = out["customer_id"].to_numpy()
    parts = []

    age = out["age"].astype("Int32").array.copy()
    pos = picks["null_age"]
    parts.append(_manifest("raw_customers", keys[pos], "age", "null_age", age[pos], [None] * len(pos)))
    age[pos] = pd.NA
    pos = picks["invalid_age"]
    high = rng.random(len(pos)) < 0.5
    bad = np.where(high, rng.integers(AGE_MAX + 1, 151, len(pos)), rng.integers(-99, 0, len(pos)))
    parts.append(_manifest("raw_customers", keys[pos], "age", "invalid_age", age[pos], bad))
    age[pos] = bad
    out["age"] = age

    pos = picks["malformed_email"]
    if len(pos):
        email = out["email"].to_numpy(dtype=object, copy=True)
        src = pd.Series(email[pos], dtype=object).fillna("")
        how = rng.integers(0, 3, len(pos))
        bad = np.select([how == 0, how == 1],
                        [src.str.replace("@", "", regex=False), src.str.replace("@", "@@", regex=False)],
                        src.str.split("@").str[0] + "@")
        parts.append(_manifest("raw_customers", keys[pos], "email", "malformed_email", email[pos], bad))
        email[pos] = bad
        out["email"] = pd.Series(email, index=out.index, dtype=customers["email"].dtype)
    return out, pd.concat(parts, ignore_index=True)


def _shift_dates(out: pd.DataFrame, pos: np.ndarray, new_days: np.ndarray, old_days: np.ndarray) -> None:
    """Move ``transaction_date`` (and ``transaction_ts`` with it, keeping the time of day) at ``pos``."""
    col = out.columns.get_loc("transaction_date")
    dates = pd.to_datetime(out["transaction_date"])
    values = dates.to_numpy(copy=True)
    values[pos] = new_days.astype("datetime64[D]").astype(values.dtype)
    out.iloc[:, col] = pd.Series(values, index=out.index).astype(dates.dtype)
    if "transaction_ts" in out.columns and len(pos):
        ts = out["transaction_ts"].copy()
        ts.iloc[pos] = ts.iloc[pos] + pd.to_timedelta(new_days - old_days, unit="D")
        out["transaction_ts"] = ts


def _corrupt_transactions(
    transactions: pd.DataFrame, since: pd.Series, rates: Mapping[str, float], rng: np.random.Generator, *,
    start_day: int, end_day: int, late: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Corrupted copy, manifest, and the transaction ids of rows to hold back (late arrivals)."""
    out = transactions.copy()
    n = len(out)
    keys = out["transaction_id"].to_numpy()
    day = _days(out["transaction_date"]) if n else np.empty(0, np.int64)
    cust_since = since.reindex(out["customer_id"].to_numpy()).to_numpy()
    has_since = ~pd.isna(cust_since)
    since_day = np.where(has_since, _days(np.where(has_since, cust_since, np.datetime64("1970-01-01"))), 0)
    amount = out["amount"].to_numpy(dtype=np.float64, copy=True)
    if BATCH_COLUMN in out.columns and n:
        start_day = np.maximum(start_day, _month_start_days(out[BATCH_COLUMN]))
    start_day = np.broadcast_to(np.asarray(start_day, dtype=np.int64), (n,))
    eligible = {
        # Room for a date in [start, signup) keeps the row in its batch month (not a late arrival).
        "before_signup": has_since & (since_day - 1 >= start_day),
        "negative_amount": amount > 0,
        # A history row (dated before its batch month) is never late: late means after its own month.
        "late_arrival": np.full(n, late) & (day >= start_day),
    }
    picks = _pick(rng, n, TRANSACTION_KINDS, rates, eligible)
    parts = []

    pos = picks["negative_amount"]
    parts.append(_manifest("raw_transactions", keys[pos], "amount", "negative_amount", amount[pos], -amount[pos]))
    amount[pos] = -amount[pos]
    pos = picks["amount_over_cap"]
    high = np.round(rng.uniform(AMOUNT_CAP + 1, 5 * AMOUNT_CAP, len(pos)), 2)
    parts.append(_manifest("raw_transactions", keys[pos], "amount", "amount_over_cap", amount[pos], high))
    amount[pos] = high
    out["amount"] = amount

    pos_b = picks["before_signup"]
    lo = np.maximum(start_day[pos_b], since_day[pos_b] - MAX_SHIFT_DAYS)
    hi = since_day[pos_b] - 1
    new_b = lo + np.floor(rng.random(len(pos_b)) * (hi - lo + 1)).astype(np.int64)
    parts.append(_manifest("raw_transactions", keys[pos_b], "transaction_date", "before_signup",
                           _iso(day[pos_b]), _iso(new_b)))
    pos_e = picks["after_end"]
    new_e = end_day + rng.integers(1, MAX_SHIFT_DAYS + 1, len(pos_e))
    parts.append(_manifest("raw_transactions", keys[pos_e], "transaction_date", "after_end",
                           _iso(day[pos_e]), _iso(new_e)))
    pos = np.concatenate([pos_b, pos_e])
    if len(pos):
        _shift_dates(out, pos, np.concatenate([new_b, new_e]), day[pos])

    pos = picks["orphan_transaction"]
    cid = out["customer_id"].to_numpy(copy=True)
    orphan = ORPHAN_ID_OFFSET + keys[pos]
    parts.append(_manifest("raw_transactions", keys[pos], "customer_id", "orphan_transaction", cid[pos], orphan))
    cid[pos] = orphan
    out["customer_id"] = cid

    pos_l = picks["late_arrival"]
    if BATCH_COLUMN in out.columns and len(pos_l):
        batch = out[BATCH_COLUMN].to_numpy(dtype=object, copy=True)
        moved = _next_month(batch[pos_l])
        parts.append(_manifest("raw_transactions", keys[pos_l], BATCH_COLUMN, "late_arrival", batch[pos_l], moved))
        batch[pos_l] = moved
        out[BATCH_COLUMN] = pd.Series(batch, index=out.index, dtype=transactions[BATCH_COLUMN].dtype)
        pos_l = np.empty(0, np.int64)

    pos = picks["duplicate_transaction"]
    parts.append(_manifest("raw_transactions", keys[pos], "transaction_id", "duplicate_transaction", None, keys[pos]))
    if len(pos):
        # A re-sent feed row sits right after its original.
        order = np.argsort(np.concatenate([np.arange(n), pos]), kind="stable")
        out = pd.concat([out, out.iloc[pos]]).iloc[order]
        if isinstance(transactions.index, pd.RangeIndex):
            out.index = pd.RangeIndex(len(out))
    return out, pd.concat(parts, ignore_index=True), keys[pos_l]


def add_data_quality_issues(
    customers: pd.DataFrame,
    transactions: pd.DataFrame,
    corruption_rate: float = 0.02,
    *,
    seed: int = 42,
    end_date: dt.date | None = None,
    rates: Mapping[str, float] | None = None,
    return_manifest: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Corrupted copies of the guide's two frames (the inputs are not modified).

    Args:
        customers: ``raw_customers`` rows.
        transactions: ``raw_transactions`` rows.
        corruption_rate: the guide's rate; split per kind by :func:`default_rates`.
        seed: same seed and inputs give the same defects.
        end_date: the window's last day (``after_end`` dates land after it); default the latest
            ``transaction_date``.
        rates: per-kind overrides, e.g. ``{"late_arrival": 0.01}``.
        return_manifest: also return the manifest (one row per injected defect).

    Returns:
        ``(customers, transactions)`` or ``(customers, transactions, manifest)``. Ages become the
        nullable ``Int32`` dtype; ``duplicate_transaction`` rows follow their original.
    """
    r = default_rates(corruption_rate, rates)
    ss = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, _CORRUPT_STREAM])
    rng_c, rng_t = (np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(2))
    cust, man_c = _corrupt_customers(customers, r, rng_c)
    day = _days(transactions["transaction_date"]) if len(transactions) else np.zeros(1, np.int64)
    end_day = _days([end_date])[0] if end_date is not None else int(day.max())
    since = pd.Series(pd.to_datetime(customers["customer_since_date"]).to_numpy(),
                      index=customers["customer_id"].to_numpy())
    if r["late_arrival"] and BATCH_COLUMN not in transactions.columns:
        log.info("late_arrival skipped: transactions have no %r column to deliver late", BATCH_COLUMN)
    txn, man_t, _ = _corrupt_transactions(transactions, since, r, rng_t, start_day=int(day.min()), end_day=end_day,
                                          late=BATCH_COLUMN in transactions.columns)
    manifest = pd.concat([man_c, man_t], ignore_index=True)
    log.info("injected %d defects (%s)", len(manifest), manifest["rule"].value_counts().to_dict())
    return (cust, txn, manifest) if return_manifest else (cust, txn)


# --------------------------------------------------------------------------- one monthly lake batch


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(date_as_object=False)


def _to_arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        s = df[f.name]
        if pa.types.is_date32(f.type):
            d = pd.to_datetime(s)
            arr = pa.array(d.to_numpy().astype("datetime64[D]"), pa.date32(), mask=d.isna().to_numpy())
        else:
            arr = pa.Array.from_pandas(s, type=f.type)
        cols.append(arr)
    return pa.Table.from_arrays(cols, schema=schema)


def corrupt_month(
    tables: dict[str, pa.Table],
    *,
    period: Period,
    seed: int,
    rate: float,
    rates: Mapping[str, float] | None,
    carry: pa.Table | None,
) -> tuple[dict[str, pa.Table], pa.Table, pa.Table | None]:
    """Corrupt the monthly batch of ``period`` (same seed and period: the same bytes).

    ``carry`` (rows held back by the previous batch) is prepended to this batch's transactions,
    untouched: those rows are the late arrivals, recorded in this batch's manifest (the batch that
    delivers them). Rows this batch holds back are returned as the new carry, whatever month the
    command ends in: the writer keeps it in the engine state for the next batch. ``after_end``
    dates land after ``period.end``, the batch's own "today". History rows (dated before the
    batch month, see README) are never held back: a late arrival is a row of its own month.

    Returns:
        The tables (customers and transactions corrupted, labels and metrics as given, schemas of
        :mod:`sim.records`), the manifest of this batch (:data:`MANIFEST_SCHEMA` plus ``month``,
        the batch's ``YYYY-MM``), and the carry for the next batch (``None`` if empty).
    """
    out = dict(tables)
    cust_t, txn_t = tables["raw_customers"], tables["raw_transactions"]
    r = default_rates(rate, rates)
    label = period.label
    carry = carry if carry is not None and carry.num_rows else None
    delivered = _manifest("raw_transactions", carry["transaction_id"].to_numpy() if carry is not None else [],
                          BATCH_COLUMN, "late_arrival", None, None)
    if carry is not None:
        delivered["original_value"] = _prev_month(label)
        delivered["injected_value"] = label
    if not any(r.values()):
        if carry is not None:
            out["raw_transactions"] = pa.concat_tables([carry.cast(SCHEMAS["raw_transactions"]), txn_t])
        return out, _month_manifest(delivered, label), None
    start_day, last_day = epoch_day(period.start), epoch_day(period.end)

    ss = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, _CORRUPT_STREAM, period.index])
    rng_c, rng_t = (np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(2))
    cust, man_c = _corrupt_customers(_frame(cust_t), r, rng_c)
    cust_df = _frame(cust_t)
    since = pd.Series(cust_df["customer_since_date"].to_numpy(), index=cust_df["customer_id"].to_numpy())
    txn, man_t, late = _corrupt_transactions(_frame(txn_t), since, r, rng_t, start_day=start_day, end_day=last_day,
                                             late=True)
    keep = ~txn["transaction_id"].isin(late).to_numpy()
    txn_out = _to_arrow(txn[keep], SCHEMAS["raw_transactions"])
    new_carry = _to_arrow(txn[~keep], SCHEMAS["raw_transactions"]) if len(late) else None
    if carry is not None:
        txn_out = pa.concat_tables([carry.cast(SCHEMAS["raw_transactions"]), txn_out])
    out["raw_customers"] = _to_arrow(cust, SCHEMAS["raw_customers"])
    out["raw_transactions"] = txn_out
    manifest = pd.concat([man_c, man_t, delivered], ignore_index=True)
    log.info("batch %s: injected %d defects, %d held back", label, len(manifest), len(late))
    return out, _month_manifest(manifest, label), new_carry


def _prev_month(label: str) -> str:
    return str(pd.Period(label, freq="M") - 1)


def _month_manifest(manifest: pd.DataFrame, label: str) -> pa.Table:
    manifest = manifest.assign(month=label)
    return pa.Table.from_pandas(manifest, schema=MONTH_MANIFEST_SCHEMA, preserve_index=False)
