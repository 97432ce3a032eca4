"""Calibrating a scenario from a real transaction log.

The log is reduced to purchase occasions (one per customer and day). Customers first seen after a
warm-up (once first sightings settle to the steady rate of acquisitions) are the acquired
``new_customer`` segment; the rest are split by k-means on log repeat rate and log spend and named
by behaviour (young_active buys most often, mid_stable spends most, senior_declining is the rest).
First guesses are each segment's moments. Then, for a few rounds, the candidate scenario is
simulated at the log's size and its customers are classified by the same segmenter:

* spend, regularity, heterogeneity, each segment's decay, acquisition and the weekly and yearly
  patterns each follow one moment by a damped step (fixed point);
* every segment's rate and dropout hazard move together by a Levenberg-Marquardt step on a
  finite-difference Jacobian of the segments' repeats, lapse, rate while active and first-purchase
  delay, plus the number of buyers;
* shares and size are solved by non-negative least squares through the simulation's confusion
  between true segment and label (never-buyers included).

The mean of the later rounds' parameters is the estimate (each round also chases one simulation's
noise).

That is the ``steady`` model: a customer base that was buying before the window opened, plus
acquisitions. The ``acquired`` model is the other: every customer is acquired inside the window at
its first purchase (``acquisition.window_days`` spans the first purchases, ``window_shape`` by
maximum likelihood on their days, ``first_purchase_at_signup``), as in a cohort log like CDNOW or a
young business's log. It has one behaviour with an early phase (``new_customer`` buying at a
multiple of the later rate for some weeks, then graduating to ``mid_stable``); rate, heterogeneity
and dropout start from a BG/NBD fit (the engine with ``dropout_per_purchase`` is BG/NBD), spend
from the log-normal closest in KS, and the search below runs from each way of dropping out (after
purchases, or by recency) with twice the budget.

A final Nelder-Mead search on common scales trades the moments off when the model cannot match
them all (real logs). ``model="auto"`` fits both models, except the steady one to a log that is
one cohort (95 % of first purchases in the window's first quarter). Every simulation is keyed by
the seed, so the fit is deterministic; the candidate with the smallest summed distance (see
:func:`sim.fit_report.distances`) is returned.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import ScenarioError
from sim.fit_report import distances, log_stats, simulated_log
from sim.scenario import Scenario, scenario_from_dict
from sim.segments import SEGMENTS

__all__ = ["MODELS", "calibrate", "occasions", "read_log"]

log = logging.getLogger(__name__)

CANONICAL = ("customer_id", "date", "amount")
MODELS = ("auto", "steady", "acquired")
_DAMP = 0.7  # share of a log-ratio step taken per iteration: full steps oscillate between coupled moments
_MAX_STEP = math.log(3.0)
_NEVER_GRADUATE = 3650.0
# Customers who never buy in the window are invisible in a log; allow some, but a fit that needs
# many more of them than buyers is explaining the log with the wrong mechanism.
_MAX_SIZE_FACTOR = 1.5
_FD_STEP = 0.25  # log step of the finite-difference Jacobian
_FIT_CUSTOMERS = 10_000  # the acquired model's search simulates at least this many customers...
_MAX_SCALE = 5  # ...at most this many times the log's
_COHORT_SPAN = 0.25  # share of the window holding 95 % of first purchases in a single-cohort log
_EARLY_DAYS = 60  # "soon after the first purchase": the early-repeats moment's span


# --------------------------------------------------------------------------- reading and checking


def read_log(path: str | Path, *, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a transaction log from CSV, Parquet or a Delta table directory.

    Args:
        path: a ``.csv`` (or ``.txt``/``.tsv``, delimiter sniffed), ``.parquet`` file, or a Delta directory.
        columns: maps ``customer_id``/``date``/``amount`` to the file's column names (checked later).

    Returns:
        The raw frame, with ``attrs["source"]`` naming the file for later error messages.
    """
    p = Path(path)
    src = str(p)
    try:
        if p.is_dir():
            if not (p / "_delta_log").is_dir():
                raise ScenarioError(f"{src}: expected a Delta table directory (no _delta_log) or a CSV/Parquet file")
            import pyarrow.dataset as ds
            from deltalake import DeltaTable

            # file_uris + pyarrow: DeltaTable.to_pyarrow_table() aborts the interpreter at exit.
            df = ds.dataset(DeltaTable(src).file_uris(), format="parquet").to_table().to_pandas()
        elif p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif p.suffix.lower() in (".csv", ".txt", ".tsv", ".dat"):
            df = _read_text(p)
        else:
            raise ScenarioError(f"{src}: expected a .csv, .parquet file or a Delta table directory")
    except FileNotFoundError:
        raise ScenarioError(f"{src}: no such file or directory") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{src}: cannot read transaction log ({str(exc).splitlines()[0]})") from None
    df.attrs["source"] = src
    return df


