"""What a lake holds, read without writing anything; the lake's own files (``_churnsim/``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from sim.batch.tables import TABLES
from sim.errors import ScenarioError
from sim.lake.plan import LakeStatus
from sim.lake.state import (
    META_KEY,
    STATE_FILES_KEY,
    STATE_FORMAT,
    compatible,
    internal_dir,
    package_version,
    state_from,
)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Atomic: a reader sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# What reading a damaged file or Delta log can raise: JSON and Arrow errors are ValueErrors.
_UNREADABLE = (DeltaError, OSError, ValueError, KeyError, TypeError, pa.ArrowException)


def _read_intent(path: Path) -> dict[str, Any] | None:
    intent = read_json(path)
    if intent is not None and not (isinstance(intent, dict) and intent.get("command") in ("run", "append")
                                   and isinstance(intent.get("target_period"), int)
                                   and (intent["command"] == "run" or isinstance(intent.get("scenario"), dict))):
        raise ValueError("not a churnsim intent (expected command, target_period and, for append, scenario)")
    return intent


def lake_status(lake: str | Path) -> LakeStatus:
    """Inspect a lake (read-only). A file that cannot be read is reported in ``damaged``, not raised."""
    lake = Path(lake)
    damaged: list[str] = []
    intent_path = internal_dir(lake) / "intent.json"
    try:
        intent = _read_intent(intent_path)
    except _UNREADABLE as exc:
        intent = None
        damaged.append(f"{intent_path}: unreadable ({_first_line(exc)}); it records what the last run or append "
                       "set out to do: restore it, or delete it and continue with `churnsim append --until YYYY-MM`, "
                       "or rerun `churnsim run` with --overwrite")
    state = meta = None
    incompatible = None
    state_path = internal_dir(lake) / "state"
    try:
        if DeltaTable.is_deltatable(str(state_path)):
            dt_ = DeltaTable(str(state_path))
            meta = json.loads(dt_.history(1)[0][META_KEY])
            if meta.get("state_format") != STATE_FORMAT or not compatible(meta.get("package_version", "")):
                incompatible = (f"made by churnsim {meta.get('package_version')} (state format "
                                f"{meta.get('state_format')}); this is {package_version()}, which cannot continue it")
            else:
                state = state_from(state_path, meta)
                # The shards' files are read by whoever simulates them; that they are there is checked now.
                files = {u.rsplit("/", 1)[-1] for u in dt_.file_uris()}  # state files sit in no partition
                for k, rel in (meta.get(STATE_FILES_KEY) or {}).items():
                    if rel not in files:
                        raise ValueError(f"shard {k}'s state {rel} is not in the state table")
                    if not (state_path / rel).is_file():
                        raise FileNotFoundError(f"shard {k}'s state {state_path / rel} is missing")
    except _UNREADABLE as exc:
        state = meta = None
        damaged.append(f"{state_path}: unreadable ({_first_line(exc)}); the lake cannot be continued without it: "
                       "restore it, or rerun `churnsim run` with --overwrite to make the lake again")
    has_tables = False
    digest = None
    for t in TABLES:
        try:
            if not DeltaTable.is_deltatable(str(lake / t)):
                continue
            has_tables = True
            if digest is None:
                first = [h for h in DeltaTable(str(lake / t)).history() if META_KEY in h]
                if first:
                    digest = json.loads(first[-1][META_KEY]).get("scenario_digest")
        except _UNREADABLE as exc:
            has_tables = True
            damaged.append(f"{lake / t}: unreadable ({_first_line(exc)}); restore it, or rerun `churnsim run` "
                           "with --overwrite to make the lake again")
    return LakeStatus(lake, has_tables, state, meta, intent, digest,
                      damaged=damaged[0] if damaged else None, incompatible=incompatible)


def lake_dir(lake: str | Path) -> Path:
    """``lake`` as a local directory (a ``file://`` URI is one), refused before anything is written
    when it is, or is inside, a Delta table, or is an object-store URI."""
    lake = Path(local_path(lake))
    resolved = lake.resolve()
    for p in (resolved, *resolved.parents):
        if (p / "_delta_log").is_dir():
            where = "is the Delta table" if p == resolved else "is inside the Delta table"
            parent = p.parent.parent if p.parent.name == "_churnsim" else p.parent
            raise ScenarioError(f"{lake}: expected a lake directory (the one that holds the tables); it {where} {p} "
                                f"(did you mean {parent}?)")
    return lake


def local_path(lake: str | Path) -> str | Path:
    """A ``file://`` URI as its path; an object-store URI refused: the lake's lock is a file lock
    (``flock``), so writers need a local or mounted path (on Databricks, ``/Volumes/...``)."""
    text = str(lake)
    if text.startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise ScenarioError(f"{text}: expected a file:// URI of this machine (file:///path), got host {parsed.netloc!r}")
        return unquote(parsed.path)
    scheme = text.partition("://")[0]
    if "://" in text and scheme.isidentifier():
        raise ScenarioError(f"{text}: expected a local directory or a file:// URI; object-store lakes ({scheme}://) are written "
                            "through a mounted path (e.g. /Volumes/... on Databricks), because the lake's lock "
                            "is a file lock")
    return lake
