"""Wall time of the 5-seed default-job table, both ways: one run per seed, and the seeds as the
members of one run (``configs/point_mass_wall/seeds_5.yaml``), in the same session.

    python benchmarks/seeds_wall_time.py                      # seed 0 alone, then seeds 0-4 as members
    python benchmarks/seeds_wall_time.py --solo-seeds 0 1 2 3 4   # every seed alone too (5 runs)
    python benchmarks/seeds_wall_time.py --report DIR...      # the figures of finished runs
    python benchmarks/seeds_wall_time.py -- --trainer.accelerator=gpu   # overrides for every run

Each run is the whole default job (explorer offline and online, exploiter, final evaluations),
one after another, never two at once. The five runs apart take five times one run's wall time
when only seed 0 runs alone (marked "5 x"); with ``--solo-seeds`` they are measured. The
success rates are printed too: members are the same agents as runs apart (same distribution,
not the same numbers), so the two tables should agree within their spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE = "configs/point_mass_wall/ooo_iql.yaml"
MEMBERS = "configs/point_mass_wall/seeds_5.yaml"


def fit(configs: list[str], run_dir: Path, *extra: str) -> float:
    cmd = [sys.executable, "-m", "ooo_lightning.cli", "fit", *(f"--config={c}" for c in configs),
           f"--trainer.default_root_dir={run_dir}", "--trainer.enable_progress_bar=false", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def successes(run_dir: Path) -> dict[str, list[float]]:
    """Each policy's success rate per seed: the members' of a members run, else the run's one."""
    results = json.loads((run_dir / "results.json").read_text())
    return {name: [m["success_rate"] for m in entry.get("members", [entry])] for name, entry in results.items()}


def describe(rates: list[float]) -> str:
    spread = statistics.stdev(rates) if len(rates) > 1 else 0.0
    return f"{statistics.mean(rates):.2f} +- {spread:.2f}  [{', '.join(f'{r:.2f}' for r in rates)}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--solo-seeds", type=int, nargs="+", default=[0], help="seeds to run alone, one run each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/seeds_wall_time"))
    parser.add_argument("--report", type=Path, nargs="+", help="only print the success rates of these run directories")
    parser.add_argument("overrides", nargs="*", help="ooo-lightning fit overrides for every run (after --)")
    args = parser.parse_args()
    if args.report:
        for run_dir in args.report:
            for name, rates in successes(run_dir).items():
                print(f"{run_dir.name:<24} {name:<10} {describe(rates)}")
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    solo_walls, solo_rates = [], {}
    for seed in args.solo_seeds:
        run_dir = args.out / stamp / f"seed_{seed}"
        solo_walls.append(fit([BASE], run_dir, f"--seed_everything={seed}", *args.overrides))
        print(f"seed {seed} alone: {solo_walls[-1] / 60:.1f} min", flush=True)
        for name, rates in successes(run_dir).items():
            solo_rates.setdefault(name, []).extend(rates)
    run_dir = args.out / stamp / "members"
    members_wall = fit([BASE, MEMBERS], run_dir, *args.overrides)
    print(f"seeds 0-4 as members: {members_wall / 60:.1f} min", flush=True)

    one = statistics.mean(solo_walls)
    apart = sum(solo_walls) if len(solo_walls) == 5 else 5 * one
    how = "measured" if len(solo_walls) == 5 else f"5 x the mean of {len(solo_walls)} run(s)"
    print(f"\n5-seed table, {time.strftime('%Y-%m-%d')}, runs in {args.out / stamp}")
    print(f"  one seed alone        {one / 60:6.1f} min")
    print(f"  5 runs apart          {apart / 60:6.1f} min  ({how})")
    print(f"  5 seeds as members    {members_wall / 60:6.1f} min  = {members_wall / one:.2f}x one seed, "
          f"{members_wall / apart:.2f}x the runs apart")
    print("\nsuccess rate per seed")
    for name, rates in successes(run_dir).items():
        print(f"  members  {name:<10} {describe(rates)}")
        if name in solo_rates:
            print(f"  apart    {name:<10} {describe(solo_rates[name])}")


if __name__ == "__main__":
    main()