def _read_text(p: Path) -> pd.DataFrame:
    """A delimited text log: the delimiter sniffed, else runs of whitespace (CDNOW's format). A file
    whose first row is all numbers has no header: its columns are named by position, from 1."""
    sep: str | None = None
    try:
        df = pd.read_csv(p, sep=sep, engine="python")
    except pd.errors.ParserError:
        df = None
    if df is None or any(str(c).startswith("Unnamed: ") for c in df.columns):  # a space sniffed in runs of spaces
        sep = r"\s+"
        df = pd.read_csv(p, sep=sep, engine="python")
    if all(_is_number(c) for c in df.columns):
        df = pd.read_csv(p, sep=sep, engine="python", header=None)
        df.columns = [str(i + 1) for i in range(df.shape[1])]
    return df


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _parse_dates(col: pd.Series, src: str, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        d = col
    elif pd.api.types.is_integer_dtype(col):
        d = pd.to_datetime(col.astype(str), format="%Y%m%d", errors="coerce")
    else:
        d = pd.to_datetime(col, errors="coerce", format="mixed")
    bad = d.isna().to_numpy()
    if bad.any():
        value = col.iloc[int(np.argmax(bad))]
        raise ScenarioError(f"{src}: column {name!r}: expected dates (YYYY-MM-DD or YYYYMMDD) (got {value!r})")
    if getattr(d.dt, "tz", None) is not None:
        d = d.dt.tz_convert("UTC").dt.tz_localize(None)
    return d.to_numpy().astype("datetime64[D]").astype(np.int64)


def occasions(df: pd.DataFrame, *, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Check a transaction log and reduce it to purchase occasions.

    Args:
        df: the log; ``df.attrs["source"]`` (set by :func:`read_log`) names it in errors.
        columns: maps ``customer_id``/``date``/``amount`` to ``df``'s column names.

    Returns:
        One row per customer and day: ``customer_id``, ``day`` (days since 1970-01-01), ``amount`` (summed).

    Raises:
        ScenarioError: missing columns, no rows, unparseable dates, negative or non-numeric amounts,
            fewer than two customers.
    """
    src = str(df.attrs.get("source", "log")) if isinstance(df, pd.DataFrame) else "log"
    if not isinstance(df, pd.DataFrame):
        raise ScenarioError(f"{src}: expected a pandas DataFrame (got {type(df).__name__})")
    names = {k: k for k in CANONICAL}
    for key, value in (columns or {}).items():
        if key not in names:
            raise ScenarioError(f"{src}: columns: expected keys among {', '.join(CANONICAL)} (got {key!r})")
        names[key] = value
    missing = [f"{v!r}" + (f" ({k})" if k != v else "") for k, v in names.items() if v not in df.columns]
    if missing:
        raise ScenarioError(f"{src}: missing column {', '.join(missing)}; expected columns for customer id, "
                            f"date and amount (got {list(map(str, df.columns))})")
    if len(df) == 0:
        raise ScenarioError(f"{src}: expected transactions (the log is empty)")
    cid = df[names["customer_id"]]
    if cid.isna().any():
        raise ScenarioError(f"{src}: column {names['customer_id']!r}: expected a customer id on every row (got a missing value)")
    day = _parse_dates(df[names["date"]], src, names["date"])
    amount = pd.to_numeric(df[names["amount"]], errors="coerce")
    bad = amount.isna().to_numpy()
    if bad.any():
        value = df[names["amount"]].iloc[int(np.argmax(bad))]
        raise ScenarioError(f"{src}: column {names['amount']!r}: expected a number (got {value!r})")
    if (amount < 0).any():
        value = float(amount[amount < 0].iloc[0])
        raise ScenarioError(f"{src}: column {names['amount']!r}: expected non-negative amounts (got {value})")
    out = pd.DataFrame({"customer_id": cid.to_numpy(), "day": day, "amount": amount.to_numpy(float)})
    out = out.groupby(["customer_id", "day"], as_index=False, sort=True)["amount"].sum()
    n = out["customer_id"].nunique()
    if n < 2:
        raise ScenarioError(f"{src}: expected transactions of at least 2 customers (got {n})")
    return out


# --------------------------------------------------------------------------- segmenting


@dataclass(frozen=True)
class _Features:
    n: np.ndarray
    first: np.ndarray
    x: np.ndarray  # (customers, 2): log repeat rate, mean log amount
    mean_log: np.ndarray
    var_log: np.ndarray  # within-customer variance of log amounts (NaN below 2 occasions)
    gap_cv2: np.ndarray  # within-customer squared CV of gaps (NaN below 3 occasions)
    active: np.ndarray  # log purchase rate between first and last occasion (NaN below 3 occasions)
    lapse: np.ndarray  # recency at the end over exposure since the first occasion
    early: np.ndarray  # log(1 + repeats in the EARLY_DAYS after the first occasion) (NaN: seen too late)


def _warmup(first: np.ndarray, days: int) -> int:
    """Days after which customers first seen are taken as acquired in the window.

    Existing customers are first seen at a falling rate (each within about one of its gaps);
    acquisitions at a steady one. The steady rate is the last third's; the warm-up ends at the
    first week after which customers first seen exceed that rate by at most a tenth of them (so
    few slow existing customers pass for new ones). At most half the window.
    """
    tail = days - days // 3
    rate = float((first >= tail).sum()) / max(days - tail, 1)
    for t in range(0, days // 2, 7):
        after = float((first > t).sum())
        if after - rate * (days - 1 - t) <= 0.1 * after:
            return t
    return days // 2


def _features(occ: pd.DataFrame, end: int) -> _Features:
    df = occ.assign(la=np.log(np.maximum(occ["amount"].to_numpy(), 0.01)))
    df["gap"] = df.groupby("customer_id")["day"].diff()
    g = df.groupby("customer_id", sort=True)
    first, last, n = g["day"].min().to_numpy(), g["day"].max().to_numpy(), g["day"].count().to_numpy()
    exposure = end - first + 1.0
    mean_log = g["la"].mean().to_numpy()
    gm, gv = g["gap"].mean().to_numpy(), g["gap"].var().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        cv2 = np.where(n >= 3, gv / gm**2, np.nan)
    # Segments by frequency and spend only: lapse mixes behaviour with luck (and with the hazard
    # being fitted), so it is matched as a moment instead of used to draw the boundaries.
    x = np.column_stack([np.log((n - 1 + 0.5) / exposure), mean_log])
    with np.errstate(invalid="ignore", divide="ignore"):
        active = np.where(n >= 3, np.log((n - 2) / (last - first + 1.0)), np.nan)
    # Repeats soon after a customer is first seen: for acquired customers, their behaviour while new.
    soon = (df["day"].to_numpy() - np.repeat(first, n)) <= _EARLY_DAYS
    early_n = np.bincount(np.repeat(np.arange(len(n)), n), weights=soon, minlength=len(n)) - 1.0
    early = np.where(first <= end - _EARLY_DAYS, np.log1p(early_n), np.nan)
    return _Features(n, first, x, mean_log, g["la"].var().to_numpy(), cv2, active, (end - last) / exposure, early)


def _kmeans(x: np.ndarray, k: int, seed: int, *, iters: int = 100) -> np.ndarray:
    """Centroids by Lloyd's algorithm from a k-means++ start (deterministic given the seed)."""
    rng = np.random.default_rng(seed)
    cent = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(cent)[None]) ** 2).sum(-1), axis=1)
        cent.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    c = np.asarray(cent, float)
    for _ in range(iters):
        lab = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


