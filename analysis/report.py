"""The lake report: one self-contained HTML page showing what was simulated and its truth.

:func:`write_report` reads the lake's tables, their Delta commit metadata and
``_churnsim/scenario.json`` (never the engine) and writes one HTML file: figures are embedded as
base64 PNGs, styles are inline, there is no script and nothing is fetched from a network.
Sections (each a ``<section id=...>``, :data:`SECTIONS`):

- ``simulated``: scenario, seed, calendar, population, package version, the months in the lake
  with the Delta version each table holds them at;
- ``truth``: segments, targets and calibration, drifts, interventions, experiments with their
  arms and the stated true effect (and the lake's own A/B read-out), corruption;
- ``tables``: rows and typed columns of every table, the quality dashboard per month and the
  corruption manifest by defect kind;
- ``trajectories``: the figures of :mod:`analysis.plots`;
- ``customers``: a sample of customer trajectories."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from analysis.ab import ab_readout
from analysis.figures import LakeFrames, figures, load_frames
from analysis.html import CSS, PAGE, cards_html, esc, figure_html, fmt, html_table, kv_html, section
from analysis.lake import data_files, read_table, table_path
from analysis.plots import has_experiment, ordered_segments
from analysis.quality_report import CUSTOMER_COLUMNS, TRANSACTION_COLUMNS, lake_dashboard, to_records

__all__ = ["SECTIONS", "render_report", "write_report"]

log = logging.getLogger(__name__)

SECTIONS = ("simulated", "truth", "tables", "trajectories", "customers")


# Tables in data-flow order; any other Delta table in the lake is listed after them.
_KNOWN_TABLES = ("raw_customers", "raw_transactions", "customer_labels", "daily_metrics", "customer_history",
                 "quality_manifest",
                 "customer_features")


_META_KEY = "churnsim"


_TYPE_NAMES = {"date32[day]": "date", "timestamp[us, tz=UTC]": "timestamp (UTC)", "large_string": "string"}






def _tables(lake: Path) -> list[str]:
    found = {p.parent.name for p in lake.glob("*/_delta_log") if not p.parent.name.startswith("_")}
    return [t for t in _KNOWN_TABLES if t in found] + sorted(found - set(_KNOWN_TABLES))


def _commits(path: str) -> list[dict[str, Any]]:
    """Each commit of a Delta table, oldest first, with its churnsim metadata parsed."""
    out = []
    for h in DeltaTable(path).history():
        meta = h.get(_META_KEY)
        try:
            meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
        except json.JSONDecodeError:
            meta = {}
        out.append({"version": h.get("version"), "operation": h.get("operation"), "meta": meta})
    return sorted(out, key=lambda c: c["version"])


def _table_info(lake: Path, name: str) -> dict[str, Any]:
    dtab = DeltaTable(table_path(lake, name))
    schema = dtab.schema().to_arrow()
    schema = schema if isinstance(schema, pa.Schema) else pa.schema(schema)  # deltalake 1.x: arro3
    files = data_files(dtab)
    rows = ds.dataset(files, format="parquet").count_rows() if files else 0
    fields = [(f.name, _TYPE_NAMES.get(str(f.type), str(f.type))) for f in schema]
    return {"name": name, "version": dtab.version(), "rows": rows, "columns": fields,
            "commits": _commits(table_path(lake, name))}


def _month_versions(infos: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Months named in commit metadata and, per table, the Delta version that wrote each."""
    by_table: dict[str, dict[str, int]] = {}
    months: set[str] = set()
    for info in infos:
        for c in info["commits"]:
            m = c["meta"].get("month")
            if m:
                by_table.setdefault(info["name"], {})[m] = c["version"]  # a re-commit of a month: latest wins
                months.add(m)
    return sorted(months), by_table


def _state_meta(lake: Path) -> dict[str, Any]:
    """The engine state's last commit metadata (calibration, package version), if any."""
    path = lake / "_churnsim" / "state"
    if not (path / "_delta_log").exists():
        return {}
    hist = DeltaTable(str(path)).history(limit=1)
    meta = hist[0].get(_META_KEY) if hist else None
    try:
        return json.loads(meta) if isinstance(meta, str) else {}
    except json.JSONDecodeError:
        return {}


