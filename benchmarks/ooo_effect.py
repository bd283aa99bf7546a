"""Does OOO's decoupling pay off? Explorer vs exploiter vs the fine-tuned agent without bonus.

    python benchmarks/ooo_effect.py --config configs/point_mass_wall/ooo_iql.yaml [--seeds 5] [--jobs 2]
    python benchmarks/ooo_effect.py --config configs/point_mass_wall/ooo_iql.yaml \
        --config configs/point_mass_wall/ooo_iql_counts.yaml     # an overlay, after its base

--config takes the files as ``ooo-lightning fit`` does: repeated, later ones overriding earlier
ones (a variant config is an overlay on its base, its first line says which); the results go
under --out, in a folder named after the last one.

For each seed it runs the config's full OOO job (explorer with bonus -> exploiter from
scratch), then the same explorer with ``bonus_scale: 0`` and no phase 3 (standard fine-tuning,
the paper's baseline). Every run is a plain ``ooo-lightning fit`` in a subprocess; the run
directories stay under --out. With --members, each variant is one run whose agents are the
seeds as members (``seeds: [...]`` for the explorer and the exploiter; README "Several seeds in
one process"), and the table reads each seed from its members. Prints a table of success rate and return (mean, std over seeds,
and per seed), the exploiter's gain over the explorer in percent (the paper's measure), and
writes it as Markdown next to the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXPLORER = "--model.init_args.explorer.init_args"
EXPLOITER = "--model.init_args.exploiter.init_args"
WALL_FILE = "wall_seconds.txt"  # each run's wall time, written when it ends
LOSS = "--model.init_args.loss.init_args"
#: Phase-3 ablations on the OOO buffers: what each way the exploiter differs from the
#: fine-tuned agent (besides the decoupling itself) is worth. name -> (overrides, row label).
ABLATIONS = {
    "no_layer_norm": ([f"{LOSS}.layer_norm=false"], "without LayerNorm"),
    "no_q_bounds": ([f"{LOSS}.q_bounds=null"], "without Q bounds"),
    "no_positive_samples": (["--model.init_args.positive_samples=0"], "without up-sampled rewarding transitions"),
}


def launch(configs: list[str], run_dir: Path, seed: int, extra: list[str],
           threads: int | None) -> subprocess.Popen | None:
    if (run_dir / "results.json").is_file():
        print(f"reusing {run_dir}/results.json", flush=True)
        return None
    # The interpreter running this script, so it also works where the package is only on
    # PYTHONPATH (no console script installed).
    cmd = [sys.executable, "-m", "ooo_lightning.cli", "fit", *(f"--config={c}" for c in configs),
           f"--seed_everything={seed}", f"--trainer.default_root_dir={run_dir}", "--trainer.enable_progress_bar=false",
           *extra]
    print("$", " ".join(cmd), flush=True)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = open(run_dir.parent / f"{run_dir.name}.log", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_all(jobs: list[tuple[list[str], Path, int, list[str]]], parallel: int, threads: int | None = None) -> None:
    """Runs the jobs, ``parallel`` at a time (by default one torch thread each when
    parallel > 1: on 2 cores two single-threaded runs do more updates in total than one
    with 2 threads; ``threads`` sets it for machines with more cores)."""
    pending, running = list(jobs), []
    t0 = time.perf_counter()
    threads = threads or (1 if parallel > 1 else None)
    while pending or running:
        while pending and len(running) < parallel:
            configs, run_dir, seed, extra = pending.pop(0)
            proc = launch(configs, run_dir, seed, extra, threads)
            if proc is not None:
                running.append((proc, run_dir, time.perf_counter()))
        for proc, run_dir, started in list(running):
            if proc.poll() is not None:
                running.remove((proc, run_dir, started))
                if proc.returncode:
                    raise SystemExit(f"{run_dir} failed (exit {proc.returncode}); see {run_dir}.log")
                (run_dir / WALL_FILE).write_text(f"{time.perf_counter() - started:.1f}\n")
                print(f"  {run_dir} done at {time.perf_counter() - t0:.0f} s", flush=True)
        time.sleep(1)


def read(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def summarise(name: str, entries: list[dict], scored: bool = False) -> str:
    succ = [e["success_rate"] for e in entries]
    ret = [e["return_mean"] for e in entries]
    spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    per_seed = " / ".join(f"{s:.2f}" for s in succ)
    row = (f"| {name} | {statistics.mean(succ):.2f} ± {spread(succ):.2f} | {per_seed} | "
           f"{statistics.mean(ret):.2f} ± {spread(ret):.2f} | {entries[0]['env_steps']} |")
    if scored:  # D4RL data: the normalized score too
        score = [e["normalized_score"] for e in entries]
        row += f" {statistics.mean(score):.1f} ± {spread(score):.1f} |"
    return row


def gain(ooo: list[dict]) -> str:
    """The exploiter's gain over the explorer in percent of the explorer's mean success, as the
    paper reports it (+26% IQL, +14% Cal-QL, +165% sparse MuJoCo)."""
    exploiter = statistics.mean(r["exploiter"]["success_rate"] for r in ooo)
    explorer = statistics.mean(r["explorer"]["success_rate"] for r in ooo)
    if explorer == 0:
        return f"gain over the explorer: +{exploiter:.2f} success (in percent: undefined, the explorer scores 0)"
    return f"gain over the explorer: {100 * (exploiter - explorer) / explorer:+.0f}%"


def read_goal_episodes(run_dir: Path) -> int | None:
    """The explorer's last logged count of online episodes that reached the goal."""
    import math

    from ooo_lightning.plots import read_metrics

    path = run_dir / "explorer" / "metrics.csv"
    if not path.is_file():
        return None
    counts = [c for c in read_metrics(path).get("online/goal_episodes", []) if not math.isnan(c)]
    return int(counts[-1]) if counts else 0