@dataclass(frozen=True)
class _Segmenter:
    """Assigns customers of any log (real or simulated) to the fitted segments."""

    mu: np.ndarray
    sd: np.ndarray
    centroids: np.ndarray
    names: tuple[str, ...]  # one per centroid
    late_day: int | None  # first purchase after this day: an acquired new customer

    def __call__(self, f: _Features) -> np.ndarray:
        z = (f.x - self.mu) / self.sd
        lab = np.asarray(self.names, dtype=object)[np.argmin(((z[:, None, :] - self.centroids[None]) ** 2).sum(-1), 1)]
        if self.late_day is not None:
            lab[f.first > self.late_day] = "new_customer"
        return lab


def _name_clusters(z: np.ndarray, lab: np.ndarray, first: np.ndarray, k: int) -> tuple[str, ...]:
    """The guide's names by the clusters' behaviour (see the module docstring)."""
    left = list(range(k))
    names: dict[int, str] = {}

    def pick(score: np.ndarray, name: str) -> None:
        j = max(left, key=lambda i: score[i])
        names[j] = name
        left.remove(j)

    mean = np.array([z[lab == j].mean(0) for j in range(k)])
    if k == 4:
        pick(np.array([first[lab == j].mean() for j in range(k)]), "new_customer")
    pick(mean[:, 0], "young_active")
    if len(left) >= 2:
        pick(mean[:, 1], "mid_stable")
    if left:
        names[left.pop()] = "senior_declining" if k > 1 else "mid_stable"
    return tuple(names[j] for j in range(k))


def _segmenter(f: _Features, *, segments: int, late_day: int | None, seed: int) -> _Segmenter:
    mu, sd = f.x.mean(0), f.x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (f.x - mu) / sd
    early = np.ones(len(z), bool) if late_day is None else f.first <= late_day
    k = max(1, min(segments - (late_day is not None), 4, int(early.sum())))
    cent = _kmeans(z[early], k, seed)
    lab = np.argmin(((z[early][:, None, :] - cent[None]) ** 2).sum(-1), 1)
    return _Segmenter(mu, sd, cent, _name_clusters(z[early], lab, f.first[early], k), late_day)


# --------------------------------------------------------------------------- moments


@dataclass(frozen=True)
class _Moments:
    count: dict[str, int]
    repeats: dict[str, float]
    lapse: dict[str, float]
    first: dict[str, float]  # median days from the window's start to the first purchase
    active: dict[str, float]  # mean log purchase rate while active (between first and last, 3+ purchases)
    early: dict[str, float]  # mean log(1 + repeats in the EARLY_DAYS after the first purchase)
    mean_log: dict[str, float]
    within_sd: dict[str, float]
    gap_cv2: dict[str, float]
    n: int
    excess: float  # (var - mean) / mean^2 of repeat counts: heterogeneity beyond Poisson
    trend: dict[str, float]  # repeat occasions in the second half of the window over the first half
    late: float  # share of customers first seen after the warm-up
    between_sd: float  # sd of customers' mean log amount
    weekday: np.ndarray
    yearly: np.ndarray  # see _yearly


def _moments(occ: pd.DataFrame, f: _Features, seg: _Segmenter, *, start: int, end: int, warmup: int) -> _Moments:
    lab = seg(f)
    rep = f.n - 1.0

    def per(values: np.ndarray) -> dict[str, float]:
        out = {}
        for name in SEGMENTS:
            m = (lab == name) & ~np.isnan(values)
            out[name] = float(values[m].mean()) if m.any() else math.nan
        return out

    mid = start + (end - start) / 2
    occ_sorted = occ.sort_values(["customer_id", "day"], kind="stable")
    is_rep = occ_sorted["customer_id"].duplicated().to_numpy()
    d = occ_sorted["day"].to_numpy()[is_rep]
    # occ is sorted by customer like f's arrays: each repeat's customer's label
    who = lab[np.repeat(np.arange(len(f.n)), f.n)][is_rep]
    wd = np.bincount((occ["day"].to_numpy() + 3) % 7, minlength=7)
    return _Moments(
        count={name: int((lab == name).sum()) for name in SEGMENTS},
        repeats=per(rep),
        lapse=per(f.lapse),
        active=per(f.active),
        early=per(f.early),
        first={k: float(np.median(f.first[(lab == k) & (f.first <= start + warmup)] - start))
               if ((lab == k) & (f.first <= start + warmup)).any() else math.nan for k in SEGMENTS},
        mean_log=per(f.mean_log),
        within_sd=per(np.sqrt(f.var_log)),
        gap_cv2=per(f.gap_cv2),
        n=len(f.n),
        excess=float((rep.var() - rep.mean()) / max(rep.mean(), 1e-9) ** 2),
        trend={k: float((((d >= mid) & (who == k)).sum() + 1) / (((d < mid) & (who == k)).sum() + 1))
               for k in SEGMENTS},
        late=float((f.first > start + warmup).mean()),
        between_sd=float(f.mean_log.std()),
        weekday=wd / max(wd.sum(), 1),
        yearly=_yearly(d, start, end),
    )


def _step(real: float, sim: float, *, power: float = 1.0) -> float:
    """A damped, bounded multiplicative step towards ``real`` from ``sim``."""
    if not (real > 0 and sim > 0) or math.isnan(real) or math.isnan(sim):
        return 1.0
    return math.exp(max(-_MAX_STEP, min(_MAX_STEP, _DAMP * power * math.log(real / sim))))


