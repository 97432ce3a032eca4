"""The lake report: the page renders in headless Chromium with every section and figure, no
console error and a non-blank screenshot; it states the scenario's truth; the customer sample."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.lake import read_table
from analysis.report import SECTIONS, render_report
from analysis.trajectories import sample_customers
from sim.cli import main

# A small lake with every kind of truth: a ramped drift, an intervention, an experiment whose
# 60-day window fits (assign 2024-02-02, run to 2024-04-30) and corruption.
REPORT_SCENARIO: dict = {
    "name": "report_mix",
    "description": "Drift, intervention, experiment and corruption in four months.",
    "seed": 21,
    "calendar": {"start_date": "2024-01-01", "months": 4},
    "population": {"size": 1500},
    "interventions": [{"name": "winter_push", "kind": "retention_campaign", "start": "2024-01-20", "days": 14,
                       "target": {"segment": "senior_declining"}, "intensity_multiplier": 1.5}],
    "drifts": [{"name": "spend_ramp", "parameter": "spend_median", "start": "2024-03-01", "shape": "ramp",
                "ramp_days": 30, "multiplier": 1.3}],
    "experiments": [{"name": "winback", "assign_date": "2024-02-02", "eligible": {"inactive_days": 30},
                     "treatment_share": 0.5,
                     "treatment": {"days": 30, "intensity_multiplier": 1.6, "hazard_multiplier": 0.5},
                     "note": "stated effect for the test"}],
    "corruption": {"rate": 0.02},
}
FIGURES = ["truth_timeline", "activity", "cohort_retention", "intensity_hazard", "churn_vs_recency", "ab_arms",
           "customers"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def report_lake(tmp_path_factory, lake_builder):
    return lake_builder(REPORT_SCENARIO, tmp_path_factory.mktemp("report_lake"))


@pytest.fixture(scope="module")
def page(report_lake, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = CliRunner().invoke(main, ["report", "--lake", str(report_lake), "--html", str(out), "--customers", "12"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(out)
    return out


def _chromium(page, tmp_path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is needed for this test: apt-get install -y chromium (.ci/run does)"
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=False)


def test_page_renders_in_chromium(page, tmp_path) -> None:
    shot = tmp_path / "shot.png"
    r = _chromium(page, tmp_path, "--dump-dom", f"--screenshot={shot}", "--window-size=1280,4000")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    # Chromium logs console messages as "INFO:CONSOLE:1] ..." (older builds "CONSOLE(1)").
    console = [ln for ln in r.stderr.splitlines() if re.search(r"CONSOLE[(:]", ln)]
    assert not console, console
    dom = r.stdout
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in dom, sid
    for name in FIGURES:
        assert f'data-figure="{name}"' in dom, name
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert len(imgs) == len(FIGURES)
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(shot)
    assert img.shape[:2] == (4000, 1280)
    rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 200  # text, tables, figures: not a blank page
    background = np.all(rgb == np.array([0xF4, 0xF6, 0xF9], np.uint8), axis=1).mean()
    assert background < 0.5, background


def test_page_is_self_contained(page) -> None:
    text = page.read_text()
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r'(src|href)="(?!data:|#)', text), "every src/href is inline data or an anchor"
    assert not re.search(r"url\((?!data:)", text)


def test_page_states_the_truth(page, report_lake) -> None:
    text = page.read_text()
    for fact in ("report_mix", "Drift, intervention, experiment and corruption in four months.", "seed 21",
                 "spend_ramp", "spend_median", "2024-03-01", "ramp over 30 days", "×1.3",
                 "winter_push", "segment senior_declining", "intensity ×1.5",
                 "winback", "2024-02-02", "no purchase for 30+ days", "stated effect for the test",
                 "hazard ×0.5, intensity ×1.6", "none (all ×1)", "Observed in the lake", "churned_60d"):
        assert fact in text, fact
    # Months in the lake, each with the Delta version that holds it.
    for month in ["2024-01", "2024-02", "2024-03", "2024-04"]:
        assert f"<th>{month}</th>" in text
    assert re.search(r"<tr><td>raw_transactions</td>" + "".join(rf'<td class="n">{k}</td>' for k in range(4)), text)
    # Table rows as in the lake; every defect kind of the manifest, with its count.
    n_tx = read_table(report_lake, "raw_transactions", columns=["transaction_id"]).num_rows
    assert f'<td>raw_transactions</td><td class="n">{n_tx:,}</td>' in text
    n_hist = read_table(report_lake, "customer_history", columns=["customer_id"]).num_rows
    assert n_hist > 0 and f'<td>customer_history</td><td class="n">{n_hist:,}</td>' in text
    assert re.search(r"<tr><td>customer_history</td>" + "".join(rf'<td class="n">{k}</td>' for k in range(4)), text)
    manifest = read_table(report_lake, "quality_manifest", columns=["rule"]).to_pandas()
    for rule, count in manifest["rule"].value_counts().items():
        assert re.search(rf"<td>{rule}</td><td>[^<]*</td><td class=\"n\">{count:,}</td>", text), rule


def test_report_is_deterministic(report_lake, page) -> None:
    assert render_report(report_lake, customers=12) == page.read_text()


def test_sample_customers_stratified_and_seeded() -> None:
    segs = ["young_active"] * 250 + ["mid_stable"] * 400 + ["senior_declining"] * 200 + ["new_customer"] * 150
    customers = pd.DataFrame({"customer_id": np.arange(1, 1001), "segment": segs,
                              "customer_since_date": pd.Timestamp("2023-01-01")})
    a = sample_customers(customers, 20, seed=3)
    assert a == sample_customers(customers, 20, seed=3)
    assert a != sample_customers(customers, 20, seed=4)
    assert len(set(a)) == 20
    got = customers.set_index("customer_id").loc[a, "segment"].value_counts().to_dict()
    assert got == {"young_active": 5, "mid_stable": 8, "senior_declining": 4, "new_customer": 3}
    # Fewer customers than segments' floor: still n, the rare segment still drawn once when n allows.
    small = sample_customers(customers, 4, seed=3)
    assert len(small) == 4 and customers.set_index("customer_id").loc[small, "segment"].nunique() == 4
    assert len(sample_customers(customers, 5000, seed=3)) == 1000


def test_cli_report_errors(report_lake, tmp_path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["report", "--lake", str(tmp_path / "nope"), "--html", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and r.output.startswith("Error: no Delta table there:"), r.output
    assert not (tmp_path / "r.html").exists()
    r = runner.invoke(main, ["report", "--lake", str(tmp_path / "nope")])  # the text dashboard too
    assert r.exit_code == 2 and r.output.startswith("Error: no Delta table there:"), r.output
    r = runner.invoke(main, ["report", "--lake", str(report_lake), "--html", str(tmp_path / "r.html"),
                             "--version", "1"])
    assert r.exit_code == 2 and "drop --version" in r.output
    (tmp_path / "a_file").write_text("")
    r = runner.invoke(main, ["report", "--lake", str(report_lake), "--html", str(tmp_path / "a_file" / "r.html")])
    assert r.exit_code == 2 and r.output.startswith("Error: --html"), r.output
    assert "--html FILE" in runner.invoke(main, ["report", "--help"]).output
