"""Analysis of churnsim lakes: reads Delta tables (any version) only, never the engine."""

from analysis.ab import ab_readout
from analysis.drift import drift_report, score_drift
from analysis.features import compute_features, write_features
from analysis.figures import plot_all
from analysis.lake import read_table
from analysis.model import model_check
from analysis.quality_report import dashboard, lake_dashboard
from analysis.report import render_report, write_report

__all__ = [
    "ab_readout",
    "compute_features",
    "dashboard",
    "drift_report",
    "lake_dashboard",
    "model_check",
    "plot_all",
    "read_table",
    "render_report",
    "score_drift",
    "write_features",
    "write_report",
]