# --------------------------------------------------------------------------- the scenario


@dataclass
class _Params:
    size: int
    shares: dict[str, float]
    acquisition: float
    rate: dict[str, float]
    decay: dict[str, float]
    hazard: dict[str, float]
    regularity: dict[str, float]
    spend_median: dict[str, float]
    spend_sigma: dict[str, float]
    het_shape: float
    het_spend_sigma: float
    weekly: np.ndarray
    yearly: np.ndarray  # cosine and sine coefficients of the yearly cycle
    graduation_days: float
    window_days: int | None = None  # set: a single cohort acquired over this many days, first purchase at signup
    window_shape: float = 1.0  # the cohort's acquisition.window_shape
    leave: float = 0.0  # dropout_per_purchase (every segment)
    leave_concentration: float | None = None  # heterogeneity.dropout_concentration


def _scenario(p: _Params, *, name: str, seed: int, start: dt.date, days: int, source: str,
              scale: int = 1) -> Scenario:
    total = sum(p.shares.values())
    shares = {k: v / total for k, v in p.shares.items()}
    shares["new_customer"] = max(shares["new_customer"], p.acquisition)
    total = sum(shares.values())
    shares = {k: round(v / total, 6) for k, v in shares.items()}
    shares["mid_stable"] = round(1.0 - sum(v for k, v in shares.items() if k != "mid_stable"), 6)
    acq = min(round(p.acquisition, 6), shares["new_customer"])
    segs = {
        k: {"share": shares[k], "purchase_rate": round(max(p.rate[k], 1e-5), 6),
            "decay_per_year": round(p.decay[k], 4), "dropout_hazard": round(min(max(p.hazard[k], 0.0), 1.0), 7),
            "dropout_per_purchase": round(min(max(p.leave, 0.0), 1.0), 6),
            "regularity": round(min(max(p.regularity[k], 1.0), 100.0), 3),
            "spend_median": round(min(max(p.spend_median[k], 0.01), 5000.0), 2),
            "spend_sigma": round(min(max(p.spend_sigma[k], 0.0), 3.0), 4)}
        for k in SEGMENTS
    }
    data: dict[str, Any] = {
        "name": name,
        "description": f"Calibrated from {source} by sim.fitting.calibrate.",
        "seed": seed,
        "calendar": {"start_date": start.isoformat(), "days": days},
        "seasonality": {"weekly": [round(float(w), 4) for w in p.weekly / p.weekly.mean()],
                        "yearly_amplitude": round(min(float(np.hypot(*p.yearly)), 0.5), 4),
                        "yearly_peak_day": int(round(math.atan2(p.yearly[1], p.yearly[0]) * 365.25 / (2 * np.pi))) % 365 + 1},
        "population": {
            "size": int(p.size) * scale, "shard_size": max(50_000, int(p.size) * scale),
            "segments": segs,
            "heterogeneity": {"shape": round(min(max(p.het_shape, 0.1), 1000.0), 4), "spend_correlation": 0.0,
                              "spend_sigma": round(min(max(p.het_spend_sigma, 0.0), 3.0), 4),
                              "dropout_concentration": None if p.leave_concentration is None
                              else round(min(max(p.leave_concentration, 1e-3), 1e6), 4)},
            "acquisition": _acquisition(p, acq),
        },
        "notes": {
            "source": f"segments, rates, spend, dropout and seasonality fitted to {source} "
                      "by simulation-based moment matching (sim.fitting)",
            "population.size": "sized so the simulated log has as many buying customers as the real one",
            "population.heterogeneity.spend_correlation": "not fitted: 0",
            "targets": "left unset on purpose: the fitted rates are used as they are",
        },
    }
    return scenario_from_dict(data, source="calibrate")


def _acquisition(p: _Params, share: float) -> dict[str, Any]:
    out: dict[str, Any] = {"share": share, "graduation_days": round(p.graduation_days, 1)}
    if p.window_days is not None:
        out.update(window_days=int(p.window_days), window_shape=p.window_shape, first_purchase_at_signup=True,
                   mix={"young_active": 0.0, "mid_stable": 1.0, "senior_declining": 0.0})
    return out


def _is_cohort(f: _Features, *, start: int, days: int) -> bool:
    """Whether the log is one acquisition cohort: nearly every first purchase early in the window.

    A steady population's first purchases spread over its slow buyers' gaps and its acquisitions
    over the whole window; a cohort's all fall in a short opening stretch.
    """
    return float(np.percentile(f.first - start, 95)) < _COHORT_SPAN * days


