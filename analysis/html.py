"""HTML pieces of the lake report: escaping, tables, key-value lists, embedded figures, sections, the page."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.plots import DPI

__all__ = [
    "CAPTIONS",
    "CSS",
    "PAGE",
    "TITLES",
    "cards_html",
    "esc",
    "figure_html",
    "fmt",
    "html_table",
    "kv_html",
    "section",
]

_PERCENT = re.compile(r"^[+-]?[\d.,]+ ?%$")




def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def fmt(v: Any) -> str:
    """A cell value as text: thousands separators, four significant digits, ISO dates, '-' for none."""
    if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, (dt.date, pd.Timestamp)):
        return v.isoformat()[:10]
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _td(v: Any) -> str:
    numeric = (isinstance(v, (int, float, np.number)) and not isinstance(v, bool)) or (
        isinstance(v, str) and _PERCENT.match(v) is not None)
    return f'<td class="n">{esc(fmt(v))}</td>' if numeric else f"<td>{esc(fmt(v))}</td>"


def kv_html(pairs: Iterable[tuple[str, Any]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in pairs) + "</dl>"


def _png(fig: Figure) -> str:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(name: str, fig: Figure, *, heading: bool = True) -> str:
    title = f"<h3>{esc(TITLES.get(name, name))}</h3>" if heading else ""
    return (f'<figure class="fig" id="fig-{name}" data-figure="{name}">{title}'
            f'<img alt="{esc(TITLES.get(name, name))}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{esc(CAPTIONS.get(name, ''))}</figcaption></figure>")


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


def cards_html(pairs: Iterable[tuple[str, Any]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="cv">{esc(fmt(v))}</div><div class="ck">{esc(k)}</div></div>'
        for k, v in pairs) + "</div>"


CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1f3b5a;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:24px} header p{margin:0;opacity:.85}
nav{background:#16304b;padding:6px 32px;position:sticky;top:0}
nav a{color:#cfe3ff;margin-right:18px;text-decoration:none;font-weight:600}
main{max-width:1280px;margin:0 auto;padding:8px 32px 40px}
section{background:#fff;border-radius:8px;margin:18px 0;padding:8px 22px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{border-bottom:2px solid #1f3b5a;padding-bottom:4px} h3{margin:18px 0 6px} h4{margin:14px 0 4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin:10px 0 14px}
.card{background:#eef3f9;border-radius:6px;padding:10px 12px} .cv{font-size:20px;font-weight:700;color:#1f3b5a}
.ck{font-size:12px;color:#556}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:6px 0}
dl.kv dt{font-weight:600;color:#445} dl.kv dd{margin:0}
.scroll{overflow-x:auto} table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #d5dbe3;padding:3px 8px;text-align:left;vertical-align:top;white-space:nowrap}
table.tables td:last-child{white-space:normal}
th{background:#e6ecf3} tr:nth-child(even) td{background:#f8fafc}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.small{font-size:11.5px} table.tables td:last-child{font-family:monospace;font-size:11.5px}
figure.fig{margin:14px 0} figure.fig img{max-width:100%;height:auto;border:1px solid #e2e6ec}
figcaption{color:#556;font-size:12.5px} .none{color:#667;font-style:italic} .note{color:#556;font-size:12.5px}
ul.truth{margin:4px 0 12px;padding-left:22px} ul.truth li{margin:2px 0}
footer{text-align:center;color:#889;font-size:12px;padding:10px}
"""


PAGE = string.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title><style>$css</style></head>
<body><header><h1>$title</h1><p>$subtitle</p></header>
<nav>$nav</nav>
<main>$body</main>
<footer>churnsim $version · generated from the lake's tables, commit metadata and _churnsim/scenario.json</footer>
</body></html>
""")


CAPTIONS = {
    "activity": "Active customers, daily revenue and transactions per segment; vertical lines mark "
                "interventions (green), drift onsets (red) and experiment assignments (purple).",
    "cohort_retention": "Cohort retention: the share of each signup-month cohort purchasing in each month since "
                        "signup.",
    "intensity_hazard": "Purchase intensity per active customer and the empirical dropout hazard, by segment.",
    "churn_vs_recency": "Share churned 60 days later against recency at the feature date, by segment.",
    "ab_arms": "Experiment arms: purchases and revenue per assigned customer per day.",
    "customers": "One row per sampled customer: purchases as ticks (height grows with amount), the life line "
                 "coloured by segment in force, segment changes where a month end first shows them, the latent "
                 "dropout (cross; dotted after), months labelled churned shaded red.",
    "truth_timeline": "The ground truth on the calendar: drift onsets (and ramps), intervention and "
                      "treatment windows.",
}


TITLES = {"activity": "Activity, revenue and transactions", "cohort_retention": "Cohort retention",
           "intensity_hazard": "Intensity and dropout hazard", "churn_vs_recency": "Churn against recency",
           "ab_arms": "A/B arms", "customers": "Customer trajectories", "truth_timeline": "Truth timeline"}