def check_overlay(configs: list[str]) -> None:
    """Stops with the command to use when an overlay comes without its base: its first line,
    ``# ooo-lightning fit --config <base> --config <overlay>``, names the files it runs after."""
    first_line = Path(configs[0]).read_text().partition("\n")[0]
    needed = re.findall(r"--config (\S+)", first_line) if first_line.startswith("# ooo-lightning fit --config") else []
    if len(needed) > 1:
        raise SystemExit(f"{configs[0]} is an overlay: give its base first, as its first line runs it: "
                         + " ".join(f"--config {c}" for c in needed))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, action="append",
                   help="a config file; repeat it for an overlay after its base, as ooo-lightning fit takes them")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/runs/ooo_effect")
    p.add_argument("--no-baseline", action="store_true", help="skip the bonus-free fine-tuning runs")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each single-threaded when > 1)")
    p.add_argument("--members", action="store_true",
                   help="the seeds as the members of one run per variant, instead of one run per seed")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: 1 when --jobs > 1)")
    p.add_argument("--exploiter-config", default=None,
                   help="phase-3-only config (the job's exploiter): ablation rows, the exploiter retrained "
                        "with one setting changed on each OOO buffer and, with the baseline, on each no-bonus buffer")
    p.add_argument("--ablations", nargs="+", default=["no_layer_norm", "no_bonus_data"],
                   choices=[*ABLATIONS, "no_bonus_data"],
                   help="which --exploiter-config ablations to run (default: no_layer_norm no_bonus_data)")
    p.add_argument("overrides", nargs="*", help="extra CLI overrides for every run, e.g. --model...=...")
    args = p.parse_args()
    check_overlay(args.config)
    out = Path(args.out) / Path(args.config[-1]).stem
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    no_bonus = [f"{EXPLORER}.bonus_scale=0", "--model.init_args.exploiter=null"]
    # One run per seed, or one run of every seed as members: (run directory name, seed, overrides).
    listed = str(seeds).replace(" ", "")
    runs = ([("members", seeds[0], [f"{EXPLORER}.seeds={listed}", f"{EXPLOITER}.seeds={listed}"])] if args.members
            else [(f"seed_{s}", s, []) for s in seeds])
    jobs = [(args.config, out / f"ooo/{name}", s, [*args.overrides, *extra]) for name, s, extra in runs]
    if not args.no_baseline:  # no exploiter there: its seeds would name a null
        jobs += [(args.config, out / f"no_bonus/{name}", s, [*args.overrides, *extra[:1], *no_bonus])
                 for name, s, extra in runs]
    run_all(jobs, args.jobs, args.threads)
    if args.exploiter_config:
        phase3 = [f"--model.init_args.seeds={listed}"] if args.members else []
        ablations = [([args.exploiter_config], out / f"exploiter_{name}/{run}", s,
                      [f"--data.buffer={out / f'ooo/{run}/buffer'}", *ABLATIONS[name][0], *phase3])
                     for name in args.ablations if name in ABLATIONS for run, s, _ in runs]
        if not args.no_baseline and "no_bonus_data" in args.ablations:  # the decoupling without the bonus's data
            ablations += [([args.exploiter_config], out / f"exploiter_no_bonus_data/{run}", s,
                           [f"--data.buffer={out / f'no_bonus/{run}/buffer'}", *phase3]) for run, s, _ in runs]
        run_all(ablations, args.jobs, args.threads)

    def per_seed(variant: str) -> list[dict]:
        """Each seed's results.json entries: its run's, or its member's in the members run."""
        if not args.members:
            return [read(out / variant / f"seed_{s}") for s in seeds]
        results = read(out / variant / "members")
        return [{name: entry["members"][k] for name, entry in results.items()} for k in range(len(seeds))]

    ooo = per_seed("ooo")
    baseline = [] if args.no_baseline else per_seed("no_bonus")
    scored = all("normalized_score" in e for r in ooo + baseline for e in r.values())
    lines = [
        "`python benchmarks/ooo_effect.py " + " ".join(f"--config {c}" for c in args.config)
        + f" --seeds {args.seeds} --jobs {args.jobs}" + (" --members" if args.members else "")
        + (f" --threads {args.threads}" if args.threads else "")
        + (f" --exploiter-config {args.exploiter_config}" if args.exploiter_config else "")
        + (f" --ablations {' '.join(args.ablations)}" if args.exploiter_config and args.ablations != p.get_default("ablations") else "")
        + (" --no-baseline" if args.no_baseline else "")
        + (f" --out {args.out}" if args.out != p.get_default("out") else "")
        + (" -- " + " ".join(args.overrides) if args.overrides else "")
        + f"`, seeds {seeds}, "
        f"{ooo[0]['exploiter']['episodes']} evaluation episodes per policy (mean action).",
        "",
        "| policy | success rate (mean ± std) | per seed | return (mean ± std) | online env steps |"
        + (" D4RL normalized score |" if scored else ""),
        "|---|---|---|---|---|" + ("---|" if scored else ""),
        summarise("OOO exploiter (phase 3, task reward only)", [r["exploiter"] for r in ooo], scored),
        summarise("OOO explorer (phases 1-2, with bonus)", [r["explorer"] for r in ooo], scored),
    ]
    if baseline:
        lines.append(summarise("fine-tuned, no bonus (bonus_scale 0)", [r["explorer"] for r in baseline], scored))
    for name in args.ablations if args.exploiter_config else []:
        if name in ABLATIONS:
            lines.append(summarise(f"ablation: OOO exploiter {ABLATIONS[name][1]} (same buffers)",
                                   [r["exploiter"] for r in per_seed(f"exploiter_{name}")], scored))
    if args.exploiter_config and "no_bonus_data" in args.ablations:
        if baseline:
            lines.append(summarise("ablation: the same exploiter on the no-bonus agents' buffers",
                                   [r["exploiter"] for r in per_seed("exploiter_no_bonus_data")], scored))
    wins = [r["exploiter"]["success_rate"] >= r["explorer"]["success_rate"] for r in ooo]
    lines += ["", f"exploiter >= explorer on {sum(wins)} of {len(wins)} seeds; {gain(ooo)}"]
    variants = {"ooo": "the OOO explorer", **({"no_bonus": "the no-bonus agent"} if baseline else {})}
    for variant, who in variants.items():  # this run's variants: with --no-baseline a no_bonus folder is another run's
        goals = [read_goal_episodes(out / variant / run) for run, _, _ in runs]
        if all(g is not None for g in goals):
            each = "the members' mean" if args.members else "per seed"  # the members' metrics are their means
            lines.append(f"online episodes that reached the goal, {who}, {each}: " + " / ".join(map(str, goals)))
    walls = {variant: [float((out / variant / run / WALL_FILE).read_text()) / 60 for run, _, _ in runs
                       if (out / variant / run / WALL_FILE).is_file()] for variant in variants}
    if any(walls.values()):
        lines.append(("wall time of the members run (min): " if args.members else "wall time per run (min): ") + ", ".join(
            f"{v} " + " / ".join(f"{w:.1f}" for w in ws) for v, ws in walls.items() if ws))
    table = "\n".join(lines)
    print("\n" + table)
    (out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
