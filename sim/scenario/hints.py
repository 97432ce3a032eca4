"""Error messages that say where: the key path, the value, what was expected, the nearest name."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from sim.errors import ScenarioError

__all__ = ["did_you_mean", "fail", "unknown"]


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest valid name, or an empty string."""
    near = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def fail(src: str, path: str, value: Any, expected: str) -> typing.NoReturn:
    where = f"{src}: " if src else ""
    raise ScenarioError(f"{where}{path or '<root>'}: expected {expected} (got {value!r})")


def unknown(src: str, path: str, value: Any, valid: Sequence[str]) -> typing.NoReturn:
    key = path.rsplit(".", 1)[-1]
    where = f"{src}: " if src else ""
    raise ScenarioError(f"{where}{path}: unknown key{did_you_mean(key, valid)}; "
                        f"expected one of {', '.join(valid)} (got {value!r})")
