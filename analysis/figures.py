"""Every figure of a lake, from one read of its tables: for ``churnsim plot`` and the lake report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.features import load_inputs  # noqa: E402
from analysis.lake import read_table  # noqa: E402
from analysis.model import training_frame  # noqa: E402
from analysis.plots import (
    has_experiment,
    load_scenario_json,
    plot_ab,
    plot_activity,
    plot_churn_vs_recency,
    plot_cohorts,
    plot_intensity_hazard,
    save_figure,
    scenario_events,
)
from analysis.trajectories import plot_customers

__all__ = ["LakeFrames", "figures", "load_frames", "plot_all"]


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




def figures(frames: LakeFrames, *, customers: int = 0, seed: int | None = None) -> Iterator[tuple[str, Figure]]:
    """``(name, figure)`` for every plot of the lake, one at a time (close each when done).

    Names: :data:`FIGURES`, ``ab_arms`` only when labels carry experiment arms and ``customers``
    only when ``customers > 0`` (sampled with ``seed``, default the scenario's).
    """
    f = frames
    events = scenario_events(f.scenario)
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
    return [save_figure(fig, out / f"{name}.png") for name, fig in figures(load_frames(lake), customers=customers)]
