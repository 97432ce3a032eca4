"""Behaviour trajectories as PNGs (matplotlib, Agg backend).

:func:`plot_all` writes, into one directory:

- ``activity.png``: active customers (30-day), daily revenue and daily transactions per segment,
  with interventions, drift onsets and experiment assignments as vertical lines;
- ``cohort_retention.png``: share of each acquisition-month cohort purchasing in each month since
  signup (the customers present at the start form one cohort, counted from the start);
- ``intensity_hazard.png``: purchases per active customer per day and the monthly dropout hazard
  (latent dropouts per alive customer per day) by segment;
- ``churn_vs_recency.png``: share churned 60 days later against today's recency, by segment;
- ``ab_arms.png``: purchases and revenue per customer per day in each experiment arm (only when
  the lake's labels carry experiment arms);
- ``customers.png`` (with ``customers=N``): N customers sampled by segment, one row each on a
  shared time axis: purchases sized by amount, segment changes, latent dropout, churned months.

:func:`figures` yields the same figures unsaved, for the HTML report (:mod:`analysis.report`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.ab import arm_daily  # noqa: E402
from analysis.features import load_inputs  # noqa: E402
from analysis.lake import read_table  # noqa: E402
from analysis.model import training_frame  # noqa: E402

__all__ = ["FIGURES", "LakeFrames", "figures", "has_experiment", "load_frames", "load_scenario_json",
           "ordered_segments", "plot_all", "plot_customers", "sample_customers"]

log = logging.getLogger(__name__)

SEGMENT_ORDER = ("young_active", "mid_stable", "senior_declining", "new_customer")
_EVENT_STYLE = {"intervention": ("tab:green", "--"), "drift": ("tab:red", ":"), "experiment": ("tab:purple", "-.")}
_DPI = 110
_SAMPLE_STREAM = 0x5EED  # the customer sample's own random stream, apart from the engine's
FIGURES = ("activity", "cohort_retention", "intensity_hazard", "churn_vs_recency", "ab_arms", "customers")


def load_scenario_json(lake: str | Path) -> dict[str, Any]:
    """``LAKE/_churnsim/scenario.json`` (empty dict when the lake has none)."""
    path = Path(lake) / "_churnsim" / "scenario.json"
    if not path.exists():
        log.warning("%s not found: plots carry no event markers", path)
        return {}
    return json.loads(path.read_text())


def _events(scenario: Mapping[str, Any]) -> list[tuple[pd.Timestamp, str, str]]:
    out = []
    for iv in scenario.get("interventions") or []:
        out.append((pd.Timestamp(iv["start"]), "intervention", iv["name"]))
    for d in scenario.get("drifts") or []:
        out.append((pd.Timestamp(d["start"]), "drift", d["name"]))
    for e in scenario.get("experiments") or []:
        out.append((pd.Timestamp(e["assign_date"]), "experiment", e["name"]))
    return out


def _mark(ax: Axes, events: list[tuple[pd.Timestamp, str, str]], *, label: bool) -> None:
    for when, kind, name in events:
        color, style = _EVENT_STYLE[kind]
        ax.axvline(when, color=color, linestyle=style, linewidth=1.2, label=f"{kind}: {name}" if label else None)


def ordered_segments(present: Any) -> list[str]:
    """The guide's four segments in its order, then any others sorted."""
    have = set(present)
    return [s for s in SEGMENT_ORDER if s in have] + sorted(have - set(SEGMENT_ORDER))


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def plot_activity(metrics: pd.DataFrame, events: list) -> Figure:
    """Active customers, revenue and transactions per segment over time."""
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    panels = [("active_customers_30d", "Active customers (purchase in last 30 days)", "customers", 1),
              ("revenue", "Daily revenue (7-day mean)", "revenue per day (currency units)", 7),
              ("transactions", "Daily transactions (7-day mean)", "transactions per day", 7)]
    for ax, (col, title, unit, win) in zip(axes, panels, strict=True):
        wide = metrics.pivot_table(index="metric_date", columns="segment", values=col, aggfunc="sum")
        for seg in ordered_segments(wide.columns):
            ax.plot(wide.index, wide[seg].rolling(win, min_periods=1).mean(), label=seg, linewidth=1.4)
        _mark(ax, events, label=ax is axes[0])
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[-1].set_xlabel("date")
    return fig


