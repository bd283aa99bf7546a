"""Does OOO's decoupling pay off? Explorer vs exploiter vs the fine-tuned agent without bonus.

    python benchmarks/ooo_effect.py --config configs/point_mass_wall/ooo_iql.yaml [--seeds 5] [--jobs 2]
    python benchmarks/ooo_effect.py --config configs/point_mass_wall/ooo_iql.yaml \
        --config configs/point_mass_wall/ooo_iql_counts.yaml     # an overlay, after its base

--config takes the files as ``ooo-lightning fit`` does: repeated, later ones overriding earlier
ones (a variant config is an overlay on its base, its first line says which); the results go
under --out, in a folder named after the last one.

For each seed it runs the config's full OOO job (explorer with bonus -> exploiter from
scratch), then the same explorer with ``bonus_scale: 0`` and no phase 3 (standard fine-tuning,
the paper's baseline). The runs go through ``ooo-lightning sweep``'s runner (a local Ray with
--jobs > 1 when Ray is installed, else one after another; a finished run is kept, a killed one
resumed); the run directories stay under --out, laid out as the sweep lays them out. For a
table over several configs, ``ooo-lightning sweep --baseline`` is the general command; this
script adds the phase-3 ablations and the goal-episode counts of the paper's question. With --members, each variant is one run whose agents are the
seeds as members (``seeds: [...]`` for the explorer and the exploiter; README "Several seeds in
one process"), and the table reads each seed from its members. Prints a table of success rate and return (mean, std over seeds,
and per seed), the exploiter's gain over the explorer in percent (the paper's measure), and
writes it as Markdown next to the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from ooo_lightning import sweep
from ooo_lightning.sweep import SweepRun

EXPLORER = "--model.init_args.explorer.init_args"
EXPLOITER = "--model.init_args.exploiter.init_args"
LOSS = "--model.init_args.loss.init_args"
#: Phase-3 ablations on the OOO buffers: what each way the exploiter differs from the
#: fine-tuned agent (besides the decoupling itself) is worth. name -> (overrides, row label).
ABLATIONS = {
    "no_layer_norm": ([f"{LOSS}.layer_norm=false"], "without LayerNorm"),
    "no_q_bounds": ([f"{LOSS}.q_bounds=null"], "without Q bounds"),
    "no_positive_samples": (["--model.init_args.positive_samples=0"], "without up-sampled rewarding transitions"),
}


def run_all(runs: list[SweepRun], parallel: int, threads: int | None = None) -> None:
    """Runs what is not done yet through ``ooo-lightning sweep``'s runner: on a local Ray,
    ``parallel`` at a time (by default one torch thread each when parallel > 1: on 2 cores two
    single-threaded runs do more updates in total than one with 2 threads; ``threads`` sets it
    for machines with more cores), or one after another without Ray."""
    threads = threads or (1 if parallel > 1 else None)
    progress = sweep.execute(runs, use_ray=None if parallel > 1 else False, workers=parallel,
                             cpus_per_run=threads or 1)
    if progress.failed:
        raise SystemExit(f"failed: {', '.join(progress.failed)} (their logs are beside their run directories)")


def job(configs: list[str], run_dir: Path, seeds: list[int], overrides: list[str]) -> SweepRun:
    return SweepRun(task=run_dir.parent.parent.name, variant=run_dir.parent.name, seeds=tuple(seeds),
                    configs=tuple(configs), overrides=tuple(overrides), run_dir=run_dir)


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
    sweep.check_job(args.config)
    out = Path(args.out) / Path(args.config[-1]).stem
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    no_bonus = list(sweep.NO_BONUS)
    # One run per seed, or one run of every seed as members: (run directory name, seed, overrides).
    listed = str(seeds).replace(" ", "")
    # One run per seed, or one run of every seed as members: (run directory name, its seeds).
    runs = [("members", seeds)] if args.members else [(f"seed_{s}", [s]) for s in seeds]
    jobs = [job(args.config, out / f"ooo/{name}", group, args.overrides) for name, group in runs]
    if not args.no_baseline:  # the sweep gives a members baseline no exploiter seeds (it has no exploiter)
        jobs += [job(args.config, out / f"no_bonus/{name}", group, [*args.overrides, *no_bonus]) for name, group in runs]
    run_all(jobs, args.jobs, args.threads)
    if args.exploiter_config:
        phase3 = [f"--model.init_args.seeds={listed}"] if args.members else []
        # A phase-3-only config: one seed for seed_everything, the members' seeds as its own.
        ablations = [job([args.exploiter_config], out / f"exploiter_{name}/{run}", group[:1],
                         [f"--data.buffer={out / f'ooo/{run}/buffer'}", *ABLATIONS[name][0], *phase3])
                     for name in args.ablations if name in ABLATIONS for run, group in runs]
        if not args.no_baseline and "no_bonus_data" in args.ablations:  # the decoupling without the bonus's data
            ablations += [job([args.exploiter_config], out / f"exploiter_no_bonus_data/{run}", group[:1],
                              [f"--data.buffer={out / f'no_bonus/{run}/buffer'}", *phase3]) for run, group in runs]
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
        goals = [read_goal_episodes(out / variant / run) for run, _ in runs]
        if all(g is not None for g in goals):
            each = "the members' mean" if args.members else "per seed"  # the members' metrics are their means
            lines.append(f"online episodes that reached the goal, {who}, {each}: " + " / ".join(map(str, goals)))
    walls = {variant: [float(text) / 60 for run, _ in runs if (text := (out / variant / f"{run}.done").read_text().strip())]
             for variant in variants}
    if any(walls.values()):
        lines.append(("wall time of the members run (min): " if args.members else "wall time per run (min): ") + ", ".join(
            f"{v} " + " / ".join(f"{w:.1f}" for w in ws) for v, ws in walls.items() if ws))
    table = "\n".join(lines)
    print("\n" + table)
    (out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
