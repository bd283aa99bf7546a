"""Wall time and updates per second of the default OOO job, per precision (and accelerator).

    python benchmarks/default_job_speed.py                              # CPU: 32-true and bf16-mixed
    python benchmarks/default_job_speed.py --accelerator gpu --precision 32-true bf16-mixed 16-mixed
    python benchmarks/default_job_speed.py --report runs/a runs/b       # figures of finished runs

Each run is the whole ``configs/point_mass_wall/ooo_iql.yaml`` job (explorer offline and
online, exploiter). The updates per second are the modules' own ``progress/updates_per_s``
(updates since the phase started / its wall time, environment steps and evaluations
included), read at the end of each phase from its metrics.csv.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

CONFIG = "configs/point_mass_wall/ooo_iql.yaml"


def phase_speed(run_dir: Path, phase: str) -> float | None:
    path = run_dir / phase / "metrics.csv"
    if not path.is_file():
        return None
    with open(path) as f:
        values = [r["progress/updates_per_s"] for r in csv.DictReader(f) if r.get("progress/updates_per_s")]
    return float(values[-1]) if values else None


def report(run_dir: Path, label: str, wall: float | None) -> None:
    explorer, exploiter = phase_speed(run_dir, "explorer"), phase_speed(run_dir, "exploiter")
    fmt = lambda v: f"{v:.1f}" if v is not None else "-"  # noqa: E731
    wall_text = f"{wall / 60:.1f} min" if wall is not None else "-"
    print(f"{label:<28} wall {wall_text:>9}   explorer {fmt(explorer):>7} upd/s   exploiter {fmt(exploiter):>7} upd/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--out", default="benchmarks/runs/default_job_speed")
    parser.add_argument("--report", nargs="+", type=Path, help="only print the figures of these run directories")
    args = parser.parse_args()
    if args.report:
        for run_dir in args.report:
            report(run_dir, run_dir.name, None)
        return
    for precision in args.precision:
        run_dir = Path(args.out) / f"{args.accelerator}_{precision}"
        cmd = [sys.executable, "-m", "ooo_lightning.cli", "fit", f"--config={CONFIG}",
               f"--trainer.accelerator={args.accelerator}", f"--trainer.precision={precision}",
               f"--trainer.default_root_dir={run_dir}", "--trainer.enable_progress_bar=false"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        # The CLI never overwrites: a second run of this script lands in <run_dir>-v1 and so on.
        newest = max(Path(args.out).glob(f"{run_dir.name}*"), key=lambda p: p.stat().st_mtime)
        report(newest, f"{args.accelerator} {precision}", time.perf_counter() - start)


if __name__ == "__main__":
    main()
