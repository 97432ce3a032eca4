"""The wheel, installed outside the checkout, finds its shipped scenarios and runs one.

The wheel is built as pip builds it for an install from a package index, installed into a fresh
venv in tmp, and its ``churnsim`` is run from another directory with PYTHONPATH unset. The same
wheel on PYTHONPATH is a zip import, the case ``importlib.resources`` has to extract files for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` for quick feedback; CI runs them all

ROOT = Path(__file__).resolve().parent.parent
#: What the wheel is built from (pyproject's packages, py-module and readme). Building a copy keeps
#: setuptools' build/ and egg-info out of the checkout, and stale files in build/ out of the wheel.
SOURCES = ("pyproject.toml", "README.md", "synthetic_data_generator.py", "sim", "analysis", "scenarios")
TABLES = {"raw_customers", "raw_transactions", "customer_labels", "daily_metrics", "customer_history"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **extra}


def _ok(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    # An isolated build, as for an index install: pip brings the pyproject's setuptools (the venv's
    # own may be older, without bdist_wheel).
    _ok([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src], env=_env(), cwd=out)
    (whl,) = out.glob("churnsim-*.whl")
    return whl


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory outside the checkout, so nothing is found relative to it."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    return d


def test_the_wheel_carries_every_shipped_scenario_and_their_reference(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"sim/scenarios/{p.name}" for p in (ROOT / "scenarios").glob("*.yaml")} | {"sim/scenarios/README.md"}
    assert len(want) > 5 and want <= names


def test_the_installed_wheel_lists_and_runs_shipped_scenarios(wheel, tmp_path, elsewhere):
    venv = tmp_path / "venv"
    _ok([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    _ok([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel], env=_env())
    # The dependencies: this interpreter's site-packages, appended to the venv's sys.path by a .pth
    # path line (no network). Written after the install, so pip saw a venv without churnsim; the
    # .pth files in that folder (an editable checkout's) are not run from there.
    site = Path(_ok([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    (site / "churnsim_test_deps.pth").write_text("\n".join(deps) + "\n")

    where = _ok([py, "-c", "import sim; print(sim.__file__)"], env=_env(), cwd=elsewhere).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    churnsim = venv / "bin" / "churnsim"
    listing = _ok([churnsim, "scenarios"], env=_env(), cwd=elsewhere).stdout
    assert {"baseline", "dev", "staging", "prod", "environments"} <= {line.split()[0] for line in listing.splitlines()}
    lake = elsewhere / "lake"
    _ok([churnsim, "run", "dev", "--lake", lake, "--months", "1"], env=_env(), cwd=elsewhere)
    assert {p.name for p in lake.iterdir() if (p / "_delta_log").is_dir()} == TABLES


def test_the_wheel_as_a_zip_import_still_finds_and_loads_scenarios(wheel, elsewhere):
    code = ("import sim, sim.scenario.shipped as s; print(sim.__file__); print(' '.join(sorted(s.shipped()))); "
            "print(sim.load_scenario(s.shipped_path('dev')).population.size)")
    out = _ok([sys.executable, "-c", code], env=_env(PYTHONPATH=str(wheel)), cwd=elsewhere).stdout.splitlines()
    assert out[0].startswith(str(wheel)), out[0]
    assert {"baseline", "dev", "prod"} <= set(out[1].split())
    assert out[2] == "1000"
