"""The engine state checkpointed with every month: a Delta table of per-customer arrays plus metadata."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sim.engine.state import RunState, StoredShard, shard_agents
from sim.model.agents import Agents
from sim.model.calendar import Period
from sim.model.rates import TargetScales
from sim.scenario import scenario_from_dict

APP_ID = "churnsim"  # the Delta application transaction of every monthly commit
META_KEY = "churnsim"  # the commit metadata key of churnsim's own metadata
# A lake of another format is refused before a month is written. 2: customer_labels carries
# experiment_arms (a map), not experiment_arm; a month of the new schema cannot join a format-1 table.
# 3: the state is one file per shard, named in the state commit. 4: customers carry tier,
# trailing spend and change counters (customer_history); a format-3 lake has no history to continue.
# 5: draws are keyed by each customer's own counters, and customers carry their move/e-mail clock
# (change_clock): a format-4 lake continued here would not be the lake of one run.
STATE_FORMAT = 5
# The state commit's metadata maps each shard to its file (relative to the state table): a worker
# reads its own shard's state and nothing else.
STATE_FILES_KEY = "state_files"


def internal_dir(lake: Path) -> Path:
    """The lake's own files: state, scenario, intent, lock."""
    return lake / "_churnsim"


def package_version() -> str:
    from sim import __version__

    return __version__


def compatible(version: str) -> bool:
    return version.split(".")[:2] == package_version().split(".")[:2]


def shard_state_table(shard: int, agents: Agents) -> pa.Table:
    """One shard's state rows (the state table holds one file of them per shard)."""
    cols = agents.columns()
    cols["flags"] = cols["flags"].view(np.int64)  # Delta has no unsigned integers
    return pa.table({"shard": np.full(len(agents), shard, np.int32), **cols})


def state_schema() -> pa.Schema:
    return shard_state_table(0, Agents.empty()).schema


def state_table(state: RunState) -> pa.Table:
    parts = [shard_state_table(shard, shard_agents(agents)) for shard, agents in sorted(state.shards.items())]
    return pa.concat_tables(parts) if parts else state_schema().empty_table()


def agents_from(table: pa.Table) -> Agents:
    """One shard's state from its rows (the inverse of :func:`shard_state_table`)."""
    cols = {name: table.column(name).to_numpy() for name in table.column_names if name != "shard"}
    if "flags" in cols:
        cols["flags"] = cols["flags"].astype(np.int64).view(np.uint64)
    return Agents.from_columns(cols)


def read_state_file(where: str) -> Agents:
    """One shard's state from its file (a :class:`~sim.engine.state.StoredShard` reads itself so)."""
    import pyarrow.parquet as pq

    return agents_from(pq.read_table(where))


def state_file(state_dir: str | Path, meta: dict[str, Any], shard: int) -> str | None:
    """Where shard ``shard``'s state is, as the state commit with metadata ``meta`` left it (None: empty)."""
    rel = (meta.get(STATE_FILES_KEY) or {}).get(str(shard))
    return None if rel is None else f"{str(state_dir).rstrip('/')}/{rel}"


def read_shard_state(state_dir: str | Path, meta: dict[str, Any], shard: int) -> Agents:
    """Shard ``shard``'s state as the state commit with metadata ``meta`` left it (only its file is read)."""
    where = state_file(state_dir, meta, shard)
    return Agents.empty() if where is None else read_state_file(where)


def state_meta(state: RunState) -> dict[str, Any]:
    p = state.period
    return {
        "state_format": STATE_FORMAT,
        "package_version": package_version(),
        "scenario": state.scenario.to_dict(),
        "scenario_digest": state.scenario.digest(),
        "seed": state.scenario.seed,
        "calibration": asdict(state.scales),
        "initial_size": state.initial_size,
        "next_customer_id": state.next_customer_id,
        "next_transaction_id": state.next_transaction_id,
        "period": None if p is None else {"index": p.index, "start": p.start.isoformat(), "end": p.end.isoformat()},
        "shards": sorted(state.shards),
    }


def state_from(state_dir: str | Path, meta: dict[str, Any]) -> RunState:
    """The run state the state commit with metadata ``meta`` left; each shard's agents stay in
    its file (:class:`~sim.engine.state.StoredShard`) until whoever simulates the shard reads them."""
    scenario = scenario_from_dict(meta["scenario"], source="lake state")
    shards: dict[int, Agents | StoredShard] = {}
    for k in meta["shards"]:
        where = state_file(state_dir, meta, k)
        shards[k] = Agents.empty() if where is None else StoredShard(k, where, read_state_file)
    p = meta["period"]
    period = None if p is None else Period(p["index"], dt.date.fromisoformat(p["start"]), dt.date.fromisoformat(p["end"]))
    return RunState(scenario=scenario, scales=TargetScales(**meta["calibration"]),
                    initial_size=meta["initial_size"], next_customer_id=meta["next_customer_id"],
                    next_transaction_id=meta["next_transaction_id"], period=period, shards=shards)


def to_ipc(table: pa.Table | None) -> str | None:
    if table is None:
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


def from_ipc(text: str | None) -> pa.Table | None:
    return None if text is None else pa.ipc.open_stream(base64.b64decode(text)).read_all()
