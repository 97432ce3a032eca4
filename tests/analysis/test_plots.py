"""Plots: every PNG written, of the expected size, with real content; the CLI."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
from click.testing import CliRunner

from analysis.figures import load_frames, plot_all
from analysis.trajectories import plot_customers
from sim.cli import main

BASE = ["activity.png", "cohort_retention.png", "intensity_hazard.png", "churn_vs_recency.png"]


def _check_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert 600 <= w <= 1400 and 500 <= h <= 1200, (path.name, img.shape)
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).max() > 0.05  # not one colour
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 20  # lines, text, colours


def test_plot_all_experiment_lake(experiment_lake, tmp_path) -> None:
    paths = plot_all(experiment_lake, tmp_path / "plots", customers=12)
    assert [p.name for p in paths] == [*BASE, "ab_arms.png", "customers.png"]
    for p in paths:
        _check_png(p)


def test_cli_plot_customers(analysis_lake, tmp_path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["plot", "--lake", str(analysis_lake), "--out", str(out), "--customers", "16"])
    assert r.exit_code == 0, r.output
    assert (out / "customers.png").exists()
    _check_png(out / "customers.png")
    # The sample follows the scenario's seed: the same figure again, byte for byte.
    frames = load_frames(analysis_lake)
    again = plot_customers(frames.customers, frames.transactions, frames.labels, frames.scenario, n=16,
                           seed=frames.scenario["seed"])
    buf = io.BytesIO()
    again.tight_layout()
    again.savefig(buf, format="png", dpi=110)
    assert buf.getvalue() == (out / "customers.png").read_bytes()


def test_cli_plot_baseline(analysis_lake, tmp_path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["plot", "--lake", str(analysis_lake), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(BASE)  # no experiment: no ab_arms.png
    for name in BASE:
        _check_png(out / name)
    assert "Example:" in CliRunner().invoke(main, ["plot", "--help"]).output