def _simulated(scn: Mapping[str, Any], frames: LakeFrames, infos: Sequence[Mapping[str, Any]],
               state: Mapping[str, Any], lake: Path) -> str:
    cal = scn.get("calendar") or {}
    pop = scn.get("population") or {}
    labels = frames.labels
    last = pd.to_datetime(labels["label_date"]).max() if len(labels) else pd.NaT
    at_last = labels[pd.to_datetime(labels["label_date"]) == last] if len(labels) else labels
    months, by_table = _month_versions(infos)
    metas = [c["meta"] for i in infos for c in i["commits"]]
    versions = sorted({m["package_version"] for m in metas if m.get("package_version")})
    digests = sorted({m["scenario_digest"] for m in metas if m.get("scenario_digest")})
    metric_dates = pd.to_datetime(frames.metrics["metric_date"]) if len(frames.metrics) else pd.Series([], dtype="M8[ns]")
    manifest_rows = next((i["rows"] for i in infos if i["name"] == "quality_manifest"), 0)
    cards = cards_html([
        ("customers in the lake", int(frames.customers["customer_id"].nunique())),
        ("transactions", next((i["rows"] for i in infos if i["name"] == "raw_transactions"), 0)),
        ("months", len(months)),
        (f"churned at {fmt(last)}", f"{at_last['churned'].mean():.1%}" if len(at_last) else None),
        ("latent dropouts by then", f"{at_last['dropped_out'].mean():.1%}" if len(at_last) else None),
        ("revenue", float(frames.transactions["amount"].sum())),
        ("injected defects", manifest_rows),
        ("drifts · interventions · experiments",
         " · ".join(str(len(scn.get(k) or [])) for k in ("drifts", "interventions", "experiments"))),
    ])
    truth = _truth_lines(scn)
    cards += ("<h3>Ground truth in brief</h3><ul class=\"truth\">" + "".join(f"<li>{esc(t)}</li>" for t in truth)
              + "</ul>")
    span = (cal.get("days") and f"{cal['days']} days") or (cal.get("months") and f"{cal['months']} months") or "–"
    kv = kv_html([
        ("scenario", scn.get("name", "–")),
        ("description", scn.get("description") or "–"),
        ("seed", scn.get("seed")),
        ("calendar", f"from {cal.get('start_date', '–')} for {span}"),
        ("simulated days in daily_metrics",
         f"{fmt(metric_dates.min())} .. {fmt(metric_dates.max())}" if len(metric_dates) else "–"),
        ("population", f"{fmt(pop.get('size'))} customers at the start"
                       + (f", {pop.get('acquisition', {}).get('share', 0):.0%} more acquired over the run"
                          if (pop.get("acquisition") or {}).get("share") else "")),
        ("package version", ", ".join(versions) or state.get("package_version") or "–"),
        ("scenario digest", ", ".join(digests) or state.get("scenario_digest") or "–"),
        ("lake", str(lake)),
    ])
    grid = html_table(["table", *months], [[i["name"], *[by_table.get(i["name"], {}).get(m) for m in months]]
                                       for i in infos if i["name"] in by_table])
    return cards + kv + "<h3>Months in the lake: the Delta version at which each table holds each month</h3>" + grid


def _truth_lines(scn: Mapping[str, Any]) -> list[str]:
    """One line per drift, intervention and experiment (or one saying there are none)."""
    out = []
    for d in scn.get("drifts") or []:
        how = f"×{d['multiplier']:g}" if d.get("parameter") != "acquisition_mix" else "new mix"
        ramp = f", ramp over {d.get('ramp_days')} days" if d.get("shape") == "ramp" else ", step"
        out.append(f"drift {d['name']}: {d.get('parameter')} {how} for {d.get('segment') or 'all segments'} "
                   f"from {d.get('start')}{ramp}")
    for i in scn.get("interventions") or []:
        out.append(f"intervention {i['name']} ({i.get('kind')}): {_multipliers(i)} for {_target(i.get('target'))}, "
                   f"{i.get('start')} for {i.get('days')} days")
    for e in scn.get("experiments") or []:
        tr = e.get("treatment") or {}
        out.append(f"experiment {e['name']}: assigned {e.get('assign_date')} ({_target(e.get('eligible'))}), "
                   f"{float(e.get('treatment_share', 0.5)):.0%} treated with {_multipliers(tr)} for {tr.get('days')} "
                   "days, the rest control")
    corr = scn.get("corruption") or {}
    if corr.get("rate") or any((corr.get("rates") or {}).values()):
        out.append(f"corruption: rate {corr.get('rate') or 0:g}, every defect in quality_manifest")
    return out or ["no drifts, interventions or experiments: one steady run"]