def _acquired_starts(occ: pd.DataFrame, f: _Features, real: _Moments, *, start: int, end: int,
                     days: int) -> list[_Params]:
    """Everyone acquired over the span of first purchases, buying at signup; rates from a BG/NBD fit.

    The engine can be BG/NBD exactly: purchasing is Poisson at a gamma-distributed rate (r and
    alpha give heterogeneity and rate) and ``dropout_per_purchase`` with a Beta concentration is
    its dropout (Beta(a, b) chance of leaving after each repeat purchase). Without lifetimes, the
    repeat rate and a recency hazard start the search instead.
    """
    from sim.fit_report import _bgnbd

    window = int(f.first.max() - start + 1)
    bg = _bgnbd(occ, end)
    exposure = end - f.first + 1.0
    rate = max(float((f.n - 1).sum() / exposure.sum()), 1.0 / days)
    shape, hazard, leave, concentration = 1.0, 0.2 * rate, 0.0, None
    if bg is not None and min(bg.values()) > 0:
        shape, rate = bg["r"], bg["r"] / bg["alpha"]
        hazard, leave, concentration = 0.0, bg["a"] / (bg["a"] + bg["b"]), bg["a"] + bg["b"]
    within = float(np.nanmean(f.var_log)) if np.isfinite(f.var_log).any() else 0.25
    between = max(real.between_sd**2 - within / 2, 0.0)
    mu, sd = _lognormal_by_ks(occ["amount"].to_numpy(float))
    # The moments split the spread between and within customers; the KS fit sets its total.
    k = sd / math.sqrt(max(within + between, 1e-9))
    med, within, between = math.exp(mu), within * k * k, between * k * k
    weekly = np.maximum(real.weekday * 7, 0.05)
    p = _Params(size=real.n, shares={k: float(k == "new_customer") for k in SEGMENTS}, acquisition=1.0,
                rate=dict.fromkeys(SEGMENTS, rate), decay=dict.fromkeys(SEGMENTS, 0.0), hazard=dict.fromkeys(SEGMENTS, hazard),
                regularity=dict.fromkeys(SEGMENTS, 1.0), spend_median=dict.fromkeys(SEGMENTS, med),
                spend_sigma=dict.fromkeys(SEGMENTS, math.sqrt(within)), het_shape=shape,
                het_spend_sigma=math.sqrt(between),
                weekly=weekly, yearly=np.zeros(2), graduation_days=_NEVER_GRADUATE, window_days=window,
                window_shape=_window_shape(f.first - start, window), leave=leave,
                leave_concentration=concentration)
    if leave == 0:
        return [p]
    by_recency = copy.deepcopy(p)
    by_recency.hazard = dict.fromkeys(SEGMENTS, leave * rate)  # about BG/NBD's chance per mean gap
    by_recency.leave, by_recency.leave_concentration = 0.0, None
    return [p, by_recency]


def _window_shape(first: np.ndarray, window: int) -> float:
    """Maximum-likelihood ``window_shape`` of first-purchase days (0-based) in a ``window``-day window.

    The share acquired by fraction x of the window is x ** (1 / window_shape); a day's probability is
    the CDF's step over it (a continuous fit biases front-loaded shapes, most mass being on day 0).
    """
    from scipy.optimize import minimize_scalar

    days = np.bincount(np.clip(np.asarray(first, np.int64), 0, window - 1), minlength=window)
    if days.sum() == 0:
        return 1.0
    edges = np.arange(window + 1) / window

    def nll(log_shape: float) -> float:
        step = np.diff(edges ** math.exp(-log_shape))
        return -float((days * np.log(np.maximum(step, 1e-300))).sum())

    best = minimize_scalar(nll, bounds=(math.log(0.1), math.log(10.0)), method="bounded",
                           options={"xatol": 1e-4})
    return round(math.exp(best.x), 3)


def _lognormal_by_ks(amounts: np.ndarray) -> tuple[float, float]:
    """Log-normal (mean, sd of log) closest to the amounts in KS distance.

    Real amounts are not log-normal (price points, a floor); moments fit the bulk poorly where KS
    judges it, so the KS distance itself is minimised.
    """
    from scipy.optimize import minimize
    from scipy.stats import norm

    x = np.sort(np.log(np.maximum(amounts, 0.01)))
    emp_hi = np.arange(1, len(x) + 1) / len(x)
    emp_lo = np.arange(len(x)) / len(x)

    def dist(v: np.ndarray) -> float:
        c = norm.cdf(x, v[0], math.exp(v[1]))
        return float(max(np.max(emp_hi - c), np.max(c - emp_lo)))

    x0 = np.array([float(np.median(x)), math.log(max(float(x.std()), 1e-3))])
    got = minimize(dist, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-4, "maxfev": 400})
    return float(got.x[0]), math.exp(float(got.x[1]))


def _yearly(d: np.ndarray, start: int, end: int) -> np.ndarray:
    """Cosine and sine coefficients of a yearly cycle in log daily counts of repeat purchases (on
    days ``d``), net of a linear trend; zero below a year. Biased by the window's start-up and by
    decay alike in a real and a simulated log, so it is matched between them rather than read off."""
    if end - start + 1 < 365:
        return np.zeros(2)
    days = np.arange(start, end + 1)
    y = np.log(np.bincount(d - start, minlength=len(days))[: len(days)] + 1.0)
    t = (days - start) / (end - start)
    doy = (days.astype("datetime64[D]") - days.astype("datetime64[D]").astype("datetime64[Y]")).astype(np.int64) + 1
    w = 2 * np.pi * doy / 365.25
    a = np.column_stack([np.ones_like(t), t, np.cos(w), np.sin(w)])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef[2:4]


def _initial(real: _Moments, f: _Features, lab: np.ndarray, *, end: int, days: int, warmup: int) -> _Params:
    exposure = end - f.first + 1.0
    rate, reg, med, sig = {}, {}, {}, {}
    for name in SEGMENTS:
        m = lab == name
        by_repeats = float((f.n[m] - 1).sum() / exposure[m].sum()) if m.any() else 0.01
        rate[name] = max(by_repeats, 1.0 / days)
        cv2 = real.gap_cv2[name]
        reg[name] = 1.0 / cv2 if cv2 > 0 else 1.0
        med[name] = math.exp(real.mean_log[name]) if not math.isnan(real.mean_log[name]) else 50.0
        sig[name] = real.within_sd[name] if not math.isnan(real.within_sd[name]) else 0.5
    acq = min(real.late * days / max(days - warmup, 1), 0.9)
    shares = {k: real.count[k] / real.n for k in SEGMENTS}
    within = np.nanmean([real.within_sd[k] ** 2 / 2 for k in SEGMENTS]) if real.n else 0.0
    weekly = np.maximum(real.weekday * 7, 0.05)
    return _Params(size=real.n, shares=shares, acquisition=acq, rate=rate, decay=dict.fromkeys(SEGMENTS, 0.1),
                   hazard=dict.fromkeys(SEGMENTS, 0.001), regularity=reg, spend_median=med, spend_sigma=sig,
                   het_shape=2.0, het_spend_sigma=math.sqrt(max(real.between_sd**2 - within, 0.0)),
                   weekly=weekly, yearly=real.yearly,
                   graduation_days=90.0 if acq > 0 else _NEVER_GRADUATE)


