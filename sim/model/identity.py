"""Who the customers are: ages, signup dates, heterogeneity and Faker-built identities.

Faker is called only to build pools, once per process, from a fixed seed (the version is pinned:
its seeded output changes between releases); rows index the pools with keyed draws, so a
customer's name never depends on how many customers were made before it.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sim.model import keyed

__all__ = ["address_columns", "email_column", "identity_columns"]

_POOL_SEED = 20240101
_POOL_SIZE = 1024


@functools.cache
def _pools() -> dict[str, pa.Array]:
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(_POOL_SEED)
    first = np.array([fake.first_name() for _ in range(_POOL_SIZE)], dtype=object)
    last = np.array([fake.last_name() for _ in range(_POOL_SIZE)], dtype=object)
    places = [(fake.city(), fake.state_abbr(), fake.zipcode()) for _ in range(_POOL_SIZE)]
    domains = sorted({fake.free_email_domain() for _ in range(200)})
    # Arrow arrays: rows take from them without a Python string per row.
    pools = {k: pa.array(v, pa.string()) for k, v in {
        "first": first,
        "last": last,
        "city": [p[0] for p in places],
        "state": [p[1] for p in places],
        "zip": [p[2] for p in places],
        "domain": domains,
    }.items()}
    # The e-mail's name parts, lowered and without apostrophes once per pool entry, not per row.
    for k in ("first", "last"):
        pools[f"{k}_local"] = pc.replace_substring(pc.utf8_lower(pools[k]), "'", "")
    return pools


def _index(seed: int, cid: np.ndarray, part: int) -> pa.Array:
    """Each customer's keyed index into a name pool (``part`` 0: first names, 1: last names)."""
    return pa.array((keyed.uniform(seed, "identity", cid, part) * _POOL_SIZE).astype(np.int64))


def identity_columns(seed: int, customer_id: np.ndarray) -> dict[str, pa.Array]:
    """first_name, last_name, email, city, state and postal_code for each customer id."""
    pools = _pools()
    first, last = _index(seed, customer_id, 0), _index(seed, customer_id, 1)
    return {
        "first_name": pools["first"].take(first),
        "last_name": pools["last"].take(last),
        "email": _email(seed, customer_id, np.zeros(len(customer_id), np.int64), first, last),
        **address_columns(seed, customer_id, np.zeros(len(customer_id), np.int64)),
    }


def _keyed_index(seed: int, customer_id: np.ndarray, counter: np.ndarray, part: int, n: int) -> np.ndarray:
    """A pool index per customer: its signup draw (``identity``) at counter 0, after that keyed by the counter."""
    u = keyed.uniform(seed, "identity", customer_id, part)
    changed = np.flatnonzero(counter > 0)
    if len(changed):
        u[changed] = keyed.uniform(seed, "address", customer_id[changed], counter[changed], part)
    return (u * n).astype(np.int64)


def address_columns(seed: int, customer_id: np.ndarray, moves: np.ndarray) -> dict[str, pa.Array]:
    """city, state and postal_code of each customer after ``moves`` moves (0: its raw_customers address)."""
    pools = _pools()
    place = pa.array(_keyed_index(seed, customer_id, np.asarray(moves, np.int64), 3, _POOL_SIZE))
    return {"city": pools["city"].take(place), "state": pools["state"].take(place),
            "postal_code": pools["zip"].take(place)}


def email_column(seed: int, customer_id: np.ndarray, emails: np.ndarray) -> pa.Array:
    """Each customer's e-mail after ``emails`` changes (0: its raw_customers e-mail).

    A changed address keeps the name (``first.last.<id>.<k>``) at a domain keyed by the change.
    """
    return _email(seed, customer_id, np.asarray(emails, np.int64), _index(seed, customer_id, 0),
                  _index(seed, customer_id, 1))


def _email(seed: int, customer_id: np.ndarray, emails: np.ndarray, first: pa.Array, last: pa.Array) -> pa.Array:
    """``first.last.<id>[.<k>]@domain``, lowered, without apostrophes; ``first``/``last``: pool indices."""
    pools = _pools()
    domain = pools["domain"].take(pa.array(_keyed_index(seed, customer_id, emails, 2, len(pools["domain"]))))
    number = pa.array(customer_id, pa.int64()).cast(pa.string())
    changed = emails > 0
    if changed.any():  # the id part only (short strings), not the whole address
        number = pc.if_else(pa.array(changed), pc.binary_join_element_wise(number, pa.array(emails).cast(pa.string()), "."),
                            number)
    dot, at = pa.scalar("."), pa.scalar("@")
    # One pass: the separators are scalars, joined with an empty separator.
    return pc.binary_join_element_wise(pools["first_local"].take(first), dot, pools["last_local"].take(last), dot,
                                       number, at, domain, "")
