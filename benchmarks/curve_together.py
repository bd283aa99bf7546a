"""Wall time of the exploiter curve against online steps, one fit per T (``exploiter_curve:
apart``) against all T as the members of one fit (``together``), on the same saved buffer, one
after the other in this process's machine, with the 2048 sgemm before and after.

    python benchmarks/curve_together.py --buffer runs/point_mass_wall/ooo_iql/seed_0/buffer \\
        [--updates 3000] [--steps 5000 10000 15000 20000 25000] [--out benchmarks/runs/curve_together]

Prints the wall time of each way, their ratio, and each T's final success rate both ways (the
two ways draw other random numbers, so those agree in distribution, not exactly).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from sgemm_reference import sgemm_gflops

REPO = Path(__file__).resolve().parents[1]
C = "configs/point_mass_wall"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--buffer", required=True, help="a saved buffer of a point-mass-wall run (<run dir>/buffer)")
    p.add_argument("--updates", type=int, default=3000, help="gradient updates of each exploiter")
    p.add_argument("--steps", type=int, nargs="+", default=[5000, 10000, 15000, 20000, 25000])
    p.add_argument("--episodes", type=int, default=10, help="final evaluation episodes of each exploiter")
    p.add_argument("--out", default="benchmarks/runs/curve_together")
    args = p.parse_args()
    print(f"sgemm_gflops_before={sgemm_gflops():.0f}", flush=True)
    walls, results = {}, {}
    for way in ("apart", "together"):
        root = REPO / args.out / way
        cmd = [sys.executable, "-m", "ooo_lightning.cli", "fit", f"--config={C}/ooo_iql.yaml",
               f"--config={C}/exploiter_curve_iql.yaml", f"--data.buffer={args.buffer}",
               f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
               f"--model.init_args.exploiter_online_steps={json.dumps(args.steps)}",
               f"--model.init_args.exploiter_curve={way}", f"--model.init_args.final_eval_episodes={args.episodes}",
               f"--model.init_args.exploiter.init_args.updates={args.updates}",
               "--model.init_args.exploiter.init_args.eval_every=0"]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        walls[way] = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{way} failed:\n{done.stderr[-3000:]}")
        run_dir = max((d for d in root.parent.glob(f"{way}*") if d.is_dir()), key=lambda d: d.stat().st_mtime)
        results[way] = json.loads((run_dir / "results.json").read_text())
        print(f"{way}_wall_s={walls[way]:.1f}", flush=True)
    print(f"together_over_apart={walls['together'] / walls['apart']:.2f}")
    for name in results["apart"]:
        print(f"{name}: success apart {results['apart'][name]['success_rate']:.2f}, "
              f"together {results['together'].get(name, {}).get('success_rate', float('nan')):.2f}")
    print(f"sgemm_gflops_after={sgemm_gflops():.0f}")


if __name__ == "__main__":
    main()
