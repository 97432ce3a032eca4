"""A scenario mapping (as read from YAML) converted to the frozen dataclasses, field by field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sim.scenario.checks import check_scenario
from sim.scenario.hints import did_you_mean, fail, unknown
from sim.scenario.schema import SCHEMA_VERSION, SEGMENT_NAMES, Scenario

__all__ = ["default_segments", "scenario_from_dict"]


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
            fail(src, path, value, "a mapping")
        return _build(tp, value, src, path)
    if origin is Literal:
        if value not in args:
            hint = did_you_mean(str(value), [str(a) for a in args])
            fail(src, path, value, "one of " + ", ".join(map(repr, args)) + hint)
        return value
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            fail(src, path, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, src, f"{path}[{i}]", {}) for i, v in enumerate(value))
        if len(value) != len(args):
            fail(src, path, value, f"a list of {len(args)} numbers [low, high]")
        out = tuple(_convert(a, v, src, f"{path}[{i}]", {}) for i, (a, v) in enumerate(zip(args, value, strict=True)))
        if out[0] > out[1]:
            fail(src, path, list(value), "[low, high] with low <= high")
        return out
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            fail(src, path, value, "a mapping")
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
            fail(src, path, value, "a date (YYYY-MM-DD)")
    if tp is bool:
        if not isinstance(value, bool):
            fail(src, path, value, "true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            fail(src, path, value, "a string")
        return value
    if tp in (int, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if tp is int and ok and float(value) != int(value):
            ok = False
        if not ok:
            fail(src, path, value, _describe(tp))
        value = tp(value)
        lo, hi, open_lo = meta.get("lo"), meta.get("hi"), meta.get("open_lo", False)
        if lo is not None and (value < lo or (open_lo and value == lo)) or hi is not None and value > hi:
            lo_b = "(" if open_lo else "["
            fail(src, path, value, f"{_describe(tp)} in {lo_b}{lo}, {hi}]")
        return value
    raise TypeError(f"unsupported field type {tp!r}")  # a bug in this module, not in the input


def _build(cls: type, data: Mapping[str, Any], src: str, path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            unknown(src, _join(path, key), data[key], list(fields))
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], src, _join(path, name), f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(src, _join(path, name), None, f"{_describe(hints[name])} (required key missing)")
    return cls(**kwargs)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def default_segments() -> dict[str, dict[str, Any]]:
    """The guide's segment table as parameters (see scenarios/README.md for each number's source)."""
    from sim.scenario.defaults import DEFAULT_SEGMENTS

    return {k: dict(v) for k, v in DEFAULT_SEGMENTS.items()}


def scenario_from_dict(data: Mapping[str, Any], *, source: str = "") -> Scenario:
    """Validate a scenario mapping (as read from YAML) and return the frozen :class:`Scenario`."""
    if not isinstance(data, Mapping):
        fail(source, "", data, "a mapping at the top level")
    data = dict(data)
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        fail(source, "schema_version", version, f"{SCHEMA_VERSION}")
    pop = dict(data.get("population") or {})
    if not isinstance(data.get("population", {}), Mapping):
        fail(source, "population", data["population"], "a mapping")
    given = pop.get("segments") or {}
    if not isinstance(given, Mapping):
        fail(source, "population.segments", given, "a mapping of segment name to parameters")
    merged = default_segments()
    for name, params in given.items():
        if name not in merged:
            unknown(source, f"population.segments.{name}", params, SEGMENT_NAMES)
        if not isinstance(params, Mapping):
            fail(source, f"population.segments.{name}", params, "a mapping")
        merged[name].update(params)
    pop["segments"] = merged
    data["population"] = pop
    cal = data.get("calendar")
    if cal is None or (isinstance(cal, Mapping) and "days" not in cal and "months" not in cal):
        data["calendar"] = {**(cal or {}), "months": 12}
    scenario = _build(Scenario, data, source, "")
    check_scenario(scenario, source)
    return scenario
