"""Digest every table of every shipped scenario, run straight and as run + append.

Usage: ``python tests/tools/digest.py [--size N] [--months M] [--out FILE]``. Prints one line per
(scenario, mode, table): a SHA-256 of the table's rows in a canonical order, read back with
pyarrow over the Delta log's files (an independent reader). Two commits that should not change
behaviour print the same lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable


def table_digest(path: Path) -> str:
    dt_ = DeltaTable(str(path))
    t = ds.dataset(dt_.file_uris(), format="parquet").to_table()
    t = t.select(sorted(t.column_names))
    # Nested columns (customer_labels.experiment_arms, a map) do not sort; the others key every row.
    t = t.sort_by([(c, "ascending") for c in t.column_names if not pa.types.is_nested(t.schema.field(c).type)])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        for batch in t.to_batches(max_chunksize=1 << 16):
            w.write_batch(batch)
    return f"{t.num_rows}:{hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]}"


def lake_digests(lake: Path) -> dict[str, str]:
    return {p.name: table_digest(p) for p in sorted(lake.iterdir())
            if p.is_dir() and not p.name.startswith("_") and DeltaTable.is_deltatable(str(p))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1500)
    ap.add_argument("--months", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from sim.execute import runs
    from sim.scenario import load_scenario
    from sim.scenario.shipped import shipped, shipped_path

    out: dict[str, dict[str, str]] = {}
    for name in sorted(shipped()):
        if name == "environments":
            continue
        s = load_scenario(shipped_path(name), overrides=[f"population.size={args.size}"])
        with tempfile.TemporaryDirectory() as tmp:
            straight, split = Path(tmp, "run"), Path(tmp, "split")
            runs.run(s, straight, months=args.months)
            runs.run(s, split, months=args.months // 2)
            runs.append(split, months=args.months - args.months // 2)
            for mode, lake in (("run", straight), ("run+append", split)):
                for table, digest in lake_digests(lake).items():
                    out[f"{name} {mode} {table}"] = digest
                    print(f"{name} {mode} {table} {digest}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
