"""Why point-mass-wall's goal disc is wider than the paper's: how often an explorer that
does not know where the goal is passes through the disc, against the disc's radius.

    python benchmarks/goal_radius.py [--episodes 400] [--out docs/point_mass_goal_radius.png]

Each episode starts where an explorer is once it has found the gap under the wall (uniformly
in x in [0.5, 0.6], y in [-0.2, 0.1]) and runs 150 steps of one of two blind explorers:
uniform random actions, or waypoints (heads for a random point right of the wall with
Gaussian action noise 0.3, a new point when it gets there), the way a novelty-seeking policy
sweeps new ground. It prints the share of episodes that reach the goal for each radius and
draws them. The environment is the project's own (``ooo/PointMassWall-v1``), the radius set
through ``goal_radius`` as a config would. (A policy that steers *at* the goal hits even the
paper's 0.01 disc every time: the difficulty is finding it.)
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np

import ooo_lightning.envs  # noqa: F401  (registers the env)
from ooo_lightning.envs import POINT_MASS_WALL_ID

RADII = (0.01, 0.02, 0.03, 0.05, 0.08)
EXPLORERS = ("random", "waypoints")


def hit_rate(radius: float, explorer: str, episodes: int, seed: int = 0) -> float:
    env = gymnasium.make(POINT_MASS_WALL_ID, goal_radius=radius)
    layout = env.unwrapped.layout
    rng = np.random.default_rng(seed)

    def waypoint() -> np.ndarray:
        return np.array([rng.uniform(0.5, layout.x_bounds[1]), rng.uniform(layout.y_bounds[0], layout.y_bounds[1])])

    hits = 0
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        env.unwrapped.set_position((rng.uniform(0.5, 0.6), rng.uniform(-0.2, 0.1)))
        pos, target = env.unwrapped.position, waypoint()
        for _ in range(env.spec.max_episode_steps):
            if explorer == "random":
                action = rng.uniform(-1, 1, 2)
            else:
                if np.linalg.norm(target - pos) < layout.step_size:
                    target = waypoint()
                direction = (target - pos) / np.linalg.norm(target - pos)
                action = np.clip(direction + 0.3 * rng.standard_normal(2), -1, 1)
            obs, reward, terminated, truncated, _ = env.step(action.astype(np.float32))
            pos = obs.astype(np.float64)
            if terminated or truncated:
                hits += int(reward > 0)
                break
    env.close()
    return hits / episodes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=400)
    p.add_argument("--out", default="docs/point_mass_goal_radius.png")
    args = p.parse_args()
    table = {name: [hit_rate(r, name, args.episodes) for r in RADII] for name in EXPLORERS}
    print(f"share of {args.episodes} episodes that reach the goal, by explorer (rows) and goal radius (columns)")
    print("explorer   " + "  ".join(f"r={r:<5g}" for r in RADII))
    for name, rates in table.items():
        print(f"{name:<10} " + "  ".join(f"{x:7.3f}" for x in rates))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rates in table.items():
        ax.plot(RADII, rates, marker="o", label=f"{name} explorer")
    ax.axvline(0.01, color="grey", ls=":", label="paper's radius 0.01")
    ax.axvline(0.05, color="black", ls="--", label="our default 0.05")
    ax.set_xlabel("goal radius")
    ax.set_ylabel("episodes that reach the goal")
    ax.set_title(f"blind explorers from the gap, 150 steps ({args.episodes} episodes)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