def _multipliers(d: Mapping[str, Any]) -> str:
    parts = [f"{k.removesuffix('_multiplier')} ×{v:g}" for k, v in sorted(d.items())
             if k.endswith("_multiplier") and isinstance(v, (int, float)) and v != 1.0]
    return ", ".join(parts) or "none (all ×1)"


def _target(d: Mapping[str, Any] | None) -> str:
    d = d or {}
    parts = [f"segment {d['segment']}" if d.get("segment") else "all segments"]
    if d.get("inactive_days"):
        parts.append(f"no purchase for {d['inactive_days']:g}+ days")
    return ", ".join(parts)


def _arms(e: Mapping[str, Any]) -> list[list[Any]]:
    """Arm, share and the treatment each arm gets: the recorded effect per arm."""
    if isinstance(e.get("arms"), list):  # a scenario that names its arms
        return [[a.get("name", f"arm {i}"), a.get("share"), a.get("days", (e.get("treatment") or {}).get("days")),
                 _multipliers(a.get("treatment") or a)] for i, a in enumerate(e["arms"])]
    tr = e.get("treatment") or {}
    share = float(e.get("treatment_share", 0.5))
    return [["treatment", share, tr.get("days"), _multipliers(tr)], ["control", 1.0 - share, None, "none (all ×1)"]]


def _readout(frames: LakeFrames, e: Mapping[str, Any]) -> str:
    tables = {"customer_labels": frames.labels, "raw_transactions": frames.transactions}
    try:
        r = ab_readout(tables, e)
    except ValueError as exc:
        return f'<p class="note">A/B read-out from the lake: not available ({esc(exc)}).</p>'
    arms = r["arms"]
    rows = [[m, arms["treatment"][m], arms["control"][m], row["ab"]["estimate"],
             f"[{row['ab']['ci_low']:+.3g}, {row['ab']['ci_high']:+.3g}]"] for m, row in r["metrics"].items()]
    return (f"<p>Observed in the lake ({arms['treatment']['n']:,} treated, {arms['control']['n']:,} control; churn "
            f"at {esc(r['outcome_label_date'])}):</p>"
            + html_table(["outcome", "treatment", "control", "difference", "95 % CI"], rows)
            + '<p class="note">The counterfactual (paired) true effect needs a twin run: '
              f"<code>churnsim ab {esc(frames.scenario.get('name', 'SCENARIO'))}</code>.</p>")


def _truth(scn: Mapping[str, Any], frames: LakeFrames, state: Mapping[str, Any], timeline: str) -> str:
    out = [timeline]
    segs = (scn.get("population") or {}).get("segments") or {}
    if segs:
        cols = ["share", "purchase_rate", "decay_per_year", "dropout_hazard", "spend_median", "regularity"]
        out.append("<h3>Segments</h3>" + html_table(["segment", *cols],
                                                 [[n, *[segs[n].get(c) for c in cols]] for n in ordered_segments(segs)]))
    targets = {k: v for k, v in (scn.get("targets") or {}).items() if v is not None}
    cal = state.get("calibration") or {}
    out.append("<h3>Targets and calibration</h3>" + kv_html([
        ("targets", ", ".join(f"{k} {v:g}" for k, v in targets.items()) or "none"),
        ("calibration (scales the run applied)", ", ".join(f"{k} {v:.4g}" for k, v in sorted(cal.items())) or "–"),
    ]))
    drifts = scn.get("drifts") or []
    out.append("<h3>Drifts</h3>" + (html_table(
        ["name", "parameter", "segment", "onset", "shape", "magnitude"],
        [[d.get("name"), d.get("parameter"), d.get("segment") or "all", d.get("start"),
          d.get("shape", "step") + (f" over {d.get('ramp_days')} days" if d.get("shape") == "ramp" else ""),
          (f"×{d['multiplier']:g}" if d.get("parameter") != "acquisition_mix" else f"mix {fmt(d.get('mix'))}")]
         for d in drifts]) if drifts else '<p class="none">None: parameters stay as set for the whole run.</p>'))
    ivs = scn.get("interventions") or []
    out.append("<h3>Interventions</h3>" + (html_table(
        ["name", "kind", "start", "days", "reaches", "effect"],
        [[i.get("name"), i.get("kind"), i.get("start"), i.get("days"), _target(i.get("target")), _multipliers(i)]
         for i in ivs]) if ivs else '<p class="none">None.</p>'))
    exps = scn.get("experiments") or []
    out.append("<h3>Experiments</h3>")
    if not exps:
        out.append('<p class="none">None.</p>')
    for e in exps:
        out.append(f"<h4>{esc(e.get('name'))}</h4>" + kv_html([
            ("assigned", e.get("assign_date")), ("eligible", _target(e.get("eligible"))),
            ("stated true effect", e.get("note") or "–")]))
        out.append(html_table(["arm", "share", "treatment days", "true effect on the arm (multipliers)"], _arms(e)))
        if has_experiment(frames.labels):
            out.append(_readout(frames, e))
    corr = scn.get("corruption") or {}
    rates = {k: v for k, v in (corr.get("rates") or {}).items() if v}
    out.append("<h3>Corruption</h3>" + kv_html([
        ("rate", corr.get("rate") or 0.0),
        ("per-kind rates", ", ".join(f"{k} {v:g}" for k, v in sorted(rates.items())) or "–")]))
    return "".join(out)


