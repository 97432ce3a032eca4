"""customer_history and its SCD2 / as-of views: the issue-18 bars, on real lakes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from analysis.features import compute_features, load_inputs
from analysis.history import attributes_as_of, attributes_at, label_instant, load_history, scd2
from analysis.lake import read_table
from sim.execute import runs
from sim.execute.memory import simulate
from sim.lake.state import from_ipc
from sim.model.rates import TargetScales
from sim.scenario import load_scenario, scenario_from_dict
from sim.scenario.shipped import shipped_path

SCEN = {"name": "hist", "seed": 7, "calendar": {"start_date": "2024-01-01", "months": 4},
        "population": {"size": 1500, "shard_size": 500, "acquisition": {"share": 0.15},
                       # Rates well above the defaults, so a small lake has every kind of change.
                       "changes": {"move_rate_per_year": 1.0, "email_change_rate_per_year": 0.6, "late_share": 0.2}}}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hist") / "lake"
    runs.run(scenario_from_dict(SCEN), path)
    return path


def _in_flight(lake: Path) -> pd.DataFrame:
    """History rows recorded after the lake's last month end, held in the engine state."""
    dt_ = DeltaTable(str(lake / "_churnsim" / "state"))
    meta = json.loads(dt_.history(1)[0]["churnsim"])
    carry = from_ipc(meta.get("history_carry"))
    return carry.to_pandas() if carry is not None else load_history(lake).iloc[:0]


def _everything(lake: Path) -> pd.DataFrame:
    h = pd.concat([load_history(lake), _in_flight(lake)], ignore_index=True)
    return h.sort_values(["customer_id", "valid_from"], ignore_index=True)


def _sorted(t: pa.Table) -> pa.Table:
    return t.sort_by([("customer_id", "ascending"), ("valid_from", "ascending")])


def test_same_seed_same_rows_and_run_equals_run_plus_append(lake, tmp_path):
    split = tmp_path / "split"
    runs.run(scenario_from_dict(SCEN), split, months=2)
    runs.append(split, months=2)
    a, b = _sorted(read_table(lake, "customer_history")), _sorted(read_table(split, "customer_history"))
    assert a.num_rows > 2000 and a.equals(b)
    assert _in_flight(lake).equals(_in_flight(split))
    again = tmp_path / "again"
    runs.run(scenario_from_dict(SCEN), again)
    assert _sorted(read_table(again, "customer_history")).equals(a)


def test_keys_unique_versions_gapless_and_version_1_is_the_raw_customers_row(lake):
    h = _everything(lake)
    assert set(h["change_type"]) == {"signup", "segment", "tier", "address", "email"}
    assert not h.duplicated(["customer_id", "valid_from"]).any()
    assert not h.duplicated(["customer_id", "version"]).any()
    n = h.groupby("customer_id")["version"].agg(["min", "max", "count"])
    assert (n["min"] == 1).all() and (n["max"] == n["count"]).all()
    # Versions follow valid_from.
    assert (h.groupby("customer_id")["version"].diff().dropna() == 1).all()
    first = h[h["version"] == 1].set_index("customer_id")
    cust = read_table(lake, "raw_customers").to_pandas().set_index("customer_id")
    assert sorted(first.index) == sorted(cust.index)
    first = first.loc[cust.index]
    assert (first["change_type"] == "signup").all()
    for col in ("segment", "email", "city", "state", "postal_code"):
        assert (first[col] == cust[col]).all(), col
    assert (first["valid_from"].dt.date == pd.to_datetime(cust["customer_since_date"]).dt.date).all()


def test_a_change_keeps_the_other_attributes_and_changes_its_own(lake):
    h = _everything(lake)
    prev = h.groupby("customer_id").shift(1)
    later = h["version"] > 1
    own = {"segment": ["segment"], "tier": ["tier"], "address": ["city", "state", "postal_code"], "email": ["email"]}
    for kind, cols in own.items():
        rows = later & (h["change_type"] == kind)
        assert rows.sum() > 10, kind
        others = [c for c in ("segment", "tier", "email", "city", "state", "postal_code") if c not in cols]
        assert (h.loc[rows, others] == prev.loc[rows, others]).all().all(), kind
        changed = (h.loc[rows, cols] != prev.loc[rows, cols]).any(axis=1)
        # A move may land in a pool entry of the same name (1,024 places); e-mails always differ.
        assert changed.mean() > (0.95 if kind == "address" else 0.999), kind