def plot_cohorts(customers: pd.DataFrame, transactions: pd.DataFrame, *, max_cohorts: int = 12,
                 start: dt.date | pd.Timestamp | None = None) -> Figure:
    """Share of each signup-month cohort purchasing in month k after signup.

    ``start`` is the simulation's first day (default the first transaction); history rows before
    it (initial customers' last purchases before the window) are left out.
    """
    first = pd.to_datetime(transactions["transaction_date"]).min() if start is None else pd.Timestamp(start)
    transactions = transactions[pd.to_datetime(transactions["transaction_date"]) >= first]
    start = first.to_period("M")
    c = customers[["customer_id", "customer_since_date"]].copy()
    since = pd.to_datetime(c["customer_since_date"]).dt.to_period("M")
    c["cohort"] = since.where(since >= start, start - 1)
    c["cohort_month"] = np.maximum((since - start).apply(lambda x: x.n), 0)
    t = transactions[["customer_id", "transaction_date"]].copy()
    t["month"] = (pd.to_datetime(t["transaction_date"]).dt.to_period("M") - start).apply(lambda x: x.n)
    t = t.drop_duplicates(["customer_id", "month"]).merge(c, on="customer_id")
    t["age"] = t["month"] - t["cohort_month"]
    sizes = c.groupby("cohort").size()
    active = t.groupby(["cohort", "age"]).size().unstack("age").fillna(0)
    last = int(t["month"].max())
    fig, ax = plt.subplots(figsize=(10, 6))
    cmap = plt.get_cmap("viridis")
    cohorts = [k for k in active.index if k >= start][:max_cohorts]
    for i, k in enumerate(cohorts):
        share = (active.loc[k] / sizes[k]).loc[: last - (k - start).n]  # months not yet observed are not zeros
        ax.plot(share.index, share.values, marker="o", markersize=3, color=cmap(i / max(len(cohorts) - 1, 1)),
                label=f"{k} (n={sizes[k]})")
    if (start - 1) in active.index:
        share = active.loc[start - 1] / sizes[start - 1]
        ax.plot(share.index, share.values, color="black", linewidth=2.2,
                label=f"present at start (n={sizes[start - 1]})")
    ax.set_title("Cohort retention: share of each signup-month cohort purchasing in month k")
    ax.set_xlabel("months since signup (customers present at the start: since the start)")
    ax.set_ylabel("share of cohort with a purchase in the month")
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, title="signup month")
    return fig