def _tables_section(lake: Path, infos: Sequence[Mapping[str, Any]], months: Sequence[str]) -> str:
    out = [html_table(["table", "rows", "Delta version", "months", "columns"],
                  [[i["name"], i["rows"], i["version"],
                    len({c["meta"].get("month") for c in i["commits"] if c["meta"].get("month")}) or None,
                    ", ".join(f"{n}: {t}" for n, t in i["columns"])] for i in infos], cls="tables")]
    frame = lake_dashboard(lake)
    recs = to_records(frame)
    out.append("<h3>Quality dashboard per month</h3>")
    # The guide's two queries side by side rather than one table wider than the page.
    for title, cols in (("customers (raw_customers, by the month that wrote them)", CUSTOMER_COLUMNS),
                        ("transactions (raw_transactions, by transaction_date)", TRANSACTION_COLUMNS)):
        headers = ["month", *cols]
        out.append(f"<h4>{esc(title)}</h4>")
        out.append(html_table(headers, [[r[h] for h in headers] for r in recs if any(r[c] for c in cols)],
                          cls="small"))
    if any(i["name"] == "quality_manifest" for i in infos):
        m = read_table(lake, "quality_manifest", columns=["table", "rule", "column", "month"]).to_pandas()
        rows_of = {i["name"]: i["rows"] for i in infos}
        g = m.groupby(["table", "rule"], sort=True)
        rows = [[t, r, ", ".join(sorted(x["column"].dropna().unique())), len(x),
                 f"{len(x) / rows_of[t]:.2%}" if rows_of.get(t) else None,
                 f"{x['month'].min()} .. {x['month'].max()}"] for (t, r), x in g]
        out.append("<h3>Corruption manifest by defect kind</h3>"
                   + (html_table(["table", "defect", "column", "rows", "share of table", "months"], rows)
                      if rows else '<p class="none">No defects injected.</p>'))
    else:
        out.append('<p class="none">No quality_manifest: the run injected no corruption.</p>')
    return "".join(out)


