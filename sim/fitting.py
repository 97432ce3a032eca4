"""Calibrating a scenario from a real transaction log.

The log is reduced to purchase occasions (one per customer and day). Customers are segmented by
k-means on log repeat rate, log spend and lapse (recency over exposure); customers first seen
after a warm-up window are the acquired ``new_customer`` segment. First guesses come from moments
of each segment; then a damped fixed-point iteration simulates the candidate scenario at the log's
size, classifies the simulated customers with the same segmenter, and moves each parameter by the
ratio of a real to a simulated moment (repeat purchases for the rate, recency for the dropout
hazard, the late/early repeat ratio for decay, gap dispersion for regularity, count dispersion for
heterogeneity, ...). Everything is keyed by the seed, so the fit is deterministic. The candidate
with the smallest summed distance is returned.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import ScenarioError
from sim.fit_report import distances, log_stats, simulated_log
from sim.scenario import Scenario, scenario_from_dict
from sim.segments import SEGMENTS

__all__ = ["calibrate", "occasions", "read_log"]

log = logging.getLogger(__name__)

CANONICAL = ("customer_id", "date", "amount")
_DAMP = 0.7  # share of a log-ratio step taken per iteration: full steps oscillate between coupled moments
_MAX_STEP = math.log(3.0)
_NEVER_GRADUATE = 3650.0


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
            df = pd.read_csv(p, sep=None, engine="python")
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
    x: np.ndarray  # (customers, 3): log repeat rate, mean log amount, lapse
    mean_log: np.ndarray
    var_log: np.ndarray  # within-customer variance of log amounts (NaN below 2 occasions)
    gap_cv2: np.ndarray  # within-customer squared CV of gaps (NaN below 3 occasions)


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
    x = np.column_stack([np.log((n - 1 + 0.5) / exposure), mean_log, (end - last) / exposure])
    return _Features(n, first, x, mean_log, g["la"].var().to_numpy(), cv2)


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
    mean_log: dict[str, float]
    within_sd: dict[str, float]
    gap_cv2: dict[str, float]
    n: int
    excess: float  # (var - mean) / mean^2 of repeat counts: heterogeneity beyond Poisson
    trend: float  # repeat occasions in the second half of the window over the first half
    late: float  # share of customers first seen after the warm-up
    between_sd: float  # sd of customers' mean log amount
    weekday: np.ndarray


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
    wd = np.bincount((occ["day"].to_numpy() + 3) % 7, minlength=7)
    return _Moments(
        count={name: int((lab == name).sum()) for name in SEGMENTS},
        repeats=per(rep),
        lapse=per(f.x[:, 2]),
        mean_log=per(f.mean_log),
        within_sd=per(np.sqrt(f.var_log)),
        gap_cv2=per(f.gap_cv2),
        n=len(f.n),
        excess=float((rep.var() - rep.mean()) / max(rep.mean(), 1e-9) ** 2),
        trend=float(((d >= mid).sum() + 1) / ((d < mid).sum() + 1)),
        late=float((f.first > start + warmup).mean()),
        between_sd=float(f.mean_log.std()),
        weekday=wd / max(wd.sum(), 1),
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
    decay: float
    hazard: dict[str, float]
    regularity: dict[str, float]
    spend_median: dict[str, float]
    spend_sigma: dict[str, float]
    het_shape: float
    het_spend_sigma: float
    weekly: np.ndarray
    yearly: tuple[float, int]
    graduation_days: float


def _scenario(p: _Params, *, name: str, seed: int, start: dt.date, days: int, source: str) -> Scenario:
    total = sum(p.shares.values())
    shares = {k: v / total for k, v in p.shares.items()}
    shares["new_customer"] = max(shares["new_customer"], p.acquisition)
    total = sum(shares.values())
    shares = {k: round(v / total, 6) for k, v in shares.items()}
    shares["mid_stable"] = round(1.0 - sum(v for k, v in shares.items() if k != "mid_stable"), 6)
    acq = min(round(p.acquisition, 6), shares["new_customer"])
    segs = {
        k: {"share": shares[k], "purchase_rate": round(max(p.rate[k], 1e-5), 6),
            "decay_per_year": round(p.decay, 4), "dropout_hazard": round(min(max(p.hazard[k], 0.0), 1.0), 7),
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
                        "yearly_amplitude": round(p.yearly[0], 4), "yearly_peak_day": int(p.yearly[1])},
        "population": {
            "size": int(p.size), "shard_size": max(50_000, int(p.size)),
            "segments": segs,
            "heterogeneity": {"shape": round(min(max(p.het_shape, 0.1), 1000.0), 4), "spend_correlation": 0.0,
                              "spend_sigma": round(min(max(p.het_spend_sigma, 0.0), 3.0), 4)},
            "acquisition": {"share": acq, "graduation_days": p.graduation_days},
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


def _yearly(occ: pd.DataFrame, start: int, end: int) -> tuple[float, int]:
    """Amplitude and peak day of a yearly cosine in daily repeat counts, net of a cubic trend."""
    if end - start + 1 < 365:
        return 0.0, 350
    occ_sorted = occ.sort_values(["customer_id", "day"], kind="stable")
    d = occ_sorted["day"].to_numpy()[occ_sorted["customer_id"].duplicated().to_numpy()]
    days = np.arange(start, end + 1)
    y = np.log(np.bincount(d - start, minlength=len(days))[: len(days)] + 1.0)
    t = (days - start) / (end - start)
    doy = (days.astype("datetime64[D]") - days.astype("datetime64[D]").astype("datetime64[Y]")).astype(np.int64) + 1
    w = 2 * np.pi * doy / 365.25
    a = np.column_stack([np.ones_like(t), t, t**2, t**3, np.cos(w), np.sin(w)])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    amp = float(np.hypot(coef[4], coef[5]))
    peak = int(round(math.atan2(coef[5], coef[4]) * 365.25 / (2 * np.pi))) % 365 + 1
    return min(amp, 0.5), peak


def _initial(real: _Moments, f: _Features, lab: np.ndarray, *, end: int, days: int, warmup: int,
             occ: pd.DataFrame, start: int) -> _Params:
    exposure = end - f.first + 1.0
    rate, reg, med, sig = {}, {}, {}, {}
    for name in SEGMENTS:
        m = lab == name
        rate[name] = max(float((f.n[m] - 1).sum() / exposure[m].sum()) if m.any() else 0.01, 1e-4)
        cv2 = real.gap_cv2[name]
        reg[name] = 1.0 / cv2 if cv2 > 0 else 1.0
        med[name] = math.exp(real.mean_log[name]) if not math.isnan(real.mean_log[name]) else 50.0
        sig[name] = real.within_sd[name] if not math.isnan(real.within_sd[name]) else 0.5
    acq = min(real.late * days / max(days - warmup, 1), 0.9)
    shares = {k: real.count[k] / real.n for k in SEGMENTS}
    within = np.nanmean([real.within_sd[k] ** 2 / 2 for k in SEGMENTS]) if real.n else 0.0
    weekly = np.maximum(real.weekday * 7, 0.05)
    return _Params(size=real.n, shares=shares, acquisition=acq, rate=rate, decay=0.1,
                   hazard=dict.fromkeys(SEGMENTS, 0.001), regularity=reg, spend_median=med, spend_sigma=sig,
                   het_shape=2.0, het_spend_sigma=math.sqrt(max(real.between_sd**2 - within, 0.0)),
                   weekly=weekly, yearly=_yearly(occ, start, end),
                   graduation_days=90.0 if acq > 0 else _NEVER_GRADUATE)


def _update(p: _Params, real: _Moments, sim: _Moments, n_sim: int, *, half_years: float) -> None:
    p.size = max(2, int(round(p.size * real.n / max(n_sim, 1))))
    for k in SEGMENTS:
        if real.count[k] == 0:
            p.shares[k] = 0.0
            continue
        p.shares[k] = max(p.shares[k], 1e-4) * _step(real.count[k] / real.n, max(sim.count[k], 0.5) / sim.n)
        p.rate[k] *= _step(real.repeats[k] + 0.05, sim.repeats[k] + 0.05)
        p.hazard[k] = min(max(p.hazard[k], 1e-6) * _step(real.lapse[k], sim.lapse[k], power=1.5), 0.5)
        p.regularity[k] = min(max(p.regularity[k] * _step(sim.gap_cv2[k], real.gap_cv2[k]), 1.0), 100.0)
        p.spend_median[k] *= _step(math.exp(real.mean_log[k]), math.exp(sim.mean_log[k]))
        p.spend_sigma[k] *= _step(real.within_sd[k], sim.within_sd[k])
    if real.late > 0:
        p.acquisition = min(max(p.acquisition, 1e-3) * _step(real.late, max(sim.late, 1e-4)), 0.9)
    p.decay = min(max(p.decay + _DAMP * math.log(sim.trend / real.trend) / half_years, 0.0), 20.0)
    inv = 1.0 / p.het_shape + _DAMP * (real.excess - sim.excess)
    p.het_shape = 1.0 / min(max(inv, 1e-3), 10.0)
    p.het_spend_sigma *= _step(real.between_sd, sim.between_sd)
    p.weekly = p.weekly * np.array([_step(r, s) for r, s in zip(real.weekday, sim.weekday)])


def _score(d: Mapping[str, float]) -> float:
    cum = d["cum_repeat_max_rel_err_after_5pct"]
    return d["tvd_repeat"] + d["ks_gap"] + d["ks_recency"] + d["ks_amount"] + min(cum if cum == cum else 1.0, 1.0)


def calibrate(
    df: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    segments: int = 4,
    seed: int = 42,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    iterations: int = 8,
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
        iterations: simulate-and-correct rounds of the moment matching.
        name: the scenario's name.

    Returns:
        A validated :class:`~sim.scenario.Scenario` with no ``targets``, on the log's calendar.

    Raises:
        ScenarioError: the log is unusable (see :func:`occasions`) or an option is out of range.
    """
    src = str(df.attrs.get("source", "log")) if isinstance(df, pd.DataFrame) else "log"
    if not 1 <= segments <= 4:
        raise ScenarioError(f"segments: expected 1 to 4 (got {segments})")
    occ = occasions(df, columns=columns)
    lo = int(occ["day"].min()) if start_date is None else (start_date - dt.date(1970, 1, 1)).days
    hi = int(occ["day"].max()) if end_date is None else (end_date - dt.date(1970, 1, 1)).days
    occ = occ[(occ["day"] >= lo) & (occ["day"] <= hi)]
    if hi <= lo or occ["customer_id"].nunique() < 2:
        raise ScenarioError(f"{src}: expected a window with purchases of at least 2 customers "
                            f"(got {occ['customer_id'].nunique()} between day {lo} and {hi})")
    start, end, days = lo, hi, hi - lo + 1
    f = _features(occ, end)
    gaps = occ.groupby("customer_id")["day"].diff().dropna().to_numpy()
    # Existing customers make their first purchase within about one gap; later ones were acquired.
    warmup = int(min(np.percentile(gaps, 90) if len(gaps) else days, days / 3))
    late = f.first > start + warmup
    late_day = start + warmup if segments > 1 and late.mean() > 0.005 else None
    seg = _segmenter(f, segments=segments, late_day=late_day, seed=seed)
    real = _moments(occ, f, seg, start=start, end=end, warmup=warmup)
    p = _initial(real, f, seg(f), end=end, days=days, warmup=warmup, occ=occ, start=start)
    start_d = dt.date(1970, 1, 1) + dt.timedelta(days=start)
    real_stats = log_stats(occ, start=start, end=end)
    best: tuple[float, Scenario] | None = None
    for it in range(iterations + 1):
        scen = _scenario(p, name=name, seed=seed, start=start_d, days=days, source=src)
        sim_occ, _ = simulated_log(scen)
        if sim_occ["customer_id"].nunique() < 2:
            p.rate = {k: v * 3 for k, v in p.rate.items()}
            continue
        dist = distances(real_stats, log_stats(sim_occ, start=start, end=end))
        score = _score(dist)
        log.info("calibration round %d: score %.4f %s", it, score, {k: round(v, 4) for k, v in dist.items()})
        if best is None or score < best[0]:
            best = (score, scen)
        if it == iterations:
            break
        sf = _features(sim_occ, end)
        sim = _moments(sim_occ, sf, seg, start=start, end=end, warmup=warmup)
        _update(p, real, sim, len(sf.n), half_years=days / 2 / 365.0)
    if best is None:
        raise ScenarioError(f"{src}: calibration failed: no candidate scenario produced purchases")
    return best[1]
