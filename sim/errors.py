"""The small exception tree every churnsim error belongs to."""

from __future__ import annotations

__all__ = ["InfeasibleTargetError", "ScenarioError", "SimError", "StorageError"]


class SimError(Exception):
    """Base class of every error churnsim raises on purpose."""


class ScenarioError(SimError, ValueError):
    """A scenario, config or override is malformed; found at load, before anything runs."""


class InfeasibleTargetError(ScenarioError):
    """The requested targets (churn rate, volume) cannot be met by the model."""


class StorageError(SimError):
    """The lake refused an operation: a finished run, no state, a lost race, a version clash."""