def plot_intensity_hazard(metrics: pd.DataFrame, labels: pd.DataFrame) -> Figure:
    """Purchases per active customer per day, and the monthly dropout hazard, per segment."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    m = metrics.groupby(["metric_date", "segment"])[["transactions", "active_customers_30d", "dropouts"]].sum()
    wide = m.unstack("segment")
    for seg in ordered_segments(wide["transactions"].columns):
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = wide["transactions"][seg] / wide["active_customers_30d"][seg].replace(0, np.nan)
        ax1.plot(rate.index, rate.rolling(7, min_periods=1).mean(), label=seg)
    ax1.set_title("Purchase intensity: purchases per active customer per day (7-day mean)")
    ax1.set_ylabel("purchases / active customer / day")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)

    lab = labels[["label_date", "segment", "dropped_out", "dropout_date"]].copy()
    lab["label_date"] = pd.to_datetime(lab["label_date"])
    dates = sorted(lab["label_date"].unique())
    alive = lab[~lab["dropped_out"].astype(bool)].groupby(["label_date", "segment"]).size().unstack("segment")
    drops = m["dropouts"].unstack("segment")
    month = drops.index.to_period("M")
    monthly = drops.groupby(month).sum()
    for seg in ordered_segments(alive.columns):
        xs, ys = [], []
        for i, d in enumerate(dates[1:], start=1):
            p = pd.Timestamp(d).to_period("M")
            at_risk = alive[seg].get(dates[i - 1], np.nan)
            days = pd.Timestamp(d).day
            if p in monthly.index and at_risk and np.isfinite(at_risk):
                xs.append(pd.Timestamp(d) - pd.Timedelta(days=days // 2))
                ys.append(monthly.loc[p, seg] / at_risk / days * 1000 if seg in monthly else np.nan)
        ax2.plot(xs, ys, marker="o", markersize=3, label=seg)
    ax2.set_title("Empirical dropout hazard by segment (latent dropouts / alive customers, per month)")
    ax2.set_ylabel("dropouts per 1,000 alive customers per day")
    ax2.set_xlabel("date")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return fig


def plot_churn_vs_recency(frame: pd.DataFrame) -> Figure:
    """Share churned 60 days later against recency today, by segment."""
    edges = np.array([0, 7, 14, 21, 30, 45, 60, 90, 120, 180, 365])
    mids = np.array([3.5, 10.5, 17.5, 25.5, 37.5, 52.5, 75, 105, 150, 272])
    fig, ax = plt.subplots(figsize=(10, 6))
    # Beyond a year the recency is counted from signup (no purchase seen in the lake): left out.
    frame = frame[frame["recency_days"] < edges[-1]]
    b = np.searchsorted(edges, frame["recency_days"].to_numpy(), side="right") - 1
    frame = frame.assign(bin=b)
    for seg in [*ordered_segments(frame["segment"].dropna().unique()), "all"]:
        g = frame if seg == "all" else frame[frame["segment"] == seg]
        rate = g.groupby("bin")["churned"].agg(["mean", "size"])
        rate = rate[rate["size"] >= 20]
        ax.plot(mids[rate.index], rate["mean"], marker="o", label=seg,
                color="black" if seg == "all" else None, linewidth=2.2 if seg == "all" else 1.4)
    ax.axvline(60, color="grey", linestyle="--", linewidth=1, label="60-day churn rule")
    ax.set_xscale("log")
    ax.set_title("Empirical churn rate against recency (churned 60 days later)")
    ax.set_xlabel("recency at the feature date (days since last purchase, log scale)")
    ax.set_ylabel("share churned at the label date")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def plot_ab(tables: Mapping[str, pd.DataFrame], scenario: Mapping[str, Any]) -> Figure:
    """Purchases and revenue per customer per day in each arm of each experiment over time."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    exps = list(scenario.get("experiments") or [])
    for e in exps:
        for arm, g in arm_daily(tables, experiment=e["name"]).groupby("arm"):
            label = arm if len(exps) == 1 else f"{e['name']}: {arm}"
            ax1.plot(g["date"], g["purchases_per_customer"].rolling(7, min_periods=1).mean(), label=label)
            ax2.plot(g["date"], g["revenue_per_customer"].rolling(7, min_periods=1).mean(), label=label)
    for e in exps:
        a = pd.Timestamp(e["assign_date"])
        for ax in (ax1, ax2):
            ax.axvspan(a, a + pd.Timedelta(days=int(e.get("treatment", {}).get("days", 30))), color="tab:purple",
                       alpha=0.12, label=f"{e['name']}: treatment window" if ax is ax1 else None)
            ax.axvline(a + pd.Timedelta(days=60), color="grey", linestyle="--", linewidth=1,
                       label="assign + 60 days" if ax is ax1 else None)
    ax1.set_title("Experiment arms: purchases per assigned customer per day (7-day mean)")
    ax1.set_ylabel("purchases / customer / day")
    ax2.set_title("Experiment arms: revenue per assigned customer per day (7-day mean)")
    ax2.set_ylabel("revenue / customer / day (currency units)")
    ax2.set_xlabel("date")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def sample_customers(customers: pd.DataFrame, n: int, *, seed: int) -> list[int]:
    """``n`` customer ids, stratified by segment at signup, the same for the same ``seed``.

    Each segment gets its share of ``n`` (largest remainder, at least one while ``n`` allows);
    within a segment the ids are drawn without replacement from the seed's own stream. Returned
    grouped by segment, then by signup date.
    """
    c = customers.drop_duplicates("customer_id").sort_values("customer_id")
    segs = ordered_segments(c["segment"].dropna().unique())
    sizes = np.array([int((c["segment"] == s).sum()) for s in segs])
    n = int(min(n, sizes.sum()))
    if n <= 0:
        return []
    quota = n * sizes / sizes.sum()
    take = np.floor(quota).astype(int)
    if n >= len(segs):
        take = np.maximum(take, (sizes > 0).astype(int))
    for i in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if take.sum() >= n:
            break
        take[i] += 1
    while take.sum() > n:  # the at-least-one floor overshot: trim the largest
        take[int(np.argmax(take))] -= 1
    take = np.minimum(take, sizes)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SAMPLE_STREAM,)))
    picked = []
    for seg, k in zip(segs, take, strict=True):
        ids = c.loc[c["segment"] == seg, "customer_id"].to_numpy()
        chosen = set(rng.choice(ids, size=int(k), replace=False).tolist())
        part = c[c["customer_id"].isin(chosen)].sort_values(["customer_since_date", "customer_id"])
        picked.extend(int(x) for x in part["customer_id"])
    return picked


def _seg_color(seg: str) -> str:
    order = list(SEGMENT_ORDER)
    return f"C{order.index(seg)}" if seg in order else "C7"


