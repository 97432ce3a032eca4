"""``churnsim bench``: how fast, where the time goes, how far from a numpy floor."""

from __future__ import annotations

import click

from sim.cli import main
from sim.cli._common import echo_json, handle_errors


def _show(r: dict) -> None:
    im, td, fl, sp = r["in_memory"], r["to_delta"], r["floor"], r["speedup"]
    click.echo(f"size {r['size']} on {r['machine']['cpus']} cpus")
    click.echo(f"  in memory:   {im['seconds']:8.2f} s  {im['transactions']:,} transactions "
               f"({im['transactions_per_s']:,}/s)  {im['x_floor']}x floor")
    click.echo(f"  to Delta:    {td['seconds']:8.2f} s  ({td['workers']} workers, shards {td['shard_seconds']:.2f} s) "
               f"{td['transactions_per_s']:,} transactions/s  {td['x_floor']}x floor")
    click.echo(f"  numpy floor: {fl['seconds']:8.2f} s  (same rows per table and month, to Delta)")
    click.echo(f"  1 -> 2 workers: {sp['workers_1_seconds']:.2f} s -> {sp['workers_2_seconds']:.2f} s "
               f"= {sp['speedup']}x (shard phase {sp['shard_speedup']}x)")
    pe = r["process_engine"]
    click.echo(f"  engines on {pe['customers']:,} customers (small): batched {pe['batched']['events_per_s']:,} events/s, "
               f"process {pe['process']['events_per_s']:,} events/s ({pe['x_slower']}x slower; "
               f"{pe['process']['events']:,} events, tables {'equal' if pe['same_tables'] else 'DIFFER'})")
    if "full" in r:
        f = r["full"]
        click.echo(f"  {f['customers']:,} customers x {f['months']} months to Delta: {f['seconds']:.1f} s, "
                   f"{f['x_floor']}x floor ({f['floor_seconds']:.1f} s), peak RSS {f['peak_rss_mb']:.0f} MB "
                   f"(largest worker {f['worker_peak_rss_mb']:.0f} MB)")
        if "speedup" in f:
            click.echo(f"    1 -> 2 workers: {f['workers_1_seconds']:.1f} s -> {f['workers_2_seconds']:.1f} s "
                       f"= {f['speedup']}x")
    if "scale_out" in r:
        so = r["scale_out"]
        for d in so["spark_driver"]:
            click.echo(f"  spark {d['master']}: {d['customers']:,} customers x {d['months']} months in {d['seconds']:.1f} s, "
                       f"driver peak RSS {d['driver_peak_rss_mb']:.0f} MB")
        click.echo(f"    driver growth: {so['driver_growth_mb']:+.0f} MB")
        st = so["streaming"]
        click.echo(f"  {st['customers']:,} customers x {st['months']} months, local engine ({st['workers']} workers, "
                   f"state read from the lake): {st['seconds']:.1f} s, {st['transactions_per_s']:,} transactions/s, "
                   f"peak RSS summed {st['summed_peak_rss_mb']:.0f} MB (coordinator {st['coordinator_peak_rss_mb']:.0f} MB)")
    if "history_cost" in r:
        hc = r["history_cost"]
        click.echo(f"  customer_history's cost ({hc['size']}, {hc['rounds']} rounds in fresh processes, "
                   f"with and without it alternating; median of the rounds' ratios):")
        for job, label in (("in_memory", "in memory"), ("to_delta", "to Delta")):
            j = hc[job]
            click.echo(f"    {label + ':':10} {j['with_median']:6.2f} s with, {j['without_median']:6.2f} s without "
                       f"= {j['ratio']:.3f}x ({(j['ratio'] - 1) * 100:+.1f} %; rounds {min(j['ratios']):.2f}-"
                       f"{max(j['ratios']):.2f}), CPU {j['cpu_ratio']:.3f}x ({(j['cpu_ratio'] - 1) * 100:+.1f} %; "
                       f"rounds {min(j['cpu_ratios']):.2f}-{max(j['cpu_ratios']):.2f})")
            click.echo(f"    {'':10} fastest with against fastest without: {j['fastest_ratio']:.3f}x, "
                       f"CPU {j['fastest_cpu_ratio']:.3f}x")
    for row in r["in_memory"].get("profile", []):
        click.echo(f"    {row['cumtime']:8.3f} s cum {row['tottime']:8.3f} s own {row['calls']:>8}  {row['function']}")


@main.command()
@click.option("--size", type=click.Choice(["small", "medium", "large"]), default="large", show_default=True,
              help="Guide preset to run (small: 1,000 customers, for a quick check).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores but one).")
@click.option("--full", is_flag=True,
              help="Also run 1,000,000 customers over 24 months to Delta, with 1 and N workers (minutes).")
@click.option("--scale-out", "scale", is_flag=True,
              help="Also the Spark driver's peak RSS at 50k and 1M customers (local-cluster) and 10M customers "
                   "x 24 months with the local engine (tens of minutes; needs pyspark and Java).")
@click.option("--history-rounds", type=click.IntRange(min=0), default=5, show_default=True,
              help="Rounds of the preset with and without customer_history, for its cost (0: skip).")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.option("--profile", is_flag=True, help="Add the top functions by cumulative time (in-memory run).")
@handle_errors
def bench(size, workers, full, scale, history_rounds, as_json, profile):
    """Time the engine: in memory, to Delta, 1 vs 2 workers, against a numpy floor; customer_history's cost.

    Not a test: it prints numbers. The floor is a whole-array numpy generator writing the same
    rows per table and month to Delta. The history's cost is the preset in memory and to Delta
    with and without customer_history, alternating in fresh processes.

    \b
    Example:
      churnsim bench --size large --profile
      churnsim bench --full --json
      churnsim bench --scale-out
    """
    from sim.bench import bench as run_bench

    result = run_bench(size=size, workers=workers, full=full, profile=profile, scale=scale)
    if history_rounds:
        from sim.bench_history import history_cost

        result["history_cost"] = history_cost(size=size, rounds=history_rounds)
    if as_json:
        echo_json(result)
    else:
        _show(result)
