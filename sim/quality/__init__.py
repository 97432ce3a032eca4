"""Data quality: defects injected with a manifest (``corrupt``), and the rules that find them (``validate``)."""

from sim.quality.corrupt import add_data_quality_issues, corrupt_month
from sim.quality.validate import QualityReport, RuleResult, validate, validate_features, validate_lake

__all__ = ["QualityReport", "RuleResult", "add_data_quality_issues", "corrupt_month", "validate", "validate_features",
           "validate_lake"]
