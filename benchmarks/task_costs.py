"""What one run of each paper-task config costs on this machine, measured, not guessed.

    python benchmarks/task_costs.py                       # the six base configs, fractions 0.05 and 0.1
    python benchmarks/task_costs.py --job configs/antmaze/ooo_iql.yaml --fractions 1.0   # one whole run

Each job runs twice as ``ooo-lightning fit`` with its budgets (the explorer's offline updates
and online steps, the exploiter's updates) cut to each fraction, on small random-action Minari
datasets of the task made here (the real datasets are not needed: an update costs the same on
any data of the task's shapes). The wall time of a run is about fixed costs (start-up, the
final evaluation) plus a part proportional to the budgets, so the two runs' times give both by
a straight line, and the line at fraction 1 is the whole run's cost. With one fraction, its
time is printed as measured (use 1.0 to time a whole run). Prints a Markdown table; the
machine is noisy (2x from day to day), so the figures hold for the day they were measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ooo_lightning.cli import resolved_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test suite's Minari dataset maker

EXPLORER = "--model.init_args.explorer.init_args"
EXPLOITER = "--model.init_args.exploiter.init_args"
#: The six base jobs: each domain's first task, with IQL and with the Cal-QL overlay.
JOBS = [f"configs/{d}/ooo_iql.yaml" + extra for d in ("antmaze", "kitchen", "adroit_binary")
        for extra in ("", f",configs/{d}/ooo_calql.yaml")]


def budgets(config: dict) -> dict[str, int]:
    model = config["model"]["init_args"]
    explorer, exploiter = model["explorer"]["init_args"], model["exploiter"]["init_args"]
    return {f"{EXPLORER}.offline_updates": explorer["offline_updates"], f"{EXPLORER}.online_steps": explorer["online_steps"],
            f"{EXPLOITER}.updates": exploiter["updates"]}


def make_datasets(root: Path, dataset_ids: set[str], episodes: int, steps: int) -> None:
    from paper_datasets import PAPER_DATASETS, make_library_env, record_episodes, write_dataset

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    for dataset_id in sorted(dataset_ids):
        if (root / dataset_id).is_dir():
            continue
        env_id, kwargs = PAPER_DATASETS[dataset_id]
        env = make_library_env(env_id, **kwargs)
        write_dataset(dataset_id, record_episodes(env, episodes, steps, seed=0), env)
        env.close()


def time_run(configs: list[str], full: dict[str, int], fraction: float, run_dir: Path, threads: int) -> float:
    overrides = [f"{key}={max(1, round(value * fraction))}" for key, value in full.items()]
    command = [sys.executable, "-m", "ooo_lightning.cli", "fit", *(f"--config={c}" for c in configs),
               f"--trainer.default_root_dir={run_dir}", "--trainer.enable_progress_bar=false", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log = run_dir.parent / f"{run_dir.name}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"task_costs: {' '.join(configs)} at fraction {fraction} failed (exit {code}): see {log}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", action="append", help="a config, or a base and overlays joined by commas (default: the six base jobs)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1], help="budget fractions to time (default 0.05 0.1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each run (default 2: the whole machine)")
    p.add_argument("--episodes", type=int, default=20, help="episodes of each random dataset (default 20)")
    p.add_argument("--steps", type=int, default=250, help="steps of each episode (default 250)")
    p.add_argument("--out", type=Path, default=None, help="where the datasets and runs go (default: a temporary folder)")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="task_costs_"))
    jobs = [job.split(",") for job in (args.job or JOBS)]
    # As ``ooo-lightning fit`` composes the files (later ones override earlier keys).
    configs = {tuple(job): resolved_config([f"--config={REPO / c}" for c in job]) for job in jobs}
    make_datasets(out / "minari", {c["data"]["dataset"] for c in configs.values()}, args.episodes, args.steps)
    fractions = sorted(args.fractions)
    print(f"| job | budgets (offline updates / online steps / exploiter updates) | "
          + " | ".join(f"wall at {f:g}" for f in fractions) + " | whole run |")
    print("|---|---|" + "---|" * len(fractions) + "---|", flush=True)
    for job, config in configs.items():
        full = budgets(config)
        times = [time_run(list(job), full, f, out / "runs" / f"{Path(job[-1]).parent.name}_{Path(job[-1]).stem}_{f:g}",
                          args.threads) for f in fractions]
        if len(fractions) >= 2:  # fixed + proportional, through the first and the last point
            slope = (times[-1] - times[0]) / (fractions[-1] - fractions[0])
            whole = f"{(times[0] + slope * (1 - fractions[0])) / 60:.0f} min (fixed part {(times[0] - slope * fractions[0]):.0f} s)"
        else:
            whole = f"{times[0] / fractions[0] / 60:.0f} min" + ("" if fractions[0] == 1 else " (proportional)")
        print(f"| {' + '.join(job)} | {' / '.join(str(v) for v in full.values())} | "
              + " | ".join(f"{t:.0f} s" for t in times) + f" | {whole} |", flush=True)
    print(f"\nruns and datasets under {out}; {args.threads} torch threads; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
