"""Scripted offline dataset for point-mass-wall.

A noisy controller heads straight for the goal.  The straight line from the start crosses
the wall, so the controller piles up against the wall's left face: the offline data covers
the left half of the arena and never shows the way around.  That is the OOO setting: an
offline learner alone cannot solve the task, and online exploration has to find the gap.

The geometry is the environment's own (``env_kwargs``), so another layout gets data that
respects its walls: an episode is discarded as soon as a state sees the goal along a
straight line no wall blocks (it has found the way round), or reaches it.

Written to a file by ``ooo-lightning-data point-mass-wall --out data/point_mass_wall_v1.hdf5``,
or by the configs on first use (``data.generate_missing_dataset``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gymnasium
import numpy as np

from ooo_lightning.envs import POINT_MASS_WALL_ID
from ooo_lightning.envs.point_mass_wall import WallLayout

log = logging.getLogger(__name__)

#: Give up after this many discarded episodes per requested one (noise far too large).
_MAX_DISCARD_FACTOR = 20


@dataclass(frozen=True)
class GenerationStats:
    """What happened during generation (for logs and the CLI)."""

    episodes: int
    transitions: int
    discarded_goal: int  # episodes dropped because they reached the goal
    discarded_past_wall: int  # episodes dropped because they found a clear line to the goal


def _rollout(env: gymnasium.Env, layout: WallLayout, max_steps: int, rng: np.random.Generator, noise: float) -> dict[str, np.ndarray] | str:
    """One full-length episode, or the reason ("goal"/"past_wall") it must be discarded."""
    goal = np.asarray(layout.goal, dtype=np.float64)
    obs, _ = env.reset()
    obs_l, act_l, next_l = [], [], []
    for _ in range(max_steps):
        direction = goal - obs.astype(np.float64)
        direction /= max(float(np.linalg.norm(direction)), 1e-8)
        action = np.clip(direction + noise * rng.standard_normal(2), -1.0, 1.0).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        if reward != 0.0 or terminated:
            return "goal"
        if not layout.blocked(next_obs, goal):
            return "past_wall"
        obs_l.append(obs)
        act_l.append(action)
        next_l.append(next_obs)
        obs = next_obs
        if truncated:
            break
    if not truncated:  # pragma: no cover - guards against a changed registration
        raise RuntimeError(f"{POINT_MASS_WALL_ID} did not truncate after {max_steps} steps")
    return {
        "observations": np.stack(obs_l),
        "actions": np.stack(act_l),
        "next_observations": np.stack(next_l),
    }


def _generate(
    num_episodes: int, seed: int, noise: float, env_kwargs: dict | None = None
) -> tuple[dict[str, np.ndarray], GenerationStats]:
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    env = gymnasium.make(POINT_MASS_WALL_ID, **(env_kwargs or {}))
    layout, max_steps = env.unwrapped.layout, env.spec.max_episode_steps
    if not layout.blocked(layout.start, layout.goal):
        raise ValueError(
            f"point-mass-wall: no wall blocks the straight line from the start {layout.start} to the goal "
            f"{layout.goal}, so a go-to-goal controller cannot make data that never shows the way"
        )
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
        ep = _rollout(env, layout, max_steps, rng, noise)
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
    timeouts[max_steps - 1 :: max_steps] = True
    data["timeouts"] = timeouts
    assert data["rewards"].sum() == 0 and timeouts.sum() == num_episodes
    stats = GenerationStats(num_episodes, n, discarded["goal"], discarded["past_wall"])
    if discarded["goal"] or discarded["past_wall"]:
        log.info(
            "point-mass-wall dataset: discarded %d goal-reaching and %d past-the-wall episodes (clear line to the goal)",
            discarded["goal"],
            discarded["past_wall"],
        )
    return data, stats


def generate_point_mass_wall_dataset(
    num_episodes: int = 100, seed: int = 0, noise: float = 0.5, env_kwargs: dict | None = None
) -> dict[str, np.ndarray]:
    """Roll out a noisy go-to-goal controller in ``ooo/PointMassWall-v1`` (built with
    ``env_kwargs``: the layout and ``max_episode_steps``).

    Each action is the unit vector toward the goal plus Gaussian noise of std ``noise``,
    clipped to ``[-1, 1]``.  Episodes that reach the goal or get a clear straight line to it
    are discarded and re-rolled (counts are logged), so every kept episode lasts the full
    step limit, ends in a timeout, has zero reward and stays behind the walls.  Deterministic
    given ``seed``.

    Returns the D4RL layout: ``observations``, ``actions``, ``next_observations`` (float32,
    (N, 2)), ``rewards`` (float32, (N,)), ``terminals``, ``timeouts`` (bool, (N,)).
    """
    return _generate(num_episodes, seed, noise, env_kwargs)[0]


def generate_dataset(*, episodes: int, seed: int, noise: float, env_kwargs: dict | None = None, **_: object) -> dict[str, np.ndarray]:
    """``generate_point_mass_wall_dataset`` in the form ``ooo_lightning.envs.task_tools`` registers."""
    return generate_point_mass_wall_dataset(episodes, seed, noise, env_kwargs)
