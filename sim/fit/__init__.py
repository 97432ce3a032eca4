"""Fitting a scenario to a real transaction log (``search``), and the report that compares the two.

The log is read and reduced to purchase occasions (``log``), its customers split into segments
(``segmenter``), its moments measured (``moments``) and matched by a fit's parameters (``params``);
``stats`` holds the distances between two logs that score the fit and fill the report.
"""

from sim.fit.log import occasions, read_log
from sim.fit.report import fit_report
from sim.fit.search import MODELS, fit_scenario
from sim.fit.stats import LogStats, distances, log_stats, simulated_log

__all__ = ["MODELS", "LogStats", "distances", "fit_report", "fit_scenario", "log_stats", "occasions", "read_log",
           "simulated_log"]