def plot_customers(
    customers: pd.DataFrame,
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    scenario: Mapping[str, Any],
    *,
    n: int,
    seed: int,
) -> Figure:
    """One row per sampled customer on a shared time axis.

    Purchases are ticks sized by amount; the life line is coloured by the segment in force
    (signup segment from ``raw_customers``, then each month end's ``customer_labels.segment``:
    a change is marked where a month end first shows it); the latent ``dropout_date`` is a cross,
    after which the line is dotted; months labelled churned are shaded red.
    """
    ids = sample_customers(customers, n, seed=seed)
    if not ids:
        raise ValueError("no customers in raw_customers to sample")
    cust = customers.drop_duplicates("customer_id").set_index("customer_id").loc[ids]
    lab = labels[labels["customer_id"].isin(ids)].copy()
    lab["label_date"] = pd.to_datetime(lab["label_date"])
    lab = lab.sort_values(["customer_id", "label_date"])
    tx = transactions[transactions["customer_id"].isin(ids)].copy()
    tx["transaction_date"] = pd.to_datetime(tx["transaction_date"])
    cal = scenario.get("calendar") or {}
    all_dates = pd.to_datetime(transactions["transaction_date"])
    start = pd.Timestamp(cal["start_date"]) if cal.get("start_date") else all_dates.min()
    # The run's last month end: transactions after it are injected defects (after_end), not life.
    end = pd.to_datetime(labels["label_date"]).max()
    tx = tx[tx["transaction_date"] <= end]
    # Purchases dated before the run are history; show up to a year of them.
    x0 = max(min(start, tx["transaction_date"].min() if len(tx) else start), start - pd.Timedelta(days=365))
    ref = float(np.nanmedian(transactions["amount"].to_numpy(float))) or 1.0
    days_per_row = {cid: g for cid, g in lab.groupby("customer_id")}
    fig, ax = plt.subplots(figsize=(12, 1.6 + 0.34 * len(ids)))
    if x0 < start:
        ax.axvspan(x0, start, color="0.92", zorder=0)
        ax.text(x0 + (start - x0) / 2, -0.9, "history (before the run)", ha="center", va="bottom", fontsize=8,
                color="0.35")
    _mark(ax, _events(scenario), label=False)
    for y, cid in enumerate(ids):
        since = pd.Timestamp(cust.at[cid, "customer_since_date"])
        life0 = max(since, x0)
        g = days_per_row.get(cid)
        dropout = pd.NaT
        if g is not None and g["dropout_date"].notna().any():
            dropout = pd.Timestamp(g["dropout_date"].dropna().iloc[-1])
        alive_end = min(dropout, end) if pd.notna(dropout) else end
        # Segment in force: the signup segment, switched where a month end first shows another.
        seg = str(cust.at[cid, "segment"])
        cuts = [(life0, seg)]
        if g is not None:
            prev_date = None
            for d, s, churned in zip(g["label_date"], g["segment"], g["churned"], strict=True):
                lo = prev_date if prev_date is not None else d - pd.offsets.MonthBegin(1)
                if bool(churned):
                    ax.fill_between([lo, d], y - 0.42, y + 0.42, color="tab:red", alpha=0.22, linewidth=0,
                                    zorder=1)
                prev_date = d
                if isinstance(s, str) and s != cuts[-1][1] and d > life0:
                    cuts.append((d, s))
                    ax.plot([d], [y], marker="D", markersize=5, color=_seg_color(s), markeredgecolor="black",
                            markeredgewidth=0.6, zorder=4)
        for (a, s), nxt in zip(cuts, [*cuts[1:], (None, None)], strict=True):
            b = nxt[0] if nxt[0] is not None else alive_end
            b = min(b, alive_end)
            if b > a:
                ax.plot([a, b], [y, y], color=_seg_color(s), linewidth=3.2, solid_capstyle="butt", zorder=2)
        if pd.notna(dropout) and dropout < end:
            ax.plot([max(dropout, life0), end], [y, y], color="0.55", linewidth=1, linestyle=":", zorder=2)
            ax.plot([dropout], [y], marker="X", markersize=8, color="black", zorder=5)
        if since >= x0:
            ax.plot([since], [y], marker="o", markersize=5, markerfacecolor="white", markeredgecolor="black", zorder=5)
        t = tx[tx["customer_id"] == cid]
        if len(t):
            size = np.clip(5.0 * np.sqrt(np.maximum(t["amount"].to_numpy(float), 0) / ref), 3, 20) ** 2
            ax.scatter(t["transaction_date"], np.full(len(t), y), s=size, marker="|", color="black",
                       linewidths=1.4, zorder=3)
    arm = {}
    if has_experiment(lab):
        # A customer's arms as of its last label (experiments assign later ones as the run goes on).
        last = lab.dropna(subset=["experiment_arms"]).sort_values("label_date").drop_duplicates("customer_id", keep="last")
        arm = {cid: ", ".join(f"{k}: {v}" for k, v in dict(m).items())
               for cid, m in zip(last["customer_id"], last["experiment_arms"], strict=True)}
    ax.set_yticks(range(len(ids)))
    ax.set_yticklabels([f"#{cid} ({cust.at[cid, 'segment']}{', ' + arm[cid] if cid in arm else ''})" for cid in ids],
                       fontsize=7)
    ax.set_ylim(len(ids) - 0.4, -1.0)
    ax.set_xlim(x0 - pd.Timedelta(days=3), end + pd.Timedelta(days=3))
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("date")
    ax.set_title(f"Customer trajectories: {len(ids)} customers sampled by signup segment (seed {seed})")
    segs = ordered_segments({str(cust.at[c, "segment"]) for c in ids} | set(lab["segment"].dropna()))
    handles = [Line2D([], [], color=_seg_color(s), linewidth=3.2, label=s) for s in segs]
    handles += [
        Line2D([], [], marker="|", linestyle="", color="black", markersize=9, label=f"purchase (height ~ amount; median {ref:.0f})"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="black", label="signup"),
        Line2D([], [], marker="D", linestyle="", color="0.6", markeredgecolor="black", label="segment change (month end)"),
        Line2D([], [], marker="X", linestyle="", color="black", markersize=8, label="latent dropout"),
        Patch(facecolor="tab:red", alpha=0.22, label="month labelled churned"),
    ]
    for kind, (color, style) in _EVENT_STYLE.items():
        if any(k == kind for _, k, _ in _events(scenario)):
            handles.append(Line2D([], [], color=color, linestyle=style, label=kind))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.04), ncol=5, fontsize=8, frameon=False)
    return fig