def test_recorded_at_is_never_before_valid_from_and_each_version_holds_what_was_recorded_by_it(lake):
    h = load_history(lake)
    assert (h["valid_from"] <= h["recorded_at"]).all()
    r = h["recorded_at"]
    on_time = (r == r.dt.normalize()) & (r.dt.day == 1)  # a batch's month end: the next month's first midnight
    assert (~on_time).sum() > 20  # late rows reached the lake, with a later batch
    months = {c["version"]: json.loads(c["churnsim"])["month"]
              for c in DeltaTable(str(lake / "customer_history")).history() if "churnsim" in c}
    assert len(months) == 4
    for version, month in months.items():
        t = read_table(lake, "customer_history", version=version).to_pandas()
        end = pd.Timestamp(month + "-01", tz="UTC") + pd.offsets.MonthBegin(1)
        assert (t["recorded_at"] <= end).all()
        assert (r <= end).sum() == len(t)  # and every row recorded by then is there
    assert (_in_flight(lake)["recorded_at"] > h["recorded_at"].max()).all()


def test_every_label_segment_is_the_history_segment_as_of_the_label(lake):
    h = _everything(lake)
    labels = read_table(lake, "customer_labels", columns=["customer_id", "label_date", "segment"]).to_pandas()
    keys = labels.assign(as_of=[label_instant(d) for d in labels["label_date"]])
    got = attributes_at(h, keys[["customer_id", "as_of"]])
    assert got["segment"].notna().all()
    assert (got["segment"].to_numpy() == labels["segment"].to_numpy()).all()
    # Graduates exist, so this is more than raw_customers' segment.
    cust = read_table(lake, "raw_customers", columns=["customer_id", "segment"]).to_pandas()
    moved = labels.merge(cust, on="customer_id", suffixes=("", "_signup"))
    assert (moved["segment"] != moved["segment_signup"]).sum() > 50


def test_scd2_intervals_tile_each_life_with_one_open_interval(lake):
    v = scd2(_everything(lake))
    assert (v.groupby("customer_id")["is_current"].sum() == 1).all()
    nxt = v.groupby("customer_id")["valid_from"].shift(-1)
    closed = v["valid_to"].notna()
    assert (v.loc[closed, "valid_to"] == nxt[closed]).all()
    assert (v.loc[closed, "valid_from"] < v.loc[closed, "valid_to"]).all()
    # Half-open: at an instant exactly one row of each customer signed up by then holds.
    t = pd.Timestamp("2024-03-01", tz="UTC")
    holds = v[(v["valid_from"] <= t) & (v["valid_to"].isna() | (t < v["valid_to"]))]
    assert not holds["customer_id"].duplicated().any()
    assert holds["customer_id"].nunique() == v.loc[v["valid_from"] <= t, "customer_id"].nunique()
    # Bitemporal: as the data stood at the end of February, nothing recorded later is in the view.
    known = scd2(_everything(lake), known_at=t)
    assert (known["recorded_at"] <= t).all() and len(known) < len(v)


def test_as_of_lookups_agree_and_features_take_the_segment_in_force(lake):
    h = load_history(lake)
    d = pd.Timestamp("2024-04-01", tz="UTC")
    one = attributes_as_of(h, "2024-04-01").set_index("customer_id")
    assert (one["valid_from"] < d).all()
    keys = pd.DataFrame({"customer_id": one.index.to_numpy(), "as_of": d})
    many = attributes_at(h, keys).set_index("customer_id")
    for col in ("version", "segment", "tier", "email", "city"):
        assert (many.loc[one.index, col] == one[col]).all(), col
    customers, tx = load_inputs(lake)
    f = compute_features(customers, tx, dt.date(2024, 4, 1), history=h).set_index("customer_id")
    assert (f["segment"] == one.loc[f.index, "segment"]).all()
    assert (f["tier"] == one.loc[f.index, "tier"]).all()
    plain = compute_features(customers, tx, dt.date(2024, 4, 1)).set_index("customer_id")
    assert plain["tier"].isna().all() and (plain["segment"] != f["segment"]).sum() > 5
    # The history moves segment and tier only: every other feature is the same, at every date.
    dates = [dt.date(2024, 2, 1), dt.date(2024, 3, 15), dt.date(2024, 5, 1)]
    with_h, without = compute_features(customers, tx, dates, history=h), compute_features(customers, tx, dates)
    rest = [c for c in with_h.columns if c not in ("segment", "tier")]
    pd.testing.assert_frame_equal(with_h[rest], without[rest])
    for d in dates:
        got = with_h[with_h["as_of_date"] == pd.Timestamp(d)].set_index("customer_id")
        want = attributes_as_of(h, d).set_index("customer_id")
        assert (got["segment"] == want.loc[got.index, "segment"]).all(), d


