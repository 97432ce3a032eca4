"""The README is honest: its commands and Python snippets run, and every CLI command is in it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _churnsim_commands() -> list[str]:
    """Every `churnsim ...` command in the README's bash blocks (install steps run in CI itself)."""
    out = []
    for block in _blocks("bash"):
        for line in block.strip().splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("churnsim "):
                    out.append(part)
    return out


def test_readme_has_the_two_setup_commands():
    bash = _blocks("bash")
    assert "pip install -e . && churnsim run dev --lake ./lake" in bash[0]
    assert "pip install -e '.[test,model,spark,calibrate]' && pytest -q" in bash[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test,model,spark,calibrate]' && pytest -q" in ci


def test_readme_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = _churnsim_commands()
    assert len(commands) >= 5
    runner = CliRunner()
    for cmd in commands:
        result = runner.invoke(main, shlex.split(cmd)[1:])
        assert result.exit_code == 0, f"{cmd}\n{result.output}"
    assert (tmp_path / "lake" / "raw_transactions" / "_delta_log").is_dir()


def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _blocks("python"):
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert len(namespace["customers"]) == 10_000


def test_every_command_is_documented():
    for name in main.commands:
        assert f"churnsim {name}" in README, name


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, name
