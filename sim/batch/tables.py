"""Arrow schemas of the five tables (and the state), and builders from engine arrays.

Dates are ``date32`` and timestamps UTC, so Delta writes no ``timestampNtz`` feature and any
Delta reader (Spark, DuckDB, polars) opens the tables; strings are plain ``string`` (deltalake
rejects dictionary-of-``string_view`` columns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sim.contracts import CATEGORIES, CHANGE_TYPES, CHANNELS, SEGMENTS, TIERS
from sim.model.agents import Purchases
from sim.model.calendar import Period, epoch_day
from sim.model.changes import HISTORY_FIELDS, history_recorded
from sim.model.identity import address_columns, email_column, identity_columns

if TYPE_CHECKING:
    from sim.engine.state import RunState, ShardMonth
    from sim.scenario import Scenario

__all__ = ["SCHEMAS", "TABLES", "codes_to_strings", "customers_table", "days_to_date32", "deliver_history",
           "first_ids", "history_table", "in_time_order", "labels_table", "metrics_table", "month_tables",
           "purchase_days", "recorded_late", "shard_ids", "shard_transactions", "transactions_table"]

_UTC = pa.timestamp("us", tz="UTC")

CUSTOMERS = pa.schema([
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("first_name", pa.string()),
    pa.field("last_name", pa.string()),
    pa.field("email", pa.string()),
    pa.field("age", pa.int32()),
    pa.field("segment", pa.string()),
    pa.field("customer_since_date", pa.date32()),
    pa.field("city", pa.string()),
    pa.field("state", pa.string()),
    pa.field("postal_code", pa.string()),
])

TRANSACTIONS = pa.schema([
    pa.field("transaction_id", pa.int64(), nullable=False),
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("transaction_date", pa.date32()),
    pa.field("transaction_ts", _UTC),
    pa.field("amount", pa.float64()),
    pa.field("category", pa.string()),
    pa.field("channel", pa.string()),
])

LABELS = pa.schema([
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("label_date", pa.date32(), nullable=False),
    pa.field("segment", pa.string()),
    pa.field("churned", pa.bool_()),
    pa.field("recency_days", pa.int32()),
    pa.field("tenure_days", pa.int32()),
    pa.field("dropped_out", pa.bool_()),
    pa.field("dropout_date", pa.date32()),
    # Experiment name -> "treatment" / "control", for every experiment the customer is assigned
    # in; null when in none. A map keeps the schema the same whatever the scenario's experiments.
    pa.field("experiment_arms", pa.map_(pa.string(), pa.string())),
])

DAILY_METRICS = pa.schema([
    pa.field("metric_date", pa.date32(), nullable=False),
    pa.field("segment", pa.string(), nullable=False),
    pa.field("transactions", pa.int64()),
    pa.field("revenue", pa.float64()),
    pa.field("avg_amount", pa.float64()),
    pa.field("purchasing_customers", pa.int64()),
    pa.field("active_customers_30d", pa.int64()),
    pa.field("new_customers", pa.int64()),
    pa.field("dropouts", pa.int64()),
])

# One row per change of a customer's attributes (SCD type 2 source): the full state after it.
HISTORY = pa.schema([
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("valid_from", _UTC, nullable=False),
    pa.field("version", pa.int32(), nullable=False),
    pa.field("change_type", pa.string(), nullable=False),
    pa.field("segment", pa.string()),
    pa.field("tier", pa.string()),
    pa.field("email", pa.string()),
    pa.field("city", pa.string()),
    pa.field("state", pa.string()),
    pa.field("postal_code", pa.string()),
    pa.field("recorded_at", _UTC, nullable=False),
])

TABLES: tuple[str, ...] = ("raw_customers", "raw_transactions", "customer_labels", "daily_metrics", "customer_history")
SCHEMAS: dict[str, pa.Schema] = dict(zip(TABLES, (CUSTOMERS, TRANSACTIONS, LABELS, DAILY_METRICS, HISTORY), strict=True))

_SEGMENTS = pa.array(SEGMENTS, pa.string())
_CHANNELS = pa.array(CHANNELS, pa.string())
_CATEGORIES = pa.array(CATEGORIES, pa.string())
_DICTS = {"segment": _SEGMENTS, "channel": _CHANNELS, "category": _CATEGORIES,
          "tier": pa.array(TIERS, pa.string()), "change_type": pa.array(CHANGE_TYPES, pa.string())}


def codes_to_strings(kind: str, codes: np.ndarray) -> pa.Array:
    """Small-int codes to plain strings (``take`` on a tiny dictionary)."""
    return _DICTS[kind].take(pa.array(np.asarray(codes, np.int32)))


def days_to_date32(days: np.ndarray, *, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(days, np.int32), pa.int32(), mask=mask).cast(pa.date32())


def timestamps(t: np.ndarray) -> pa.Array:
    """Engine times (float days) as UTC microsecond timestamps."""
    us = np.round(np.asarray(t) * 86_400_000_000).astype(np.int64)
    return pa.array(us, pa.int64()).cast(_UTC)


def _arms_map(arms: np.ndarray, names: list[str]) -> pa.Array:
    """Rows x experiments arm codes (1 treatment, 0 control, -1 none) as a map column."""
    assigned = arms >= 0
    counts = assigned.sum(axis=1)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    rows, cols = np.nonzero(assigned)  # row-major: each row's experiments in scenario order
    keys = pa.array(np.array(names, dtype=object)[cols] if len(cols) else [], pa.string())
    items = pa.array(np.where(arms[rows, cols] == 1, "treatment", "control").astype(object), pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items, type=LABELS.field("experiment_arms").type,
                                   mask=pa.array(counts == 0))


def month_tables(state: RunState, period: Period, months: list[ShardMonth]) -> dict[str, pa.Table]:
    """The month's tables from the shards' arrays (customer_history: every change, late ones included).

    ``state`` is the state *before* the month (its next ids are this month's first ids).
    Transaction ids follow (day, shard, timestamp, customer_id) order (:func:`first_ids`).
    """
    s = state.scenario
    customers = customers_table(s.seed, months)
    tables = dict(zip(TABLES[:4], (customers, transactions_table(state, months), labels_table(s, months),
                                   metrics_table(period, months)), strict=True))
    if history_recorded():  # (not in the benchmark's baseline without the history)
        tables["customer_history"] = history_table(s.seed, [m.history for m in months], customers=customers,
                                                   period=period)
    return tables


def history_table(seed: int, parts: list[dict[str, np.ndarray]], *, customers: pa.Table | None = None,
                  period: Period | None = None) -> pa.Table:
    """customer_history rows from shards' change arrays (:mod:`sim.model.changes`), in their order.

    ``customers``, the month's raw_customers rows, if given, lends its strings to the signup rows:
    they come first, in its order (the same values, not drawn or copied again), then the changes.
    With ``period``, the changes recorded after its end come last (a batch then holds them back
    without copying the others: :func:`deliver_history`).
    """
    h = {k: np.concatenate([p[k] for p in parts if p] or [np.empty(0, np.int64)]) for k in HISTORY_FIELDS}
    if period is not None:
        late = recorded_late(h["recorded_us"], period)
        if late.any():
            h = {k: v[np.r_[np.flatnonzero(~late), np.flatnonzero(late)]] for k, v in h.items()}
    signup = h["change_type"] == CHANGE_TYPES.index("signup")
    strings: dict[str, pa.Array | pa.ChunkedArray]
    first = np.flatnonzero(signup)
    if len(first) and customers is not None \
            and np.array_equal(h["customer_id"][first], customers.column("customer_id").to_numpy()):
        # Each new customer's one signup row, by id (rows come by customer): raw_customers' rows.
        rest = np.flatnonzero(~signup)
        h = {k: v[np.r_[first, rest]] for k, v in h.items()}
        other = h["customer_id"][len(first):].astype(np.int64)
        drawn = {"email": email_column(seed, other, h["emails"][len(first):]),
                 **address_columns(seed, other, h["moves"][len(first):])}
        strings = {k: pa.chunked_array([*customers.column(k).chunks, v]) for k, v in drawn.items()}
    else:
        cid = h["customer_id"].astype(np.int64)
        strings = {"email": email_column(seed, cid, h["emails"]), **address_columns(seed, cid, h["moves"])}
    return pa.table({
        "customer_id": h["customer_id"].astype(np.int64),
        "valid_from": pa.array(h["valid_from_us"].astype(np.int64), pa.int64()).cast(_UTC),
        "version": pa.array(h["version"].astype(np.int32)),
        "change_type": codes_to_strings("change_type", h["change_type"]),
        "segment": codes_to_strings("segment", h["segment"]),
        "tier": codes_to_strings("tier", h["tier"]),
        **strings,
        "recorded_at": pa.array(h["recorded_us"].astype(np.int64), pa.int64()).cast(_UTC),
    }, schema=HISTORY)


def customers_table(seed: int, months: list[ShardMonth]) -> pa.Table:
    """raw_customers of the month's new customers, by id (per shard: shards are id ranges)."""
    cust = {k: np.concatenate([m.new_customers[k] for m in months if m.new_customers] or [np.empty(0)])
            for k in ("customer_id", "age", "segment", "since")}
    cid = cust["customer_id"].astype(np.int64)
    order = np.argsort(cid, kind="stable")
    cid = cid[order]
    identity = identity_columns(seed, cid)
    customers = pa.table({
        "customer_id": cid,
        "first_name": identity["first_name"],
        "last_name": identity["last_name"],
        "email": identity["email"],
        "age": pa.array(cust["age"][order].astype(np.int32)),
        "segment": codes_to_strings("segment", cust["segment"][order]),
        "customer_since_date": days_to_date32(np.floor(cust["since"][order])),
        "city": identity["city"],
        "state": identity["state"],
        "postal_code": identity["postal_code"],
    }, schema=CUSTOMERS)
    return customers


def transactions_table(state: RunState, months: list[ShardMonth]) -> pa.Table:
    """raw_transactions of the month in id order, ids from ``state``'s next (see :func:`first_ids`)."""
    parts = {m.shard: in_time_order(m.purchases) for m in months}
    days = {k: purchase_days(p.t) for k, p in parts.items()}
    firsts = first_ids(state.next_transaction_id, days)
    ids = np.concatenate([shard_ids(*days[k], firsts[k]) for k in parts] or [np.empty(0, np.int64)])
    # Each id names its row's place: a permutation, no sort.
    order = np.empty(len(ids), np.int64)
    order[ids - state.next_transaction_id] = np.arange(len(ids))
    return _transactions(ids[order], Purchases.concat(list(parts.values())).take(order))


def in_time_order(p: Purchases) -> Purchases:
    """One shard's purchases by (time, customer): the order its transaction ids are given in."""
    return p.take(np.lexsort((p.customer_id, p.t)))


def purchase_days(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The days (epoch days) purchases at sorted times ``t`` fall on, and how many on each."""
    days, counts = np.unique(np.floor(t).astype(np.int64), return_counts=True)
    return days, counts.astype(np.int64)


def first_ids(first_id: int, days: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, np.ndarray]:
    """Each shard's first transaction id on each of its purchase days (``days``: shard -> days, counts).

    Ids are dense from ``first_id`` in (day, shard, time, customer) order: they follow time order
    by day, and each shard's ids are known from every shard's per-day counts alone, so a shard's
    transactions are written wherever the shard ran. A pure function of the counts.
    """
    shards = sorted(days)
    shard = np.concatenate([np.full(len(days[k][0]), k, np.int64) for k in shards] or [np.empty(0, np.int64)])
    day = np.concatenate([days[k][0] for k in shards] or [np.empty(0, np.int64)])
    n = np.concatenate([days[k][1] for k in shards] or [np.empty(0, np.int64)])
    order = np.lexsort((shard, day))
    start = np.empty(len(n), np.int64)
    start[order] = first_id + np.r_[0, np.cumsum(n[order])[:-1]].astype(np.int64)
    bounds = np.cumsum([0, *(len(days[k][0]) for k in shards)])
    return {k: start[bounds[i]:bounds[i + 1]] for i, k in enumerate(shards)}


def shard_ids(days: np.ndarray, counts: np.ndarray, firsts: np.ndarray) -> np.ndarray:
    """The transaction ids of one shard's purchases in time order, from :func:`first_ids`."""
    offsets = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    return np.repeat(firsts - offsets, counts) + np.arange(int(counts.sum()), dtype=np.int64)


def shard_transactions(p: Purchases, days: tuple[np.ndarray, np.ndarray], firsts: np.ndarray) -> pa.Table:
    """One shard's raw_transactions part: ``p`` in time order (:func:`in_time_order`), ids assigned."""
    return _transactions(shard_ids(*days, firsts), p)


def _transactions(ids: np.ndarray, p: Purchases) -> pa.Table:
    return pa.table({
        "transaction_id": ids,
        "customer_id": p.customer_id,
        "transaction_date": days_to_date32(np.floor(p.t)),
        "transaction_ts": timestamps(p.t),
        "amount": p.amount,
        "category": codes_to_strings("category", p.category),
        "channel": codes_to_strings("channel", p.channel),
    }, schema=TRANSACTIONS)


def recorded_late(recorded_us: np.ndarray, period: Period) -> np.ndarray:
    """Which changes (``recorded_at`` in epoch microseconds) are recorded after ``period``'s end."""
    return recorded_us > round(period.t1 * 86_400_000_000)


def deliver_history(rows: pa.Table, carry: pa.Table | None, period: Period) -> tuple[pa.Table, pa.Table | None]:
    """customer_history rows this batch delivers (recorded by its month's end), and those it holds back.

    ``carry`` is what earlier batches held back; a late change reaches the first batch whose month
    end is at or after its ``recorded_at``, so a Delta version never holds a row recorded after it.
    Both come in order: the carry's, then the month's.
    """
    due, held = _held_back(rows, period)
    if carry is None:
        return due, held
    carry_due, carry_held = _held_back(carry.cast(HISTORY), period)
    due = pa.concat_tables([carry_due, due])
    if carry_held is None or held is None:
        return due, carry_held if held is None else held
    return due, pa.concat_tables([carry_held, held])


def _held_back(rows: pa.Table, period: Period) -> tuple[pa.Table, pa.Table | None]:
    late = recorded_late(rows.column("recorded_at").cast(pa.int64()).to_numpy(), period)
    held = int(late.sum())
    if not held:
        return rows, None
    due = rows.num_rows - held
    if late[due:].all():  # at the end (history_table given the period): slices, no copy
        return rows.slice(0, due), rows.slice(due)
    return rows.filter(pa.array(~late)), rows.filter(pa.array(late))


def labels_table(s: Scenario, months: list[ShardMonth]) -> pa.Table:
    """customer_labels of the month's label cohort, by customer id (per shard: shards are id ranges)."""
    lab = {k: np.concatenate([m.labels[k] for m in months]) for k in months[0].labels}
    order = np.argsort(lab["customer_id"], kind="stable")
    lab = {k: v[order] for k, v in lab.items()}
    labels = pa.table({
        "customer_id": lab["customer_id"],
        "label_date": days_to_date32(lab["label_day"]),
        "segment": codes_to_strings("segment", lab["segment"]),
        "churned": lab["churned"],
        "recency_days": lab["recency_days"].astype(np.int32),
        "tenure_days": lab["tenure_days"].astype(np.int32),
        "dropped_out": lab["dropped_out"],
        "dropout_date": days_to_date32(lab["dropout_day"], mask=~lab["dropped_out"]),
        "experiment_arms": _arms_map(lab["experiment_arms"], [e.name for e in s.experiments]),
    }, schema=LABELS)
    return labels


def metrics_table(period: Period, months: list[ShardMonth]) -> pa.Table:
    """daily_metrics: the shards' daily partials summed."""
    daily = months[0].daily
    for m in months[1:]:
        daily = daily + m.daily
    nd, ns = daily.transactions.shape
    d0 = epoch_day(period.start)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.round(daily.revenue / daily.transactions, 2).ravel()
    metrics = pa.table({
        "metric_date": days_to_date32(np.repeat(np.arange(d0, d0 + nd), ns)),
        "segment": codes_to_strings("segment", np.tile(np.arange(ns), nd)),
        "transactions": daily.transactions.ravel().astype(np.int64),
        "revenue": np.round(daily.revenue.ravel(), 2),
        "avg_amount": pa.array(avg, pa.float64(), mask=daily.transactions.ravel() == 0),
        "purchasing_customers": daily.purchasing_customers.ravel().astype(np.int64),
        "active_customers_30d": daily.active_customers_30d.ravel().astype(np.int64),
        "new_customers": daily.new_customers.ravel().astype(np.int64),
        "dropouts": daily.dropouts.ravel().astype(np.int64),
    }, schema=DAILY_METRICS)
    return metrics
