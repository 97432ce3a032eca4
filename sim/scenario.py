"""Scenarios: YAML loaded once into frozen, validated dataclasses.

Every error names the file, the key path, the value and what was expected, on one line, and is
raised before anything is simulated or written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sim.errors import ScenarioError

__all__ = [
    "Acquisition",
    "Calendar",
    "Corruption",
    "Drift",
    "Experiment",
    "Heterogeneity",
    "Holiday",
    "Intervention",
    "MAX_EXPERIMENTS",
    "MAX_INTERVENTIONS",
    "Population",
    "Scenario",
    "Seasonality",
    "Segment",
    "Target",
    "Targets",
    "Treatment",
    "apply_overrides",
    "load_scenario",
    "scenario_from_dict",
]

SCHEMA_VERSION = 1
SEGMENT_NAMES = ("young_active", "mid_stable", "senior_declining", "new_customer")
# Each customer's uint64 flag word has a bit per intervention, then two (treatment, control) per
# experiment (sim.engine); a scenario may use no more than it holds.
MAX_INTERVENTIONS = 32
MAX_EXPERIMENTS = 16


def _rng(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "open_lo": open_lo}


@dataclass(frozen=True)
class Segment:
    """One customer segment. Rates are per simulated day; money is in currency units."""

    share: float = field(default=0.25, metadata=_rng(0, 1))
    age: tuple[int, int] = (23, 33)
    tenure_months: tuple[float, float] = (6, 24)
    purchase_rate: float = field(default=0.05, metadata=_rng(0, 50, open_lo=True))
    decay_per_year: float = field(default=0.1, metadata=_rng(0, 20))
    spend_median: float = field(default=50.0, metadata=_rng(0, 5000, open_lo=True))
    spend_sigma: float = field(default=0.6, metadata=_rng(0, 3))
    dropout_hazard: float = field(default=0.001, metadata=_rng(0, 1))
    # BG/NBD-style dropout: the chance of leaving right after each repeat purchase (mean over customers).
    dropout_per_purchase: float = field(default=0.0, metadata=_rng(0, 1))
    regularity: float = field(default=1.0, metadata=_rng(1, 100))
    # Gamma shape of this segment's rate multipliers; unset: population.heterogeneity.shape.
    heterogeneity_shape: float | None = field(default=None, metadata=_rng(0.1, 1000))
    app_share: float = field(default=0.3, metadata=_rng(0, 1))
    store_share: float = field(default=0.3, metadata=_rng(0, 1))


@dataclass(frozen=True)
class Heterogeneity:
    """Customer-level variation inside a segment."""

    shape: float = field(default=6.0, metadata=_rng(0.1, 1000))
    spend_correlation: float = field(default=0.3, metadata=_rng(-2, 2))
    spend_sigma: float = field(default=0.35, metadata=_rng(0, 3))
    # Customers' dropout_per_purchase ~ Beta(c * mean, c * (1 - mean)); unset: the segment's mean for all.
    dropout_concentration: float | None = field(default=None, metadata=_rng(0, 1_000_000, open_lo=True))


@dataclass(frozen=True)
class Acquisition:
    """New customers arriving over the horizon; they start as ``new_customer``."""

    share: float = field(default=0.08, metadata=_rng(0, 1))
    graduation_days: float = field(default=90.0, metadata=_rng(1, 3650))
    mix: Mapping[str, float] | None = None
    window_days: int | None = field(default=None, metadata=_rng(1, 36_500))
    # Within the window, the share acquired by fraction x of it is x ** (1 / window_shape): 1 is
    # uniform, above 1 front-loaded, below 1 back-loaded.
    window_shape: float = field(default=1.0, metadata=_rng(0, 10, open_lo=True))
    first_purchase_at_signup: bool = False


@dataclass(frozen=True)
class Population:
    size: int = field(default=10_000, metadata=_rng(1, 100_000_000))
    shard_size: int = field(default=50_000, metadata=_rng(100, 10_000_000))
    recency_scale_days: float = field(default=30.0, metadata=_rng(1, 3650))
    segments: Mapping[str, Segment] = field(default_factory=dict)
    heterogeneity: Heterogeneity = field(default_factory=Heterogeneity)
    acquisition: Acquisition = field(default_factory=Acquisition)


@dataclass(frozen=True)
class Calendar:
    start_date: dt.date = dt.date(2024, 1, 1)
    days: int | None = field(default=None, metadata=_rng(1, 36_500))
    months: int | None = field(default=None, metadata=_rng(1, 1200))


@dataclass(frozen=True)
class Holiday:
    date: dt.date
    name: str = "holiday"
    days: int = field(default=1, metadata=_rng(1, 366))
    multiplier: float = field(default=1.5, metadata=_rng(0, 100))


@dataclass(frozen=True)
class Seasonality:
    weekly: tuple[float, ...] = (0.95, 0.95, 0.97, 1.0, 1.08, 1.15, 0.9)
    yearly_amplitude: float = field(default=0.1, metadata=_rng(0, 0.95))
    yearly_peak_day: int = field(default=350, metadata=_rng(1, 366))
    holidays: tuple[Holiday, ...] = ()


@dataclass(frozen=True)
class Target:
    """Who an intervention reaches: everyone, a segment, and/or the inactive."""

    segment: str | None = None
    inactive_days: float | None = field(default=None, metadata=_rng(0, 36_500))


@dataclass(frozen=True)
class Intervention:
    name: str
    start: dt.date
    kind: Literal["retention_campaign", "spend_shock", "outage"] = "retention_campaign"
    days: int = field(default=30, metadata=_rng(1, 36_500))
    target: Target = field(default_factory=Target)
    intensity_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    hazard_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    spend_multiplier: float = field(default=1.0, metadata=_rng(0, 100))


@dataclass(frozen=True)
class Drift:
    name: str
    parameter: Literal[
        "spend_median", "purchase_rate", "decay_per_year", "dropout_hazard", "dropout_per_purchase",
        "acquisition_mix",
    ]
    start: dt.date
    segment: str | None = None
    shape: Literal["step", "ramp"] = "step"
    ramp_days: int = field(default=60, metadata=_rng(1, 36_500))
    multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    mix: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Treatment:
    days: int = field(default=30, metadata=_rng(1, 36_500))
    intensity_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    hazard_multiplier: float = field(default=1.0, metadata=_rng(0, 100))
    spend_multiplier: float = field(default=1.0, metadata=_rng(0, 100))


@dataclass(frozen=True)
class Experiment:
    name: str
    assign_date: dt.date
    eligible: Target = field(default_factory=Target)
    treatment_share: float = field(default=0.5, metadata=_rng(0, 1))
    treatment: Treatment = field(default_factory=Treatment)
    note: str = ""


@dataclass(frozen=True)
class Targets:
    """Outcomes the run is calibrated to meet (the guide's ``DataConfig`` numbers)."""

    avg_transactions_per_customer: float | None = field(default=None, metadata=_rng(0, 100_000, open_lo=True))
    churn_rate: float | None = field(default=None, metadata=_rng(0, 1, open_lo=True))


@dataclass(frozen=True)
class Corruption:
    rate: float = field(default=0.0, metadata=_rng(0, 0.5))
    rates: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Scenario:
    """A whole run, as data. Build with :func:`load_scenario` or :func:`scenario_from_dict`."""

    schema_version: int = SCHEMA_VERSION
    name: str = "scenario"
    description: str = ""
    seed: int = field(default=42, metadata=_rng(0, 2**63 - 1))
    calendar: Calendar = field(default_factory=Calendar)
    seasonality: Seasonality = field(default_factory=Seasonality)
    population: Population = field(default_factory=Population)
    targets: Targets = field(default_factory=Targets)
    interventions: tuple[Intervention, ...] = ()
    drifts: tuple[Drift, ...] = ()
    experiments: tuple[Experiment, ...] = ()
    corruption: Corruption = field(default_factory=Corruption)
    notes: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; ``scenario_from_dict(s.to_dict()) == s``."""
        return _plain(self)

    def digest(self) -> str:
        """A short hash of the scenario's content, stored with every commit."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def end_date(self) -> dt.date:
        """Last simulated day (inclusive)."""
        from sim.calendar import horizon_end

        return horizon_end(self.calendar)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


# --------------------------------------------------------------------------- building


def _fail(src: str, path: str, value: Any, expected: str) -> typing.NoReturn:
    where = f"{src}: " if src else ""
    raise ScenarioError(f"{where}{path or '<root>'}: expected {expected} (got {value!r})")


def _unknown(src: str, path: str, value: Any, valid: Sequence[str]) -> typing.NoReturn:
    key = path.rsplit(".", 1)[-1]
    near = difflib.get_close_matches(key, list(valid), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    where = f"{src}: " if src else ""
    raise ScenarioError(f"{where}{path}: unknown key{hint}; expected one of {', '.join(valid)} (got {value!r})")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    if tp is dt.date:
        return "a date (YYYY-MM-DD)"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _convert(tp: Any, value: Any, src: str, path: str, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, src, path, meta)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            _fail(src, path, value, "a mapping")
        return _build(tp, value, src, path)
    if origin is Literal:
        if value not in args:
            near = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            _fail(src, path, value, "one of " + ", ".join(map(repr, args)) + hint)
        return value
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            _fail(src, path, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, src, f"{path}[{i}]", {}) for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(src, path, value, f"a list of {len(args)} numbers [low, high]")
        out = tuple(_convert(a, v, src, f"{path}[{i}]", {}) for i, (a, v) in enumerate(zip(args, value, strict=True)))
        if out[0] > out[1]:
            _fail(src, path, list(value), "[low, high] with low <= high")
        return out
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            _fail(src, path, value, "a mapping")
        return types.MappingProxyType(
            {str(k): _convert(args[1], v, src, f"{path}.{k}", meta) for k, v in value.items()}
        )
    if tp is dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            _fail(src, path, value, "a date (YYYY-MM-DD)")
    if tp is bool:
        if not isinstance(value, bool):
            _fail(src, path, value, "true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            _fail(src, path, value, "a string")
        return value
    if tp in (int, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if tp is int and ok and float(value) != int(value):
            ok = False
        if not ok:
            _fail(src, path, value, _describe(tp))
        value = tp(value)
        lo, hi, open_lo = meta.get("lo"), meta.get("hi"), meta.get("open_lo", False)
        if lo is not None and (value < lo or (open_lo and value == lo)) or hi is not None and value > hi:
            lo_b = "(" if open_lo else "["
            _fail(src, path, value, f"{_describe(tp)} in {lo_b}{lo}, {hi}]")
        return value
    raise TypeError(f"unsupported field type {tp!r}")  # a bug in this module, not in the input


def _build(cls: type, data: Mapping[str, Any], src: str, path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            _unknown(src, _join(path, key), data[key], list(fields))
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], src, _join(path, name), f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _fail(src, _join(path, name), None, f"{_describe(hints[name])} (required key missing)")
    return cls(**kwargs)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# --------------------------------------------------------------------------- defaults and checks


def default_segments() -> dict[str, dict[str, Any]]:
    """The guide's segment table as parameters (see scenarios/README.md for each number's source)."""
    from sim.segments import DEFAULT_SEGMENTS

    return {k: dict(v) for k, v in DEFAULT_SEGMENTS.items()}


def scenario_from_dict(data: Mapping[str, Any], *, source: str = "") -> Scenario:
    """Validate a scenario mapping (as read from YAML) and return the frozen :class:`Scenario`."""
    if not isinstance(data, Mapping):
        _fail(source, "", data, "a mapping at the top level")
    data = dict(data)
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        _fail(source, "schema_version", version, f"{SCHEMA_VERSION}")
    pop = dict(data.get("population") or {})
    if not isinstance(data.get("population", {}), Mapping):
        _fail(source, "population", data["population"], "a mapping")
    given = pop.get("segments") or {}
    if not isinstance(given, Mapping):
        _fail(source, "population.segments", given, "a mapping of segment name to parameters")
    merged = default_segments()
    for name, params in given.items():
        if name not in merged:
            _unknown(source, f"population.segments.{name}", params, SEGMENT_NAMES)
        if not isinstance(params, Mapping):
            _fail(source, f"population.segments.{name}", params, "a mapping")
        merged[name].update(params)
    pop["segments"] = merged
    data["population"] = pop
    cal = data.get("calendar")
    if cal is None or (isinstance(cal, Mapping) and "days" not in cal and "months" not in cal):
        data["calendar"] = {**(cal or {}), "months": 12}
    scenario = _build(Scenario, data, source, "")
    _check(scenario, source)
    return scenario


def _check(s: Scenario, src: str) -> None:
    segs = s.population.segments
    total = sum(seg.share for seg in segs.values())
    if abs(total - 1.0) > 1e-6:
        _fail(src, "population.segments.*.share", round(total, 6), "shares summing to 1")
    for name, seg in segs.items():
        p = f"population.segments.{name}"
        if not (18 <= seg.age[0] and seg.age[1] <= 100):
            _fail(src, f"{p}.age", list(seg.age), "ages within [18, 100]")
        if seg.tenure_months[0] < 0:
            _fail(src, f"{p}.tenure_months", list(seg.tenure_months), "non-negative months")
        if seg.app_share + seg.store_share > 1:
            _fail(src, f"{p}.store_share", seg.store_share, "app_share + store_share <= 1")
    acq = s.population.acquisition
    if acq.share > segs["new_customer"].share + 1e-9:
        _fail(src, "population.acquisition.share", acq.share,
              f"at most population.segments.new_customer.share ({segs['new_customer'].share})")
    if acq.mix is not None:
        _check_mix(src, "population.acquisition.mix", acq.mix)
    elif segs["new_customer"].share > 0 and sum(segs[k].share for k in SEGMENT_NAMES[:3]) <= 0:
        _fail(src, "population.acquisition.mix", None,
              "a graduation mix when young_active, mid_stable and senior_declining all have share 0")
    cal = s.calendar
    if (cal.days is None) == (cal.months is None):
        _fail(src, "calendar", {"days": cal.days, "months": cal.months}, "exactly one of days or months")
    if len(s.seasonality.weekly) != 7 or min(s.seasonality.weekly) < 0:
        _fail(src, "seasonality.weekly", list(s.seasonality.weekly), "7 non-negative multipliers, Monday first")
    end = s.end_date
    for i, h in enumerate(s.seasonality.holidays):
        _check_date(src, f"seasonality.holidays[{i}].date", h.date, cal.start_date, None)
    for key, items, most in (("interventions", s.interventions, MAX_INTERVENTIONS),
                             ("experiments", s.experiments, MAX_EXPERIMENTS)):
        if len(items) > most:
            _fail(src, key, len(items), f"at most {most} {key}")
    names: set[str] = set()
    for i, iv in enumerate(s.interventions):
        p = f"interventions[{i}]"
        _check_name(src, f"{p}.name", iv.name, names)
        _check_date(src, f"{p}.start", iv.start, cal.start_date, None)
        _check_target(src, f"{p}.target", iv.target)
    for i, d in enumerate(s.drifts):
        p = f"drifts[{i}]"
        _check_name(src, f"{p}.name", d.name, names)
        _check_date(src, f"{p}.start", d.start, cal.start_date, None)
        if d.segment is not None and d.segment not in SEGMENT_NAMES:
            _fail(src, f"{p}.segment", d.segment, _segment_hint(d.segment))
        if d.parameter == "acquisition_mix":
            if d.mix is None:
                _fail(src, f"{p}.mix", None, "a mix of segment shares for parameter acquisition_mix")
            _check_mix(src, f"{p}.mix", d.mix)
    for i, e in enumerate(s.experiments):
        p = f"experiments[{i}]"
        _check_name(src, f"{p}.name", e.name, names)
        _check_date(src, f"{p}.assign_date", e.assign_date, cal.start_date, end)
        _check_target(src, f"{p}.eligible", e.eligible)
    if s.corruption.rates:
        from sim.quality import ISSUE_KINDS

        for k, v in s.corruption.rates.items():
            if k not in ISSUE_KINDS:
                near = difflib.get_close_matches(k, ISSUE_KINDS, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                _fail(src, f"corruption.rates.{k}", v, "one of " + ", ".join(ISSUE_KINDS) + hint)
            if not 0 <= v <= 0.5:
                _fail(src, f"corruption.rates.{k}", v, "a number in [0, 0.5]")


def _segment_hint(name: str) -> str:
    near = difflib.get_close_matches(name, SEGMENT_NAMES, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return "a segment, one of " + ", ".join(SEGMENT_NAMES) + hint


def _check_target(src: str, path: str, t: Target) -> None:
    if t.segment is not None and t.segment not in SEGMENT_NAMES:
        _fail(src, f"{path}.segment", t.segment, _segment_hint(t.segment))


def _check_mix(src: str, path: str, mix: Mapping[str, float]) -> None:
    for k, v in mix.items():
        if k not in SEGMENT_NAMES[:3]:
            _fail(src, f"{path}.{k}", v, "a graduation segment: young_active, mid_stable or senior_declining")
        if v < 0:
            _fail(src, f"{path}.{k}", v, "a non-negative share")
    if abs(sum(mix.values()) - 1) > 1e-6:
        _fail(src, path, dict(mix), "shares summing to 1")


def _check_name(src: str, path: str, name: str, seen: set[str]) -> None:
    if name in seen:
        _fail(src, path, name, "a name not used by another intervention, drift or experiment")
    seen.add(name)


def _check_date(src: str, path: str, d: dt.date, lo: dt.date, hi: dt.date | None) -> None:
    if d < lo or (hi is not None and d > hi):
        bound = f"[{lo}, {hi}]" if hi else f"on or after calendar.start_date ({lo})"
        _fail(src, path, d.isoformat(), f"a date {bound}")


# --------------------------------------------------------------------------- files and overrides


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"{path}: {line}malformed YAML: {problem}") from None
    except ValueError as exc:  # a scalar YAML cannot build, e.g. the date 2024-13-01
        raise ScenarioError(f"{path}: malformed YAML value: {exc}") from None


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], *, source: str = "") -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a scenario mapping."""
    out = json.loads(json.dumps(data, default=str))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"{source or 'override'}: -s {item!r}: expected KEY.PATH=VALUE")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ScenarioError(f"{source or 'override'}: {key}: expected a mapping at {part!r} (got {child!r})")
            node = child
        node[parts[-1]] = value
    return out


def environment_to_scenario(env: Mapping[str, Any], *, name: str) -> dict[str, Any]:
    """The guide's ``config/data_generation.yaml`` environment entry as a scenario mapping."""
    known = {"num_customers", "avg_transactions", "date_range_days", "churn_rate",
             "add_corruption", "corruption_rate", "seed"}
    for key, value in env.items():
        if key not in known:
            _unknown("", f"environments.{name}.{key}", value, sorted(known))
    corrupt = env.get("corruption_rate", 0.02) if env.get("add_corruption") else 0.0
    out: dict[str, Any] = {
        "name": name,
        "description": f"The guide's {name} environment.",
        "calendar": {"days": env.get("date_range_days", 365)},
        "population": {"size": env.get("num_customers", 1000)},
        "targets": {
            "avg_transactions_per_customer": env.get("avg_transactions", 10),
            "churn_rate": env.get("churn_rate", 0.15),
        },
        "corruption": {"rate": corrupt},
    }
    if "seed" in env:
        out["seed"] = env["seed"]
    return out


def load_scenario(
    path: str | Path, *, overrides: Sequence[str] = (), env: str | None = None
) -> Scenario:
    """Load, override and validate a scenario file (or the guide's environments file).

    Args:
        path: a scenario YAML, or a file with a top-level ``environments:`` mapping.
        overrides: ``key.path=value`` strings applied before validation.
        env: the environment to pick from an environments file.
    """
    path = Path(path)
    src = str(path)
    data = _read_yaml(path)
    if data is None:
        _fail(src, "", None, "a scenario mapping (the file is empty)")
    if isinstance(data, Mapping) and "environments" in data:
        envs = data["environments"]
        if not isinstance(envs, Mapping) or not envs:
            _fail(src, "environments", envs, "a mapping of environment name to settings")
        if env is None:
            _fail(src, "environments", sorted(envs), "--env NAME to pick one of them")
        if env not in envs:
            near = difflib.get_close_matches(env, list(envs), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            _fail(src, f"environments.{env}", None, "one of " + ", ".join(envs) + hint)
        try:
            data = environment_to_scenario(envs[env], name=env)
        except ScenarioError as exc:
            raise ScenarioError(f"{src}: {exc}") from None
    elif env is not None:
        _fail(src, "environments", None, f"an environments file for --env {env}")
    if overrides:
        data = apply_overrides(data, overrides, source=src)
    return scenario_from_dict(data, source=src)
