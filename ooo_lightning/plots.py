"""Pictures of a run: learning curves from the CSV logs and the exploiter against online steps
(the pictures of a task's states are the environment's: ``ooo_lightning.envs.task_tools``)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs are headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ooo_lightning.output import save_figure  # noqa: E402


def read_metrics(csv_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric: (row index order) values with the row's step, NaN rows dropped later."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None) else math.nan)
    return {k: np.asarray(v, dtype=float) for k, v in columns.items()}


def metric_series(metrics: dict[str, np.ndarray], x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the rows of ``read_metrics`` output where both are logged."""
    if x_key not in metrics or y_key not in metrics:
        return np.empty(0), np.empty(0)
    x, y = metrics[x_key], metrics[y_key]
    keep = ~np.isnan(x) & ~np.isnan(y)
    return x[keep], y[keep]


def plot_learning_curves(run_dir: str | Path, phases: tuple[str, ...] | None = None) -> Path | None:
    """Evaluation success/return against gradient updates for each phase (all phase folders
    with a metrics.csv by default), the explorer's online episodes against environment
    steps, and where its bonus acts (quantiles over offline and recent online states).
    Written to ``<run_dir>/plots/learning_curves.png``."""
    run_dir = Path(run_dir)
    if phases is None:
        found = sorted(p.parent.name for p in run_dir.glob("*/metrics.csv"))
        phases = tuple(sorted(found, key=lambda name: (name != "explorer", name)))
    logs = {p: run_dir / p / "metrics.csv" for p in phases if (run_dir / p / "metrics.csv").is_file()}
    if not logs:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for phase, path in logs.items():
        m = read_metrics(path)
        members = sorted({int(k.split("/")[1][len("member_"):]) for k in m if k.startswith("eval/member_")})
        for ax, key, label in ((axes[0], "eval/success_rate", "success rate"), (axes[1], "eval/return_mean", "return")):
            x, y = metric_series(m, "eval/updates", key)
            if len(x):
                line = ax.plot(x, y, marker="o", ms=3, label=phase + (" (members' mean)" if members else ""))[0]
                for k in members:  # each member of a module with seeds, thin, in the phase's colour
                    xk, yk = metric_series(m, "eval/updates", key.replace("eval/", f"eval/member_{k}/"))
                    ax.plot(xk, yk, color=line.get_color(), lw=0.7, alpha=0.5,
                            label=f"{phase} members" if k == members[0] else None)
            ax.set_xlabel("gradient updates")
            ax.set_ylabel(f"evaluation {label} (mean action)")
        x, y = metric_series(m, "progress/env_steps", "online/success_rate")
        if len(x):
            axes[2].plot(x, y, label=f"{phase}: success (last 20 episodes)")
            x2, y2 = metric_series(m, "progress/env_steps", "online/goal_episodes")
            if len(x2):
                twin = axes[2].twinx()
                twin.plot(x2, y2, color="tab:red", ls="--", label="episodes that reached the goal")
                twin.set_ylabel("episodes that reached the goal (cumulative)", color="tab:red")
        for where, color in (("offline", "tab:blue"), ("online", "tab:orange")):
            for stat, style in (("p50", "-"), ("p90", "--"), ("max", ":")):
                x, y = metric_series(m, "progress/updates", f"bonus/{where}_{stat}")
                if len(x):
                    axes[3].plot(x, np.maximum(y, 1e-8), color=color, ls=style, label=f"{where} {stat}")
    axes[0].set_title("evaluation success rate")
    axes[1].set_title("evaluation return")
    axes[2].set_title("online collection (explorer, stochastic policy)")
    axes[2].set_xlabel("online environment steps")
    axes[2].set_ylabel("success rate")
    axes[3].set_title("bonus_scale x bonus (explorer)")
    axes[3].set_xlabel("gradient updates")
    axes[3].set_ylabel("per-step bonus added to the reward")
    if axes[3].lines:
        axes[3].set_yscale("log")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, run_dir / "plots" / "learning_curves.png", dpi=110)


def plot_exploiter_against_online_steps(results: dict, path: str | Path) -> Path | None:
    """Final success rate and return of each exploiter against the online steps of its data
    (the paper's curve), with the explorer's final values for comparison."""
    points = sorted(
        (r["env_steps"], r["success_rate"], r["return_mean"])
        for name, r in results.items()
        if name == "exploiter" or name.startswith("exploiter_T")
    )
    if not points:
        return None
    steps, success, returns = (np.asarray(v, dtype=float) for v in zip(*points))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, y, key, label in ((axes[0], success, "success_rate", "success rate"), (axes[1], returns, "return_mean", "return")):
        ax.plot(steps, y, marker="o", label="exploiter (fresh agent per T)")
        if "explorer" in results:
            explorer = results["explorer"]
            ax.axhline(explorer[key], color="tab:red", ls="--", label=f"explorer after {explorer['env_steps']} steps")
        ax.set_xlabel("online environment steps in the exploiter's data (T)")
        ax.set_ylabel(f"final {label} (mean action)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path, dpi=100)
