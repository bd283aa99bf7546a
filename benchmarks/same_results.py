"""Does a refactor change what the jobs compute? Runs the same jobs at two revisions and
compares their results.json and every phase's final weights, bit for bit.

    python benchmarks/same_results.py --before 209abb2                 # against the working tree
    python benchmarks/same_results.py --before 209abb2 --after HEAD --default-job
    python benchmarks/same_results.py --before HEAD --new-keys compile   # an option the before revision lacks

Each job's config is resolved once, by the ``--after`` code (``--print_config``), and both
revisions run that same resolved file, so config files that were reorganised in between
(e.g. into overlays) do not matter. The jobs are shrunk point-mass-wall runs (seconds each)
that cover the explorer with RND and with counts, Cal-QL's Monte-Carlo returns and the
exploiter on buffer prefixes, apart and together; ``--default-job`` adds the whole default job (8-15 minutes a
revision on 2 cores). ``--new-keys`` names options that the ``--after`` code added (at their
defaults): they are taken out of the config the before revision runs. Everything runs with one thread (OMP_NUM_THREADS=1), where equal code
gives equal bits. Prints one line a compared file and exits 1 when any differs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATASET = "data/point_mass_wall_v1.hdf5"
E, X = "--model.init_args.explorer.init_args", "--model.init_args.exploiter.init_args"
C = "configs/point_mass_wall"
TINY = [f"--data.dataset={DATASET}", f"{E}.loss.init_args.hidden_dims=[32,32]", f"{E}.batch_size=64",
        f"{E}.offline_updates=80", f"{E}.online_steps=400", f"{E}.eval_every=0",
        f"{X}.loss.init_args.hidden_dims=[32,32]", f"{X}.batch_size=64", f"{X}.updates=160", f"{X}.eval_every=0",
        "--model.init_args.final_eval_episodes=3"]
RND = [f"{E}.bonus.init_args.hidden_dims=[32]", f"{E}.bonus.init_args.embedding_dim=32"]
#: name -> the arguments of ``ooo-lightning fit`` (config files first).
JOBS = {
    "iql_rnd_prefixes": [f"--config={C}/ooo_iql.yaml", *TINY, *RND, "--model.init_args.exploiter_online_steps=[0,100,1000]"],
    "calql_returns": [f"--config={C}/ooo_iql.yaml", f"--config={C}/ooo_calql.yaml", *TINY, *RND,
                      f"{E}.loss.init_args.num_sampled_actions=2", f"{X}.loss.init_args.num_sampled_actions=2",
                      "--model.init_args.exploiter_online_steps=[100,1000]"],
    "counts": [f"--config={C}/ooo_iql.yaml", f"--config={C}/ooo_iql_counts.yaml", *TINY],
    "iql_curve_together": [f"--config={C}/ooo_iql.yaml", *TINY, *RND, "--model.init_args.exploiter_online_steps=[0,100,1000]",
                           "--model.init_args.exploiter_curve=together"],
}
# No periodic checkpoint: last.ckpt then holds the end in every revision (before 75ba004 a
# periodic save left last.ckpt at its own step, which depends on the wall clock).
DEFAULT_JOB = {"default_job": [f"--config={C}/ooo_iql.yaml", "--checkpoint.every_minutes=100000"]}


def _checkout(rev: str | None, where: Path) -> Path:
    """The code of ``rev`` in ``where`` (None: the working tree), with the dataset."""
    if rev is None:
        shutil.copytree(REPO, where, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", "*.egg-info"))
    else:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(where), rev], check=True)
        (where / "data").mkdir(exist_ok=True)
        for name in (DATASET, f"{DATASET}.generated.json"):
            if (REPO / name).is_file():
                shutil.copy2(REPO / name, where / name)
    return where


def _cli(code: Path, args: list[str], log: Path) -> None:
    # ``python -m`` from the checkout: its own package comes first on the path.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(code)}
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "ooo_lightning.cli", "fit", *args], cwd=code, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed in {code}; see {log}")


def _resolve(code: Path, args: list[str], out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(code)}
    text = subprocess.run([sys.executable, "-m", "ooo_lightning.cli", "fit", *args, "--print_config"], cwd=code,
                          env=env, capture_output=True, text=True, check=True).stdout
    out.write_text(text)
    return out


def _without_keys(config: Path, keys: list[str], out: Path) -> Path:
    """``config`` with every mapping entry named in ``keys`` removed, at any depth."""
    import yaml

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in keys}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    out.write_text(yaml.safe_dump(strip(yaml.safe_load(config.read_text())), sort_keys=False))
    return out


def _same_weights(a: Path, b: Path) -> bool:
    sa = torch.load(a, map_location="cpu", weights_only=False)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=False)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="a git revision")
    p.add_argument("--after", default=None, help="a git revision (default: the working tree)")
    p.add_argument("--default-job", action="store_true", help="also the whole default job")
    p.add_argument("--new-keys", nargs="*", default=[], help="options the --before revision lacks (left out of its config)")
    p.add_argument("--keep", action="store_true", help="keep the checkouts and runs (printed)")
    args = p.parse_args()
    jobs = {**JOBS, **(DEFAULT_JOB if args.default_job else {})}
    tmp = Path(tempfile.mkdtemp(prefix="same_results_"))
    before, after = _checkout(args.before, tmp / "before"), _checkout(args.after, tmp / "after")
    differ = 0
    try:
        for name, job in jobs.items():
            config = _resolve(after, job, tmp / f"{name}.yaml")
            configs = {before: _without_keys(config, args.new_keys, tmp / f"{name}_before.yaml") if args.new_keys else config,
                       after: config}
            for code in (before, after):
                _cli(code, [f"--config={configs[code]}", "--trainer.enable_progress_bar=false",
                            f"--trainer.default_root_dir={code / 'runs' / name}"], tmp / f"{code.name}_{name}.log")
            run_a, run_b = before / "runs" / name, after / "runs" / name
            compared = [("results.json", (run_a / "results.json").read_bytes() == (run_b / "results.json").read_bytes())]
            for ckpt in sorted(run_a.glob("*/checkpoints/last.ckpt")):
                twin = run_b / ckpt.relative_to(run_a)
                compared.append((str(ckpt.relative_to(run_a)), twin.is_file() and _same_weights(ckpt, twin)))
            for what, same in compared:
                differ += not same
                print(f"{'same' if same else 'DIFFERENT':9} {name}/{what}", flush=True)
    finally:
        if args.keep:
            print(f"kept in {tmp}")
        else:
            for code, rev in ((before, args.before), (after, args.after)):
                if rev is not None:
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(code)], check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{differ} of the compared files differ" if differ else "all the same")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
