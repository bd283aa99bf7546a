"""Scripted offline dataset for point-mass-wall.

A noisy controller heads straight for the goal.  The straight line from the start crosses
the wall, so the controller piles up against the wall's left face: the offline data covers
the left half of the arena and never shows the way around.  That is the OOO setting: an
offline learner alone cannot solve the task, and online exploration has to find the gap.

Usage::

    python -m ooo_lightning.envs.scripted --out data/point_mass_wall.hdf5 --episodes 100
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np

from ooo_lightning.data.d4rl import write_d4rl_hdf5
from ooo_lightning.envs import POINT_MASS_WALL_ID
from ooo_lightning.envs.point_mass_wall import GOAL, MAX_EPISODE_STEPS, WALL

log = logging.getLogger(__name__)

#: Give up after this many discarded episodes per requested one (noise far too large).
_MAX_DISCARD_FACTOR = 20


@dataclass(frozen=True)
class GenerationStats:
    """What happened during generation (for logs and the CLI)."""

    episodes: int
    transitions: int
    discarded_goal: int  # episodes dropped because they reached the goal
    discarded_past_wall: int  # episodes dropped because they slipped right of the wall


def _rollout(env: gymnasium.Env, rng: np.random.Generator, noise: float) -> dict[str, np.ndarray] | str:
    """One full-length episode, or the reason ("goal"/"past_wall") it must be discarded."""
    goal = np.asarray(GOAL, dtype=np.float64)
    obs, _ = env.reset()
    obs_l, act_l, next_l = [], [], []
    for _ in range(MAX_EPISODE_STEPS):
        direction = goal - obs.astype(np.float64)
        direction /= max(float(np.linalg.norm(direction)), 1e-8)
        action = np.clip(direction + noise * rng.standard_normal(2), -1.0, 1.0).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        if reward != 0.0 or terminated:
            return "goal"
        if next_obs[0] > WALL[0][0]:
            return "past_wall"
        obs_l.append(obs)
        act_l.append(action)
        next_l.append(next_obs)
        obs = next_obs
        if truncated:
            break
    if not truncated:  # pragma: no cover - guards against a changed registration
        raise RuntimeError(f"{POINT_MASS_WALL_ID} did not truncate after {MAX_EPISODE_STEPS} steps")
    return {
        "observations": np.stack(obs_l),
        "actions": np.stack(act_l),
        "next_observations": np.stack(next_l),
    }


def _generate(
    num_episodes: int, seed: int, noise: float
) -> tuple[dict[str, np.ndarray], GenerationStats]:
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    env = gymnasium.make(POINT_MASS_WALL_ID)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)  # seeds the env's np_random; later resets continue its stream
    episodes: list[dict[str, np.ndarray]] = []
    discarded = {"goal": 0, "past_wall": 0}
    # Discarding (rather than truncating) keeps every episode a clean 150-step timeout
    # episode and keeps the data strictly left of the wall, i.e. reward-free: the dataset
    # must never reveal the path to the goal.
    while len(episodes) < num_episodes:
        if sum(discarded.values()) > _MAX_DISCARD_FACTOR * num_episodes:
            raise RuntimeError(
                f"Discarded {discarded} episodes while collecting {num_episodes}; "
                f"noise={noise} is too large for a wall-bound dataset, lower it."
            )
        ep = _rollout(env, rng, noise)
        if isinstance(ep, str):
            discarded[ep] += 1
            continue
        episodes.append(ep)
    env.close()

    data = {
        key: np.concatenate([ep[key] for ep in episodes]).astype(np.float32) for key in episodes[0]
    }
    n = len(data["observations"])
    data["rewards"] = np.zeros(n, dtype=np.float32)
    data["terminals"] = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[MAX_EPISODE_STEPS - 1 :: MAX_EPISODE_STEPS] = True
    data["timeouts"] = timeouts
    assert data["rewards"].sum() == 0 and timeouts.sum() == num_episodes
    stats = GenerationStats(num_episodes, n, discarded["goal"], discarded["past_wall"])
    if discarded["goal"] or discarded["past_wall"]:
        log.info(
            "point-mass-wall dataset: discarded %d goal-reaching and %d past-the-wall episodes",
            discarded["goal"],
            discarded["past_wall"],
        )
    return data, stats


def generate_point_mass_wall_dataset(
    num_episodes: int = 100, seed: int = 0, noise: float = 0.5
) -> dict[str, np.ndarray]:
    """Roll out a noisy go-to-goal controller in ``ooo/PointMassWall-v0``.

    Each action is the unit vector toward the goal plus Gaussian noise of std ``noise``,
    clipped to ``[-1, 1]``.  Episodes that reach the goal or slip past the wall are
    discarded and re-rolled (counts are logged), so every kept episode lasts the full 150
    steps, ends in a timeout, has zero reward and stays at ``x <= 0.5``.  Deterministic
    given ``seed``.

    Returns the D4RL layout: ``observations``, ``actions``, ``next_observations`` (float32,
    (N, 2)), ``rewards`` (float32, (N,)), ``terminals``, ``timeouts`` (bool, (N,)).
    """
    return _generate(num_episodes, seed, noise)[0]


def ensure_point_mass_wall_dataset(
    path: str | os.PathLike[str], num_episodes: int = 100, seed: int = 0, noise: float = 0.5
) -> Path:
    """Generate and write the dataset to ``path`` unless the file already exists."""
    path = Path(path)
    if path.exists():
        return path
    log.info(
        "Offline dataset %s not found; generating %d scripted point-mass-wall episodes "
        "(seed=%d, noise=%g)",
        path,
        num_episodes,
        seed,
        noise,
    )
    write_d4rl_hdf5(path, generate_point_mass_wall_dataset(num_episodes, seed, noise))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Generate the scripted point-mass-wall offline dataset (D4RL HDF5 layout)."
    )
    parser.add_argument("--out", type=Path, required=True, help="output .hdf5 path (overwritten)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian action noise")
    args = parser.parse_args(argv)

    data, stats = _generate(args.episodes, args.seed, args.noise)
    write_d4rl_hdf5(args.out, data)
    right = float((data["observations"][:, 0] > WALL[0][0]).mean())
    print(f"wrote {args.out}")
    print(f"transitions: {stats.transitions} ({stats.episodes} episodes)")
    print(
        f"discarded episodes: {stats.discarded_goal} reached the goal, "
        f"{stats.discarded_past_wall} passed the wall"
    )
    print(f"fraction of states right of the wall (x > {WALL[0][0]}): {right:.4f}")


if __name__ == "__main__":
    main()
