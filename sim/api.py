"""The guide's Python API: ``generate_dataset``, ``DataConfig``, ``SyntheticDataGenerator``.

These are thin: a ``DataConfig`` becomes a :class:`~sim.scenario.Scenario`, which the engine runs
month by month in memory (:func:`sim.execute.drive.simulate`: the same loop that writes the Delta lake).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from sim.execute.memory import simulate
from sim.scenario import Scenario, scenario_from_dict

__all__ = ["PRESETS", "DataConfig", "SyntheticDataGenerator", "generate_dataset", "simulate"]

log = logging.getLogger(__name__)

Size = Literal["small", "medium", "large"]


@dataclass
class DataConfig:
    """The guide's generation parameters (mutable, as its examples assign to them).

    Attributes:
        num_customers: customers in ``raw_customers`` over the horizon.
        avg_transactions_per_customer: target mean purchases per customer over the horizon.
        date_range_days: length of the simulated window in days.
        churn_rate: target share of customers labelled churned at the last label date.
        seed: the run's seed; same config and seed give identical data.
        start_date: first simulated day.
        scenario: extra scenario keys (as in a scenario YAML) merged under these.
    """

    num_customers: int = 1_000
    avg_transactions_per_customer: float = 10
    date_range_days: int = 365
    churn_rate: float = 0.15
    seed: int = 42
    start_date: dt.date = dt.date(2024, 1, 1)
    scenario: dict[str, Any] = field(default_factory=dict)

    def to_scenario(self) -> Scenario:
        data = dict(self.scenario)
        data.setdefault("name", "data_config")
        data["seed"] = self.seed
        data["calendar"] = {**data.get("calendar", {}), "start_date": self.start_date, "days": self.date_range_days}
        data["population"] = {**data.get("population", {}), "size": self.num_customers}
        data["targets"] = {"avg_transactions_per_customer": self.avg_transactions_per_customer,
                           "churn_rate": self.churn_rate}
        return scenario_from_dict(data, source="DataConfig")


PRESETS: dict[str, DataConfig] = {
    "small": DataConfig(num_customers=1_000, avg_transactions_per_customer=10, date_range_days=180),
    "medium": DataConfig(num_customers=10_000, avg_transactions_per_customer=15, date_range_days=365),
    "large": DataConfig(num_customers=100_000, avg_transactions_per_customer=20, date_range_days=730),
}


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(date_as_object=False)


class SyntheticDataGenerator:
    """Generates the guide's tables from a :class:`DataConfig`.

    After :meth:`generate_all`, ``all_labels`` holds every month-end label snapshot and
    ``time_series`` the daily metrics.
    """

    def __init__(self, config: DataConfig | None = None) -> None:
        self.config = config or DataConfig()
        self.all_labels: pd.DataFrame | None = None
        self.time_series: pd.DataFrame | None = None

    def generate_tables(self) -> dict[str, pa.Table]:
        """The tables as Arrow (customer_history too), labels with one snapshot per month end."""
        return simulate(self.config.to_scenario())

    def generate_all(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """``(customers, transactions, labels)``; labels are the last month-end snapshot."""
        tables = self.generate_tables()
        labels = _frame(tables["customer_labels"])
        self.all_labels = labels
        self.time_series = _frame(tables["daily_metrics"])
        last = labels[labels["label_date"] == labels["label_date"].max()].reset_index(drop=True)
        return _frame(tables["raw_customers"]), _frame(tables["raw_transactions"]), last

    def add_data_quality_issues(
        self, customers: pd.DataFrame, transactions: pd.DataFrame, corruption_rate: float = 0.02
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Corrupted copies of the two frames (see :func:`sim.quality.add_data_quality_issues`)."""
        from sim.quality import add_data_quality_issues

        return add_data_quality_issues(customers, transactions, corruption_rate=corruption_rate,
                                       seed=self.config.seed)


def generate_dataset(size: Size = "small", *, seed: int = 42) -> dict[str, pd.DataFrame]:
    """One of the guide's presets: ``customers``, ``transactions``, ``labels``, ``time_series``."""
    if size not in PRESETS:
        raise ValueError(f"size: expected one of 'small', 'medium', 'large' (got {size!r})")
    base = PRESETS[size]
    config = DataConfig(base.num_customers, base.avg_transactions_per_customer, base.date_range_days,
                        base.churn_rate, seed)
    gen = SyntheticDataGenerator(config)
    customers, transactions, labels = gen.generate_all()
    return {"customers": customers, "transactions": transactions, "labels": labels, "time_series": gen.time_series}