def _update(p: _Params, real: _Moments, sim: _Moments, *, half_years: float) -> None:
    """Fixed-point steps for everything but rates and hazards (each moment moves one parameter)."""
    for k in SEGMENTS:
        if real.count[k] == 0:
            continue
        p.regularity[k] = min(max(p.regularity[k] * _step(sim.gap_cv2[k], real.gap_cv2[k]), 1.0), 100.0)
        p.spend_median[k] *= _step(math.exp(real.mean_log[k]), math.exp(sim.mean_log[k]))
        p.spend_sigma[k] *= _step(real.within_sd[k], sim.within_sd[k])
    if real.late > 0:
        p.acquisition = min(max(p.acquisition, 1e-3) * _step(real.late, max(sim.late, 1e-4)), 0.9)
    for k in SEGMENTS:
        p.decay[k] = min(max(p.decay[k] + _DAMP * math.log(sim.trend[k] / real.trend[k]) / half_years, 0.0), 20.0)
    p.het_shape = min(max(p.het_shape * _step(max(sim.excess, 1e-3), max(real.excess, 1e-3)), 0.1), 1000.0)
    p.het_spend_sigma *= _step(real.between_sd, sim.between_sd)
    p.yearly = p.yearly + _DAMP * (real.yearly - sim.yearly)
    p.weekly = p.weekly * np.array([_step(r, s) for r, s in zip(real.weekday, sim.weekday, strict=True)])


def _confusion(cust: pd.DataFrame, buyers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """P(a customer of true segment j is seen with label l) in a simulation, shape (4, 4)."""
    seg = cust["segment"].to_numpy()
    members = np.array([(seg == k).sum() for k in SEGMENTS], float)
    true = pd.Series(seg, index=cust["customer_id"].to_numpy()).loc[buyers].to_numpy()
    lab = {k: i for i, k in enumerate(SEGMENTS)}
    counts = np.zeros((len(SEGMENTS), len(SEGMENTS)))
    np.add.at(counts, ([lab[t] for t in true], [lab[x] for x in labels]), 1.0)
    return counts / np.maximum(members, 1.0)[:, None]


def _reweigh(p: _Params, real: _Moments, conf: np.ndarray, *, cap: float) -> None:
    """Shares and size that reproduce the real label counts through the simulation's confusion.

    A segment's customers can be seen with another segment's label, or not at all (never bought in
    the window): the counts per true segment are solved for by non-negative least squares.
    """
    from scipy.optimize import nnls

    n_real = np.array([real.count[k] for k in SEGMENTS], float)
    ok = conf.sum(1) > 0
    m = np.zeros(len(SEGMENTS))
    m[ok], _ = nnls(conf[ok].T, n_real)
    if m.sum() <= 0:
        return
    old = np.array([p.shares[k] for k in SEGMENTS]) * p.size
    new = np.exp(np.log(np.maximum(old, 1.0)) * (1 - _DAMP) + np.log(np.maximum(m, 1.0)) * _DAMP)
    new[~ok] = old[~ok]
    # Early on, another segment's misfit can make a segment look unneeded; once at zero it would
    # get no signal back, so a labelled segment keeps a floor.
    new = np.maximum(new, 0.3 * n_real)
    new[n_real == 0] = 0.0
    p.size = int(min(max(round(new.sum()), 2), cap * real.n))
    p.shares = {k: float(v / new.sum()) for k, v in zip(SEGMENTS, new, strict=True)}


def _residuals(real: _Moments, sim: _Moments) -> np.ndarray:
    """Per segment: repeats, lapse, rate while active, repeats soon after the first purchase and
    first-purchase delay; then buyers. Real minus simulated."""
    out = []
    for k in SEGMENTS:
        pairs = [(math.log(real.repeats[k] + 0.1), math.log(sim.repeats[k] + 0.1)),
                 (3.0 * real.lapse[k], 3.0 * sim.lapse[k]),
                 (real.active[k], sim.active[k]),
                 (real.early[k], sim.early[k]),
                 (math.log(real.first[k] + 1.0), math.log(sim.first[k] + 1.0))]
        out += [0.0 if (math.isnan(r) or math.isnan(m)) else r - m for r, m in pairs]
    # The population is capped near the number of buyers, so the buyers have to appear.
    out.append(2.0 * math.log(real.n / max(sim.n, 1)))
    return np.asarray(out)


def _rate_hazard_step(p: _Params, real: _Moments, moments_of: Callable[[_Params], Any], *, min_rate: float) -> None:
    """One Levenberg-Marquardt step on every segment's log rate and log hazard.

    Rate and hazard act on all four moments at once (a low rate and early lapsing both mean few
    repeats), and through misclassification on other segments' moments too, so they are moved
    together along a finite-difference Jacobian rather than one moment each.
    """
    base = moments_of(p)
    if base is None:
        return
    r0 = _residuals(real, base[0])
    keys = [("rate", k) for k in SEGMENTS] + [("hazard", k) for k in SEGMENTS]
    jac = np.zeros((len(r0), len(keys)))
    for j, (what, k) in enumerate(keys):
        if p.shares[k] <= 0:
            continue
        q = copy.deepcopy(p)
        getattr(q, what)[k] = max(getattr(p, what)[k], 1e-6) * math.exp(_FD_STEP)
        got = moments_of(q)
        if got is not None:
            jac[:, j] = (r0 - _residuals(real, got[0])) / _FD_STEP  # d(simulated moment)/d(log param)
    jtj = jac.T @ jac
    lam = 0.1 * np.trace(jtj) / len(keys) + 1e-9
    dx = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-6), jac.T @ r0)
    dx = np.clip(dx, -_MAX_STEP, _MAX_STEP)
    for (what, k), d in zip(keys, dx, strict=True):
        v = max(getattr(p, what)[k], 1e-6) * math.exp(d)
        getattr(p, what)[k] = max(v, min_rate) if what == "rate" else min(v, 0.5)