@dataclass(frozen=True)
class LakeFrames:
    """What the plots read from a lake, read once."""

    scenario: dict[str, Any]
    metrics: pd.DataFrame
    labels: pd.DataFrame
    customers: pd.DataFrame
    transactions: pd.DataFrame


def load_frames(lake: str | Path) -> LakeFrames:
    """The lake's daily metrics, labels, customers, transactions and ``scenario.json``."""
    customers, transactions = load_inputs(lake)
    return LakeFrames(
        scenario=load_scenario_json(lake),
        metrics=read_table(lake, "daily_metrics").to_pandas(date_as_object=False),
        labels=read_table(lake, "customer_labels").to_pandas(date_as_object=False),
        customers=customers,
        transactions=transactions,
    )


def has_experiment(labels: pd.DataFrame) -> bool:
    return "experiment_arms" in labels.columns and bool(labels["experiment_arms"].notna().any())


def figures(frames: LakeFrames, *, customers: int = 0, seed: int | None = None) -> Iterator[tuple[str, Figure]]:
    """``(name, figure)`` for every plot of the lake, one at a time (close each when done).

    Names: :data:`FIGURES`, ``ab_arms`` only when labels carry experiment arms and ``customers``
    only when ``customers > 0`` (sampled with ``seed``, default the scenario's).
    """
    f = frames
    events = _events(f.scenario)
    yield "activity", plot_activity(f.metrics, events)
    start = f.metrics["metric_date"].min()  # the simulation's first day: earlier transactions are history
    yield "cohort_retention", plot_cohorts(f.customers, f.transactions, start=start)
    yield "intensity_hazard", plot_intensity_hazard(f.metrics, f.labels)
    yield "churn_vs_recency", plot_churn_vs_recency(
        training_frame(f.customers, f.transactions, f.labels, warmup_days=30, start=start))
    if has_experiment(f.labels):
        tables = {"customer_labels": f.labels, "raw_transactions": f.transactions}
        yield "ab_arms", plot_ab(tables, f.scenario)
    if customers > 0:
        s = int(f.scenario.get("seed", 0)) if seed is None else seed
        yield "customers", plot_customers(f.customers, f.transactions, f.labels, f.scenario, n=customers, seed=s)


def plot_all(lake: str | Path, out_dir: str | Path, *, customers: int = 0) -> list[Path]:
    """Write every plot for the lake into ``out_dir`` (created if missing).

    Args:
        lake: the lake directory; ``_churnsim/scenario.json`` supplies the event markers.
        out_dir: where the PNGs go.
        customers: also write ``customers.png`` with this many customer trajectories.

    Returns:
        The paths written (``ab_arms.png`` only when labels carry experiment arms).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [_save(fig, out / f"{name}.png") for name, fig in figures(load_frames(lake), customers=customers)]
