"""Keyed (counter-based) randomness.

Every behavioural draw is a pure function of (seed, stream, customer_id, period, counter): the
same customer sees the same numbers whatever shard, worker or engine runs it, and whether the
run was made in one go or resumed. It also gives experiments common random numbers: a customer
under treatment and the same customer under control draw identical uniforms.
"""

from __future__ import annotations

import numpy as np

__all__ = ["generator", "normal", "uniform"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))

# Stream tags: one per kind of draw, so no two draws share a key. A retired tag is never reused
# (5, 8, 15 and 16 were), so the other streams keep their numbers.
STREAMS = {
    "gap": 1, "accept": 2, "dropout": 3, "amount_a": 4, "channel": 6, "category": 7, "arrival": 9,
    "assign": 10, "identity": 11, "corrupt": 12, "leave": 13, "leave_rank": 14,
    "address": 17, "late": 18, "change_clock": 19, "change_kind": 20,
}


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective avalanche on uint64."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _key(seed: int, stream: str, *parts: np.ndarray | int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = _mix(np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + np.uint64(STREAMS[stream]) * _GOLDEN)
        for p in parts:
            h = _mix(h ^ (np.asarray(p).astype(np.uint64) + _GOLDEN))
    return h


def uniform(seed: int, stream: str, *parts: np.ndarray | int) -> np.ndarray:
    """Uniforms in (0, 1), one per broadcast element of ``parts``."""
    h = _key(seed, stream, *parts)
    return ((h >> _S11).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normal(seed: int, stream: str, *parts: np.ndarray | int) -> np.ndarray:
    """Standard normals (Box-Muller over two keyed uniforms)."""
    u1 = uniform(seed, stream, *parts, 0)
    u2 = uniform(seed, stream, *parts, 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def generator(seed: int, *keys: int) -> np.random.Generator:
    """A numpy Generator for bulk attribute draws, keyed by (seed, *keys); never global state."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, *keys])))