# A fit is judged by each distance against its own bar: total variation of repeat counts within
# 0.05, KS distances within 0.10, the weekly cumulative repeat curve within 10 %.
_BARS = {"tvd_repeat": 0.05, "ks_gap": 0.10, "ks_recency": 0.10, "cum_repeat_max_rel_err_after_5pct": 0.10}


def _score(d: Mapping[str, float]) -> float:
    """The sum of the distances, each relative to its bar (a max over them chases simulation noise
    in the cumulative curve, and fresh seeds then fit worse)."""
    r = [min(d[k] if d[k] == d[k] else 1.0, 1.0) / bar for k, bar in _BARS.items()]
    return (sum(r) + d["ks_amount"] / 0.10
            + 30.0 * max(d["buyers_rel_err"] - 0.15, 0.0))  # a fit made of invisible never-buyers is not a fit


def calibrate(
    df: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    segments: int = 4,
    seed: int = 42,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    iterations: int = 8,
    search: int = 20,
    model: str = "auto",
    name: str = "calibrated",
) -> Scenario:
    """Fit a scenario to a real transaction log.

    Args:
        df: transactions with a customer id, a date and an amount per row (see :func:`read_log`).
        columns: maps ``customer_id``/``date``/``amount`` to ``df``'s column names.
        segments: how many segments to find (1-4), named with the guide's four names.
        seed: the fitted scenario's seed, also seeding the segmentation and every fitting simulation.
        start_date: first day of the window (default: the log's first date); earlier rows are dropped.
        end_date: last day of the window (default: the log's last date); later rows are dropped.
        iterations: simulate-and-correct rounds of the per-segment moment matching.
        search: simulations allowed for the final Nelder-Mead search on common scales (0: none).
        model: ``steady`` (a customer base in segments, plus acquisitions), ``acquired`` (every
            customer acquired in the window at its first purchase) or ``auto`` (the better fit).
        name: the scenario's name.

    Returns:
        A validated :class:`~sim.scenario.Scenario` with no ``targets``, on the log's calendar.

    Raises:
        ScenarioError: the log is unusable (see :func:`occasions`) or an option is out of range.
    """
    src = str(df.attrs.get("source", "log")) if isinstance(df, pd.DataFrame) else "log"
    if not 1 <= segments <= 4:
        raise ScenarioError(f"segments: expected 1 to 4 (got {segments})")
    if model not in MODELS:
        raise ScenarioError(f"model: expected one of {', '.join(MODELS)} (got {model!r})")
    occ = occasions(df, columns=columns)
    lo = int(occ["day"].min()) if start_date is None else (start_date - dt.date(1970, 1, 1)).days
    hi = int(occ["day"].max()) if end_date is None else (end_date - dt.date(1970, 1, 1)).days
    occ = occ[(occ["day"] >= lo) & (occ["day"] <= hi)]
    if hi <= lo or occ["customer_id"].nunique() < 2:
        raise ScenarioError(f"{src}: expected a window with purchases of at least 2 customers "
                            f"(got {occ['customer_id'].nunique()} between day {lo} and {hi})")
    start, end, days = lo, hi, hi - lo + 1
    f = _features(occ, end)
    warmup = _warmup(f.first - start, days)
    late = f.first > start + warmup
    late_day = start + warmup if segments > 1 and late.mean() > 0.005 else None
    seg = _segmenter(f, segments=segments, late_day=late_day, seed=seed)
    real = _moments(occ, f, seg, start=start, end=end, warmup=warmup)
    p = _initial(real, f, seg(f), end=end, days=days, warmup=warmup)
    start_d = dt.date(1970, 1, 1) + dt.timedelta(days=start)
    real_stats = log_stats(occ, start=start, end=end)
    runs: list[tuple[float, _Params]] = []

    def simulate(q: _Params, scale: int = 1) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """The candidate's log and customers; None when fewer than 2 customers bought."""
        sim_occ, sim_cust = simulated_log(_scenario(q, name=name, seed=seed, start=start_d, days=days,
                                                    source=src, scale=scale))
        return None if sim_occ["customer_id"].nunique() < 2 else (sim_occ, sim_cust)

    def evaluate(q: _Params, *, scale: int = 1) -> float:
        """Score a candidate and keep it among the runs the best is picked from."""
        got = simulate(q, scale)
        if got is None:
            return math.inf
        sim_stats = log_stats(got[0], start=start, end=end)
        dist = distances(real_stats, sim_stats)
        dist["buyers_rel_err"] = abs(sim_stats.n_customers / scale - real_stats.n_customers) / real_stats.n_customers
        runs.append((_score(dist), copy.deepcopy(q)))
        log.info("calibration run %d: score %.4f %s", len(runs), runs[-1][0], {k: round(v, 4) for k, v in dist.items()})
        return runs[-1][0]

    def moments_of(q: _Params) -> tuple[_Moments, np.ndarray, pd.DataFrame, pd.DataFrame] | None:
        got = simulate(q)
        if got is None:
            return None
        sim_occ, sim_cust = got
        sf = _features(sim_occ, end)
        return _moments(sim_occ, sf, seg, start=start, end=end, warmup=warmup), seg(sf), sim_occ, sim_cust

    if model == "steady" or (model == "auto" and not _is_cohort(f, start=start, days=days)):
        min_rate = 1.0 / days
        iterates = []
        for _ in range(iterations):
            got = moments_of(p)
            if got is None:
                p.rate = {k: v * 3 for k, v in p.rate.items()}
                continue
            sim, labels, sim_occ, sim_cust = got
            _update(p, real, sim, half_years=days / 2 / 365.0)
            _rate_hazard_step(p, real, moments_of, min_rate=min_rate)
            _reweigh(p, real, _confusion(sim_cust, np.sort(sim_occ["customer_id"].unique()), labels),
                     cap=_MAX_SIZE_FACTOR)
            iterates.append(copy.deepcopy(p))
        # Each step chases one simulation's noise as well as the log: the mean of the later
        # iterates is the estimate (Polyak averaging).
        p = _average(iterates[len(iterates) // 2:]) if iterates else p
        evaluate(p)
        if search:
            _global_search(p, evaluate, budget=search)
    if model in ("acquired", "auto"):
        starts = _acquired_starts(occ, f, real, start=start, end=end, days=days)
        log.info("acquired model: acquisition window %d days (shape %.3f), first purchase at signup",
                 starts[0].window_days, starts[0].window_shape)
        exposure = float(np.mean(end - f.first + 1.0))
        # Simulating a bigger population than the log's keeps the search from fitting one small
        # simulation's luck (a few heavy buyers move a small log's totals by several per cent).
        scale = max(1, min(_MAX_SCALE, math.ceil(_FIT_CUSTOMERS / real.n)))
        for q in starts:
            if search:
                q = _early_phase(q, lambda x: evaluate(x, scale=scale), exposure=exposure, days=days)
                _global_search(q, lambda x: evaluate(x, scale=scale), budget=2 * search)
            else:
                evaluate(q, scale=scale)
    if not runs or math.isinf(min(r[0] for r in runs)):
        raise ScenarioError(f"{src}: calibration failed: no candidate scenario produced purchases")
    best = min(runs, key=lambda r: r[0])[1]
    return _scenario(best, name=name, seed=seed, start=start_d, days=days, source=src)


def _average(ps: list[_Params]) -> _Params:
    """The geometric mean of positive parameters (rates, shares, scales), the arithmetic mean of the rest."""
    out = copy.deepcopy(ps[-1])

    def mean(values: list[Any]) -> Any:
        a = np.asarray(values, float)
        return np.exp(np.log(a).mean(0)) if (a > 0).all() else a.mean(0)

    for field in ("rate", "hazard", "regularity", "spend_median", "spend_sigma", "shares", "decay"):
        setattr(out, field, {k: float(mean([getattr(q, field)[k] for q in ps])) for k in SEGMENTS})
    for field in ("acquisition", "het_shape", "het_spend_sigma"):
        setattr(out, field, float(mean([getattr(q, field) for q in ps])))
    out.size = int(round(float(mean([q.size for q in ps]))))
    out.weekly = mean([q.weekly for q in ps])
    out.yearly = np.mean([q.yearly for q in ps], axis=0)
    return out


def _scaled(p: _Params, x: np.ndarray) -> _Params:
    """``p`` with common log scales ``x``: rate, dropout, heterogeneity shape, then decay (steady
    state) or the cohort's early phase (its rate multiple and length) and gap regularity."""
    q = copy.deepcopy(p)
    q.rate = {k: v * math.exp(x[0]) for k, v in p.rate.items()}
    q.hazard = {k: min(v * math.exp(x[1]), 1.0) for k, v in p.hazard.items()}
    q.leave = min(p.leave * math.exp(x[1]), 1.0)
    q.het_shape = p.het_shape * math.exp(x[2])
    if p.window_days is None:
        q.decay = {k: min(max(v + x[3], 0.0), 20.0) for k, v in p.decay.items()}
    else:
        q.rate["new_customer"] *= math.exp(x[3])
        q.graduation_days = min(max(p.graduation_days * math.exp(x[4]), 14.0), _NEVER_GRADUATE)
        q.regularity = {k: min(max(v * math.exp(x[5]), 1.0), 100.0) for k, v in p.regularity.items()}
    return q


def _global_search(p: _Params, objective: Callable[[_Params], float], *, budget: int) -> None:
    """Nelder-Mead on the common scales of :func:`_scaled`.

    The per-segment fixed point matches each segment's own moments; when the model cannot match
    them all at once (a real log is not a simulation), this trades them off on the distances.
    """
    from scipy.optimize import minimize

    dims = 4 if p.window_days is None else 6
    minimize(lambda x: objective(_scaled(p, x)), np.zeros(dims), method="Nelder-Mead",
             options={"maxfev": budget, "initial_simplex": np.vstack([np.zeros(dims), 0.5 * np.eye(dims)]),
                      "xatol": 0.02, "fatol": 0.002})


def _early_phase(p: _Params, objective: Callable[[_Params], float], *, exposure: float, days: int) -> _Params:
    """The best early phase on a coarse grid, then the best gap regularity. In the early phase,
    customers buy at a multiple of the later rate for the first weeks after signup (as
    new_customer, then graduating to mid_stable).

    New customers often buy most right after their first purchase. BG/NBD has no such phase, and
    without it the cumulative repeat curve runs low in the first weeks and high later. Each point
    keeps the expected repeats over the mean exposure, so the grid compares shapes, not volumes.
    """
    best, best_score = p, objective(p)
    for boost in (1.5, 2.0, 3.0):
        for weeks in (4, 8, 16):
            g = min(7.0 * weeks, days / 2)
            q = copy.deepcopy(p)
            later = p.rate["mid_stable"] * exposure / (boost * g + max(exposure - g, 0.0))
            q.rate = dict.fromkeys(SEGMENTS, later)
            q.rate["new_customer"], q.graduation_days = boost * later, g
            score = objective(q)
            if score < best_score:
                best, best_score = q, score
    # Then how regular the gaps are (gamma shape; 1 is Poisson, BG/NBD's): it leaves the mean rate
    # as it is, so it is tried on the best point alone.
    base = best
    for shape in (1.5, 2.0, 3.0, 4.0, 6.0):
        q = copy.deepcopy(base)
        q.regularity = dict.fromkeys(SEGMENTS, shape)
        score = objective(q)
        if score < best_score:
            best, best_score = q, score
    return best
