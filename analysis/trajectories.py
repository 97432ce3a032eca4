"""Customer trajectories: a stratified, seeded sample of customers, one row each on a shared time axis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis.plots import EVENT_STYLE, SEGMENT_ORDER, has_experiment, mark_events, ordered_segments, scenario_events

__all__ = ["plot_customers", "sample_customers"]

_SAMPLE_STREAM = 0x5EED  # the customer sample's own random stream, apart from the engine's


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
    mark_events(ax, scenario_events(scenario), label=False)
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
    for kind, (color, style) in EVENT_STYLE.items():
        if any(k == kind for _, k, _ in scenario_events(scenario)):
            handles.append(Line2D([], [], color=color, linestyle=style, label=kind))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.04), ncol=5, fontsize=8, frameon=False)
    return fig
