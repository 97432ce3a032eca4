"""Customers as agents: each one's state, held for a shard as parallel arrays."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

__all__ = ["Agents", "Purchases"]


@dataclass
class Agents:
    """Per-customer state of one shard, as parallel arrays (one element per customer)."""

    customer_id: np.ndarray  # int64
    segment: np.ndarray  # int8, current segment code
    since: np.ndarray  # float64 engine time of signup
    t0: np.ndarray  # float64, where the intensity decay clock starts
    het: np.ndarray  # float64, frequency multiplier (mean 1)
    spend_scale: np.ndarray  # float64, spend multiplier (correlated with het)
    last: np.ndarray  # float64, last purchase time (NaN: none yet)
    dropout: np.ndarray  # float64, latent dropout time (NaN: still active)
    graduate_at: np.ndarray  # float64 (NaN: not a new customer any more)
    grad_to: np.ndarray  # int8, segment after graduation (-1: none)
    flags: np.ndarray  # uint64, bit j set: reached by effect j (interventions, experiment arms)
    due: np.ndarray  # float64, operational time left until the next candidate purchase
    # Attributes that change (sim.model.changes): small counters, the strings are derived from them.
    tier: np.ndarray  # int8, loyalty tier code (contracts.TIERS)
    spend: np.ndarray  # float64, trailing spend per month at the last month end (decayed)
    version: np.ndarray  # int32, customer_history rows so far
    moves: np.ndarray  # int16, address changes so far (0: the raw_customers address)
    emails: np.ndarray  # int16, e-mail changes so far (0: the raw_customers e-mail)
    # float64, the move/e-mail clock: exposure left until the next of the two changes (a unit
    # exponential drawn at signup and after each change, spent at the rates in force month by month).
    change_clock: np.ndarray

    def __len__(self) -> int:
        return len(self.customer_id)

    @classmethod
    def empty(cls) -> Agents:
        return cls.from_columns({})

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray]) -> Agents:
        n = len(cols["customer_id"]) if "customer_id" in cols else 0
        return cls(**{f.name: np.asarray(cols[f.name], _DTYPES[f.name]) if f.name in cols
                      else np.zeros(n, _DTYPES[f.name]) for f in fields(cls)})

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def extend(self, other: Agents) -> Agents:
        return Agents(**{k: np.concatenate([v, getattr(other, k)]) for k, v in self.columns().items()})


_DTYPES = {
    "customer_id": np.int64, "segment": np.int8, "since": np.float64, "t0": np.float64,
    "het": np.float64, "spend_scale": np.float64, "last": np.float64, "dropout": np.float64,
    "graduate_at": np.float64, "grad_to": np.int8, "flags": np.uint64, "due": np.float64,
    "tier": np.int8, "spend": np.float64, "version": np.int32, "moves": np.int16, "emails": np.int16,
    "change_clock": np.float64,
}


@dataclass
class Purchases:
    """Purchases drawn in one block, in (customer, time) order."""

    customer_id: np.ndarray
    t: np.ndarray
    amount: np.ndarray
    segment: np.ndarray
    channel: np.ndarray  # int8 code into CHANNELS
    category: np.ndarray  # int8 code into CATEGORIES

    FIELDS: ClassVar[tuple[str, ...]] = ("customer_id", "t", "amount", "segment", "channel", "category")
    DTYPES: ClassVar[tuple[type, ...]] = (np.int64, np.float64, np.float64, np.int8, np.int8, np.int8)

    @classmethod
    def empty(cls) -> Purchases:
        return cls(*(np.empty(0, d) for d in cls.DTYPES))

    @classmethod
    def concat(cls, parts: list[Purchases]) -> Purchases:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS))

    def take(self, order: np.ndarray) -> Purchases:
        """These purchases reordered (or selected) by the index array ``order``."""
        return Purchases(*(getattr(self, f)[order] for f in self.FIELDS))
