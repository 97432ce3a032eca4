"""The guide's module name, so its Quick Start runs as written: ``from synthetic_data_generator import ...``."""

from sim.api import DataConfig, SyntheticDataGenerator, generate_dataset
from sim.quality import add_data_quality_issues, validate, validate_features

__all__ = ["DataConfig", "SyntheticDataGenerator", "add_data_quality_issues", "generate_dataset", "validate",
           "validate_features"]