def test_an_independent_reader_reads_plain_delta(lake):
    dt_ = DeltaTable(str(lake / "customer_history"))
    protocol = dt_.protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
    assert not protocol.reader_features and not protocol.writer_features
    t = ds.dataset(dt_.file_uris(), format="parquet").to_table()
    assert t.num_rows == len(load_history(lake))
    assert t.schema.field("valid_from").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("recorded_at").type == pa.timestamp("us", tz="UTC")
    assert all(not pa.types.is_dictionary(f.type) for f in t.schema)


# --------------------------------------------------------------------------- the drift scenarios

def _pair(name: str, size: int, **kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    over = [f"population.size={size}", *kw.get("overrides", [])]
    drift = load_scenario(shipped_path(name), overrides=over)
    base = load_scenario(shipped_path("baseline"), overrides=over)
    scales = TargetScales()  # shared scales: common random numbers up to the onset
    out = [simulate(s, scales=scales)["customer_history"].to_pandas() for s in (base, drift)]
    return out[0], out[1]


def test_acquisition_mix_drift_shows_in_segment_changes_after_its_onset_not_before():
    base, drift = _pair("drift_senior_decline", 4000,
                        overrides=["population.acquisition.share=0.15", "population.segments.new_customer.share=0.15"])
    onset = pd.Timestamp("2024-07-01", tz="UTC")

    def changes(h: pd.DataFrame) -> pd.DataFrame:
        sig = h[h["change_type"] == "signup"].set_index("customer_id")["valid_from"]
        g = h[h["change_type"] == "segment"].copy()
        g["signed_up"] = sig.loc[g["customer_id"]].to_numpy()
        return g

    b, d = changes(base), changes(drift)
    cols = ["customer_id", "valid_from", "segment"]
    assert b.loc[b["valid_from"] < onset, cols].reset_index(drop=True).equals(
        d.loc[d["valid_from"] < onset, cols].reset_index(drop=True))
    young = {k: (g.loc[g["signed_up"] >= onset, "segment"] == "young_active") for k, g in (("b", b), ("d", d))}
    assert len(young["d"]) > 60
    # The drift's mix: 0.6 young_active, from the default 0.29.
    assert young["b"].mean() < 0.4 < 0.5 < young["d"].mean()


def test_tier_changes_follow_the_spend_drift():
    base, drift = _pair("drift_spend_inflation", 3000)
    onset = pd.Timestamp("2024-07-01", tz="UTC")
    tiers = ["bronze", "silver", "gold", "platinum"]

    def moves(h: pd.DataFrame) -> pd.DataFrame:
        h = h.sort_values(["customer_id", "valid_from"])
        rank = h["tier"].map(tiers.index)
        step = rank - rank.groupby(h["customer_id"]).shift(1)
        t = h[(h["change_type"] == "tier")].assign(step=step)
        return t

    b, d = moves(base), moves(drift)
    cols = ["customer_id", "valid_from", "tier"]
    # The review at the onset instant reads June's spend: equal up to and including it.
    assert b.loc[b["valid_from"] <= onset, cols].reset_index(drop=True).equals(
        d.loc[d["valid_from"] <= onset, cols].reset_index(drop=True))
    after_b, after_d = b[b["valid_from"] > onset], d[d["valid_from"] > onset]
    up_b, up_d = (after_b["step"] > 0).sum(), (after_d["step"] > 0).sum()
    down_b, down_d = (after_b["step"] < 0).sum(), (after_d["step"] < 0).sum()
    # Measured (3,000 customers, seed 42): upgrades 168 -> 331, downgrades 453 -> 407.
    assert up_d > 1.5 * up_b and down_d < down_b, (up_b, up_d, down_b, down_d)