def _truth_timeline(scn: Mapping[str, Any], start: pd.Timestamp, end: pd.Timestamp) -> str:
    """Drifts (onset, ramp, then held to the end), intervention and treatment windows on the calendar."""
    rows: list[tuple[str, str, pd.Timestamp, pd.Timestamp]] = []
    for d in scn.get("drifts") or []:
        a = pd.Timestamp(d["start"])
        ramp = pd.Timedelta(days=int(d.get("ramp_days") or 60)) if d.get("shape") == "ramp" else pd.Timedelta(0)
        rows.append(("drift", f"drift {d['name']} ({d.get('parameter')})", a, a + ramp))
    for i in scn.get("interventions") or []:
        a = pd.Timestamp(i["start"])
        rows.append(("intervention", f"intervention {i['name']}", a, a + pd.Timedelta(days=int(i.get("days") or 30))))
    for e in scn.get("experiments") or []:
        a = pd.Timestamp(e["assign_date"])
        days = int((e.get("treatment") or {}).get("days") or 30)
        rows.append(("experiment", f"experiment {e['name']} (treatment)", a, a + pd.Timedelta(days=days)))
    if not rows:
        return ('<p class="none" id="fig-truth_timeline" data-figure="truth_timeline">No drifts, interventions or '
                "experiments: a steady run under the parameters below.</p>")
    colors = {"drift": "tab:red", "intervention": "tab:green", "experiment": "tab:purple"}
    fig, ax = plt.subplots(figsize=(11, 0.9 + 0.42 * len(rows)))
    for y, (kind, _, a, b) in enumerate(rows):
        color = colors[kind]
        if b > a:  # a window, or a drift's ramp
            ax.barh(y, (b - a).days, left=a, height=0.5, color=color, alpha=0.45)
        ax.plot([a], [y], marker="|", markersize=16, markeredgewidth=2.5, color=color)
        if kind == "drift":  # the drifted value holds to the end of the run
            ax.plot([b, end], [y, y], color=color, linewidth=2.5, alpha=0.6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[1] for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(start, end)
    ax.grid(axis="x", alpha=0.3)
    return figure_html("truth_timeline", fig)


def render_report(lake: str | Path, *, customers: int = 20) -> str:
    """The report page of ``lake`` as one HTML string.

    Args:
        lake: the lake directory.
        customers: how many customer trajectories to draw (stratified by segment, seeded by the
            scenario's seed).

    Raises:
        ValueError: the lake has no customers or labels to report on.
    """
    root = Path(lake)
    frames = load_frames(root)
    if frames.labels.empty or frames.customers.empty:
        raise ValueError(f"{root}: the lake has no customers or labels yet")
    state = _state_meta(root)
    if not frames.scenario and isinstance(state.get("scenario"), dict):
        # No scenario.json: the engine state's commit records the scenario too.
        frames = dataclasses.replace(frames, scenario=state["scenario"])
    scn = frames.scenario
    infos = [_table_info(root, t) for t in _tables(root)]
    months, _ = _month_versions(infos)
    cal = scn.get("calendar") or {}
    start = pd.Timestamp(cal["start_date"]) if cal.get("start_date") else pd.to_datetime(
        frames.metrics["metric_date"]).min()
    end = pd.to_datetime(frames.labels["label_date"]).max()
    figs = {name: figure_html(name, fig, heading=name != "customers") for name, fig in figures(frames, customers=customers)}
    trajectories = "".join(v for k, v in figs.items() if k != "customers")
    parts = [
        section("simulated", "What was simulated", _simulated(scn, frames, infos, state, root)),
        section("truth", "Ground truth", _truth(scn, frames, state, _truth_timeline(scn, start, end))),
        section("tables", "Tables", _tables_section(root, infos, months)),
        section("trajectories", "Trajectories", trajectories),
        section("customers", "Customer trajectories", figs.get("customers", '<p class="none">None drawn '
                                                                 "(customers=0).</p>")),
    ]
    titles = {"simulated": "What was simulated", "truth": "Ground truth", "tables": "Tables",
              "trajectories": "Trajectories", "customers": "Customers"}
    nav = "".join(f'<a href="#{s}">{titles[s]}</a>' for s in SECTIONS)
    versions = sorted({c["meta"]["package_version"] for i in infos for c in i["commits"]
                       if c["meta"].get("package_version")})
    name = scn.get("name") or root.name
    subtitle = (f"{scn.get('description') or ''} — seed {scn.get('seed', '–')}, "
                f"{fmt(start)} .. {fmt(end)}, {len(months)} months")
    return PAGE.substitute(title=esc(f"churnsim lake report: {name}"), subtitle=esc(subtitle), css=CSS,
                            nav=nav, body="".join(parts), version=esc(", ".join(versions) or "–"))


def write_report(lake: str | Path, path: str | Path, *, customers: int = 20) -> Path:
    """Write :func:`render_report` to ``path`` (whole or not at all: a temporary file, then a rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)  # fails before the work if it cannot be made
    page = render_report(lake, customers=customers)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%d bytes)", out, len(page))
    return out
