"""The command line: exit codes, the exact Error: lines, JSON summaries, version and listings."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import write_deltalake

from sim import __version__
from sim.cli import main

SMALL = ["-s", "population.size=600", "-s", "calendar.months=4"]


def test_version_and_help():
    r = CliRunner()
    assert r.invoke(main, ["--version"]).output.strip() == f"churnsim, version {__version__}"
    assert r.invoke(main, ["-h"]).exit_code == 0


def test_run_json_summary_then_refusal_then_append(tmp_path):
    r = CliRunner()
    lake = str(tmp_path / "lake")
    out = r.invoke(main, ["run", "baseline", "--lake", lake, "--json", *SMALL])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["last_month"] == "2024-04" and summary["customers"] > 0 and summary["transactions"] > 0
    again = r.invoke(main, ["run", "baseline", "--lake", lake, *SMALL])
    assert again.exit_code == 0
    assert again.output.strip() == f"{lake}: complete: baseline through 2024-04-30 (4 months, as asked); nothing written"
    longer = r.invoke(main, ["run", "baseline", "--lake", lake, "--months", "5", *SMALL])
    assert longer.exit_code == 1
    assert longer.output.strip() == (f"Error: {lake}: holds a finished run of this scenario (through 2024-04-30); "
                                     "use `churnsim append` to add months, or --overwrite to replace it")
    more = r.invoke(main, ["-q", "append", "--lake", lake, "--months", "1", "--json"])
    assert json.loads(more.output)["last_month"] == "2024-05"


def test_append_without_a_lake_exits_1_with_one_line(tmp_path):
    lake = str(tmp_path / "nothing")
    out = CliRunner().invoke(main, ["append", "--lake", lake])
    assert out.exit_code == 1
    assert out.output.strip() == f"Error: {lake}: no churnsim state to append to; start with `churnsim run`"


def test_bad_option_exits_2():
    out = CliRunner().invoke(main, ["run", "baseline", "--months", "0"])
    assert out.exit_code == 2 and "'--months': 0 is not in the range x>=1" in out.output


def test_unknown_shipped_scenario_suggests_the_nearest(tmp_path):
    out = CliRunner().invoke(main, ["run", "baselin", "--lake", str(tmp_path / "l")])
    assert out.exit_code == 2
    assert out.output.startswith("Error: baselin: no such scenario file or shipped scenario (did you mean 'baseline'?)")
    assert not (tmp_path / "l").exists()


def test_scenarios_lists_every_shipped_file_and_checks_one(tmp_path):
    r = CliRunner()
    listing = json.loads(r.invoke(main, ["scenarios", "--json"]).output)
    assert {"baseline", "dev", "staging", "prod", "ab_retention", "holiday_season"} <= set(listing)
    assert all(listing.values())
    checked = r.invoke(main, ["scenarios", "--check", "environments", "--env", "dev"])
    assert checked.exit_code == 0 and checked.output.startswith("environments: ok (dev, digest ")


def test_run_with_corruption_then_validate_fails_with_exit_1(tmp_path):
    r = CliRunner()
    lake = str(tmp_path / "lake")
    assert r.invoke(main, ["-q", "run", "dev", "--lake", lake, "--corrupt", "0.02", "-s", "calendar.days=120"]).exit_code == 0
    out = r.invoke(main, ["validate", "--lake", lake])
    assert out.exit_code == 1 and "data-quality rules failed" in out.output


@pytest.fixture(scope="module")
def dev_lake(tmp_path_factory) -> str:
    """The dev scenario's first two months (labels at 2024-01-31 and 2024-02-29)."""
    lake = str(tmp_path_factory.mktemp("dev") / "lake")
    out = CliRunner().invoke(main, ["-q", "run", "dev", "--lake", lake, "--months", "2"])
    assert out.exit_code == 0, out.output
    return lake


def test_every_command_takes_quiet_and_verbose_after_its_name():
    for name, cmd in main.commands.items():
        assert {"quiet", "verbose"} <= {p.name for p in cmd.params}, name


def test_quiet_after_the_subcommand_is_quiet_before_it(tmp_path, dev_lake):
    r = CliRunner()
    after = r.invoke(main, ["run", "dev", "--lake", str(tmp_path / "a"), "--months", "1", "-q"])
    before = r.invoke(main, ["-q", "run", "dev", "--lake", str(tmp_path / "b"), "--months", "1"])
    assert after.exit_code == before.exit_code == 0, after.output
    assert after.output == before.output == ""  # no progress, no summary
    loud = r.invoke(main, ["run", "dev", "--lake", str(tmp_path / "c"), "--months", "1"])
    assert "transactions through 2024-01-31" in loud.output
    for args in (["validate", "--lake", dev_lake, "-q"], ["scenarios", "-q", "--json"],
                 ["report", "--lake", dev_lake, "--format", "json", "-q"]):
        out = r.invoke(main, args)
        assert out.exit_code == 0, f"{args}: {out.output}"


def test_verbose_after_the_subcommand_logs_info_and_is_undone_after(dev_lake, caplog):
    r = CliRunner()
    level = logging.getLogger().level
    plain = r.invoke(main, ["features", "--lake", dev_lake])
    assert plain.exit_code == 0 and not [x for x in caplog.records if x.name == "analysis.features"]
    verbose = r.invoke(main, ["features", "--lake", dev_lake, "-v"])
    assert verbose.exit_code == 0, verbose.output
    assert any(x.name == "analysis.features" and x.levelno == logging.INFO for x in caplog.records)
    assert logging.getLogger().level == level
    caplog.clear()
    both = r.invoke(main, ["-v", "features", "--lake", dev_lake, "-q"])  # quiet wins over -v
    assert both.exit_code == 0 and not [x for x in caplog.records if x.name == "analysis.features"]


def test_features_defaults_as_of_to_the_lakes_last_month_end(dev_lake):
    r = CliRunner()
    every = r.invoke(main, ["features", "--lake", dev_lake, "--every", "month", "--json"])
    assert every.exit_code == 0, every.output
    assert json.loads(every.output)["as_of_dates"] == ["2024-01-31", "2024-02-29"]
    one = r.invoke(main, ["features", "--lake", dev_lake, "--json"])
    assert json.loads(one.output)["as_of_dates"] == ["2024-02-29"]


def test_features_without_labels_asks_for_as_of(tmp_path):
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "customer_labels"), pa.table({"label_date": pa.array([], pa.date32())}))
    out = CliRunner().invoke(main, ["features", "--lake", str(lake)])
    assert out.exit_code == 2
    assert out.output.strip() == f"Error: {lake / 'customer_labels'}: no label dates yet; pass --as-of DATE"
