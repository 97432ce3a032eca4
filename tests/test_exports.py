"""The public faces stay curated: sorted ``__all__``, every name importable, analysis apart from the engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

import analysis
import sim


@pytest.mark.parametrize("module", [sim, analysis])
def test_all_is_sorted_and_complete(module):
    names = [n for n in module.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in module.__all__:
        assert hasattr(module, name), name
    public = {n for n in vars(module) if not n.startswith("_") and not isinstance(getattr(module, n), type(sys))}
    assert public <= set(module.__all__), public - set(module.__all__)


def test_the_lazy_public_names_are_exactly_all():
    assert set(sim._EXPORTS) | set(sim._ALIASES) | {"__version__"} == set(sim.__all__)


def test_analysis_never_imports_the_engine():
    code = "import sys, analysis, analysis.ab, analysis.drift, analysis.features, analysis.model, analysis.plots, " \
           "analysis.report; " \
           "print(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sim', 'sim.contracts']"  # the shared contracts only: no engine, no storage


def test_the_guides_module_name_works():
    import synthetic_data_generator as g

    assert g.generate_dataset is sim.generate_dataset and g.DataConfig is sim.DataConfig
