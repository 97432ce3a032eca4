"""Customers' attributes over time, read from ``customer_history``: the SCD type 2 view and as-of lookups.

The boundary rule, shared with the transaction features (:mod:`analysis.features`): **as of an
instant T, what happened strictly before T counts.** A transaction counts when its timestamp is
before T; an attribute row is in force when its ``valid_from`` is before T, so the attributes as
of T are those of the row with ``valid_from < T <= valid_to`` (its half-open interval
``[valid_from, valid_to)`` holds the instant just before T). An as-of *date* D is the instant D
00:00 UTC (features as of D see days up to D - 1); a label dated L describes the close of L (it
counts purchases on L), so its instant is L + 1 day (:func:`label_instant`).

Bitemporal: ``recorded_at`` says when a change reached the data. ``known_at`` restricts a lookup
to the rows recorded by then: the attributes as the data showed them at that time.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from analysis.lake import read_table, table_path

__all__ = ["ATTRIBUTES", "HISTORY_TABLE", "as_of_instant", "attributes_as_of", "attributes_at", "label_instant",
           "load_history", "scd2"]

HISTORY_TABLE = "customer_history"
ATTRIBUTES = ("segment", "tier", "email", "city", "state", "postal_code")


def as_of_instant(d: dt.date | str | pd.Timestamp) -> pd.Timestamp:
    """The instant an as-of date stands for: its midnight, UTC."""
    t = pd.Timestamp(d)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).normalize()


def label_instant(label_date: dt.date | str | pd.Timestamp) -> pd.Timestamp:
    """The instant a label describes: the close of its ``label_date`` (the next midnight, UTC)."""
    return as_of_instant(label_date) + pd.Timedelta(days=1)


def load_history(lake: str | Path, *, version: int | None = None) -> pd.DataFrame | None:
    """The lake's ``customer_history`` (None for a lake without one), by customer and ``valid_from``."""
    if not DeltaTable.is_deltatable(table_path(lake, HISTORY_TABLE)):
        return None
    frame = read_table(lake, HISTORY_TABLE, version=version).to_pandas()
    return frame.sort_values(["customer_id", "valid_from"], kind="stable", ignore_index=True)


def scd2(history: pd.DataFrame, *, known_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """The SCD type 2 view: one row per (customer, version) with ``valid_to`` and ``is_current``.

    ``valid_to`` is the customer's next change's ``valid_from`` (NaT for its open, current row),
    so each customer's intervals ``[valid_from, valid_to)`` tile its life from signup, without
    gaps or overlaps. With ``known_at`` only the rows recorded by then count.
    """
    h = history if known_at is None else history[history["recorded_at"] <= known_at]
    h = h.sort_values(["customer_id", "valid_from"], kind="stable", ignore_index=True)
    nxt = h["valid_from"].shift(-1)
    same = h["customer_id"].shift(-1) == h["customer_id"]
    h = h.assign(valid_to=nxt.where(same))
    h["is_current"] = h["valid_to"].isna()
    return h


def attributes_as_of(history: pd.DataFrame, at: dt.date | str | pd.Timestamp, *,
                     known_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """Every customer's attributes in force just before the instant ``at`` (a date: its midnight UTC).

    One row per customer signed up before ``at``: ``customer_id``, ``version``, ``valid_from`` and
    :data:`ATTRIBUTES`. With ``known_at``, as the rows recorded by then showed them.
    """
    t = pd.Timestamp(at)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    h = history if known_at is None else history[history["recorded_at"] <= known_at]
    h = h[h["valid_from"] < t].sort_values(["customer_id", "valid_from"], kind="stable")
    cols = ["customer_id", "version", "valid_from", *ATTRIBUTES]
    return h.drop_duplicates("customer_id", keep="last")[cols].reset_index(drop=True)


def attributes_at(history: pd.DataFrame, keys: pd.DataFrame, *, on: str = "as_of") -> pd.DataFrame:
    """``keys`` (``customer_id`` and a UTC timestamp column ``on``) with the attributes in force before each.

    A point-in-time join (``pandas.merge_asof``, strictly earlier rows only), the shape a feature
    store's as-of join takes: Databricks' ``timestamp_lookup_key``, Feast's ``event_timestamp``.
    Keys before the customer's signup get nulls.
    """
    left = keys.reset_index(drop=True).assign(_row=np.arange(len(keys))).sort_values(on, kind="stable")
    right = history.sort_values("valid_from", kind="stable")[["customer_id", "valid_from", "version", *ATTRIBUTES]]
    out = pd.merge_asof(left, right, left_on=on, right_on="valid_from", by="customer_id",
                        allow_exact_matches=False, direction="backward")
    return out.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)
