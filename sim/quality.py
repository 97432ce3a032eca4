"""Data-quality defects with a manifest of ground truth, and the validation that finds them.

Corruption (:func:`add_data_quality_issues` on pandas frames, :func:`corrupt_month` on one monthly
Arrow batch of the lake) injects the kinds in :data:`ISSUE_KINDS` into disjoint rows, so every
defective row carries exactly one defect and :func:`validate` can attribute it: on corrupted data
the rule findings equal the manifest (precision and recall 1.0 per rule).

Default proportions follow the guide: null ages ``rate/2`` and invalid ages ``rate/2`` of customers,
negative amounts ``rate`` of transactions; every other kind ``rate/4`` (see :func:`default_rates`);
``rates={kind: r}`` overrides single kinds.

Late arrivals: a transaction of month *m* delivered in a later batch. In the lake,
:func:`corrupt_month` holds the row back (``carry``) and the writer prepends it to the next month's
batch; :func:`validate` flags a row whose ``transaction_date`` precedes its batch month, the batch
month of each row coming from the Delta commit that added it (:func:`validate_lake`). In a pandas
frame the delivery is only visible when the frame has a :data:`BATCH_COLUMN` (``"YYYY-MM"``): then
the row's batch is moved to the next month; without that column no late arrival is injected (a
defect nobody could ever observe would only be noise in the manifest).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sim import keyed
from sim.records import SCHEMAS

__all__ = [
    "BATCH_COLUMN",
    "ISSUE_KINDS",
    "MANIFEST_SCHEMA",
    "QualityReport",
    "RuleResult",
    "add_data_quality_issues",
    "corrupt_month",
    "default_rates",
    "validate",
    "validate_features",
    "validate_lake",
]

log = logging.getLogger(__name__)

CUSTOMER_KINDS: tuple[str, ...] = ("null_age", "invalid_age", "malformed_email")
# Order matters: kinds with restricted eligibility pick their rows first.
TRANSACTION_KINDS: tuple[str, ...] = ("before_signup", "negative_amount", "amount_over_cap", "duplicate_transaction",
                                      "after_end", "orphan_transaction", "late_arrival")
ISSUE_KINDS: tuple[str, ...] = ("null_age", "invalid_age", "negative_amount", "duplicate_transaction", "before_signup",
                                "after_end", "orphan_transaction", "malformed_email", "amount_over_cap", "late_arrival")

BATCH_COLUMN = "batch_month"
AGE_MIN, AGE_MAX = 18, 100
AMOUNT_CAP = 5000.0
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
        "late_arrival": np.full(n, late),
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
    period_index: int,
    seed: int,
    rate: float,
    rates: Mapping[str, float] | None,
    end_date: dt.date,
    carry: pa.Table | None,
) -> tuple[dict[str, pa.Table], pa.Table, pa.Table | None]:
    """Corrupt one monthly batch of the lake (same seed and ``period_index``: the same bytes).

    The batch month is the first ``metric_date`` of ``daily_metrics`` (else the first transaction).
    ``carry`` (rows held back by the previous batch) is prepended to this batch's transactions,
    untouched: those rows are the late arrivals, recorded in the previous batch's manifest. Rows this
    batch holds back are returned as the new carry; the batch that reaches ``end_date`` holds none
    back, so no defect is lost when the run ends.

    Returns:
        The tables (customers and transactions corrupted, labels and metrics as given, schemas of
        :mod:`sim.records`), the manifest of this batch (:data:`MANIFEST_SCHEMA` plus ``month``,
        the batch's ``YYYY-MM``), and the carry for the next batch (``None`` if empty).
    """
    out = dict(tables)
    cust_t, txn_t = tables["raw_customers"], tables["raw_transactions"]
    metrics = tables.get("daily_metrics")
    dates = metrics["metric_date"] if metrics is not None and metrics.num_rows else txn_t["transaction_date"]
    r = default_rates(rate, rates)
    if not len(dates) or not any(r.values()):
        if carry is not None and carry.num_rows:
            out["raw_transactions"] = pa.concat_tables([carry, txn_t])
        return out, MONTH_MANIFEST_SCHEMA.empty_table(), None
    start_day = _days([dates.to_pandas().min()])[0]
    last_day = _days([dates.to_pandas().max()])[0]
    end_day = _days([end_date])[0]
    label = str(np.datetime64(int(start_day), "D"))[:7]

    ss = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, _CORRUPT_STREAM, period_index])
    rng_c, rng_t = (np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(2))
    cust, man_c = _corrupt_customers(_frame(cust_t), r, rng_c)
    cust_df = _frame(cust_t)
    since = pd.Series(cust_df["customer_since_date"].to_numpy(), index=cust_df["customer_id"].to_numpy())
    txn, man_t, late = _corrupt_transactions(_frame(txn_t), since, r, rng_t, start_day=start_day, end_day=end_day,
                                             late=last_day < end_day)
    if len(late):
        man_t = pd.concat([man_t, _manifest("raw_transactions", late, BATCH_COLUMN,
                                            "late_arrival", [label] * len(late),
                                            _next_month(np.array([label] * len(late))))], ignore_index=True)
    keep = ~txn["transaction_id"].isin(late).to_numpy()
    txn_out = _to_arrow(txn[keep], SCHEMAS["raw_transactions"])
    new_carry = _to_arrow(txn[~keep], SCHEMAS["raw_transactions"]) if len(late) else None
    if carry is not None and carry.num_rows:
        txn_out = pa.concat_tables([carry.cast(SCHEMAS["raw_transactions"]), txn_out])
    out["raw_customers"] = _to_arrow(cust, SCHEMAS["raw_customers"])
    out["raw_transactions"] = txn_out
    manifest = pd.concat([man_c, man_t], ignore_index=True)
    manifest["month"] = label
    log.info("batch %s: injected %d defects, %d held back", label, len(manifest), len(late))
    return out, pa.Table.from_pandas(manifest, schema=MONTH_MANIFEST_SCHEMA, preserve_index=False), new_carry


# --------------------------------------------------------------------------- validation


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
        _result("after_end", "raw_transactions", "transaction_date after the end date", tid,
                (tdate > end) if end is not None else never, checked=end is not None),
        _result("before_start", "raw_transactions", "transaction_date before the start date", tid,
                (tdate < pd.Timestamp(start_date)) if start_date is not None else never,
                checked=start_date is not None),
    ]
    if batch_month is None and BATCH_COLUMN in txn.columns:
        batch_month = txn[BATCH_COLUMN]
    if batch_month is not None:
        labels_ = np.asarray(batch_month, dtype=object)
        has = ~pd.isna(labels_)
        starts = np.full(len(txn), np.iinfo(np.int64).min)
        if has.any():
            starts[has] = _month_start_days(labels_[has])
        day = tdate.to_numpy().astype("datetime64[D]").astype(np.int64)
        late = has & (day < starts)
    else:
        late = never
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

    table = DeltaTable(path, version=version)
    final = table.file_uris()
    # The history of the latest table: a table loaded at an old version numbers its history wrongly.
    history = {h.get("version"): h for h in DeltaTable(path).history()}
    added: dict[str, int] = {}
    prev: set[str] = set()
    for v in range(table.version() + 1):
        try:
            files = set(DeltaTable(path, version=v).file_uris())
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

    The end date is the last ``metric_date`` of ``daily_metrics`` (the last simulated day).
    """
    from analysis.lake import read_table, table_path

    customers = read_table(lake, "raw_customers", version=version)
    labels = read_table(lake, "customer_labels", version=version)
    transactions, batch = _transactions_with_batches(table_path(lake, "raw_transactions"), version)
    metrics = read_table(lake, "daily_metrics", version=version, columns=["metric_date"])
    end = pd.Timestamp(metrics["metric_date"].to_pandas().max()).date() if metrics.num_rows else None
    return validate(customers, transactions, labels, end_date=end, batch_month=batch)
