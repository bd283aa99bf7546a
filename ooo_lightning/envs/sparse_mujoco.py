"""Sparse-reward MuJoCo locomotion: reward only once the body is far enough forward.

The dense forward-velocity reward of HalfCheetah/Ant makes exploration easy; replacing it by
an indicator of having travelled ``threshold`` metres along x turns them into hard-exploration
tasks for pure online RL.  This module imports only gymnasium and numpy at top level; the
MuJoCo environments themselves are built (and mujoco imported) when an entry point runs.
"""

from __future__ import annotations

from typing import Any

import gymnasium

#: Episode length of both tasks (the TimeLimit is added at registration, not here).
SPARSE_MAX_EPISODE_STEPS: int = 1000
HALF_CHEETAH_THRESHOLD: float = 20.0
ANT_THRESHOLD: float = 10.0


class SparseForwardReward(gymnasium.Wrapper):
    """Reward 1.0 on every step where the torso is more than ``threshold`` ahead of its start.

    The torso x position is ``env.unwrapped.data.qpos[0]`` (HalfCheetah's root slide joint,
    Ant's free joint), recorded at reset.  ``info["x_progress"]`` is the current progress and
    ``info["success"]`` whether it exceeds ``threshold``; termination and truncation of the
    inner environment pass through unchanged.
    """

    def __init__(self, env: gymnasium.Env, threshold: float) -> None:
        super().__init__(env)
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.threshold = float(threshold)
        self._x_start = 0.0

    def _torso_x(self) -> float:
        return float(self.env.unwrapped.data.qpos[0])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        # Measured after the inner reset, which adds noise to the initial qpos.
        self._x_start = self._torso_x()
        info["x_progress"] = 0.0
        info["success"] = False
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _dense_reward, terminated, truncated, info = self.env.step(action)
        progress = self._torso_x() - self._x_start
        success = progress > self.threshold
        info["x_progress"] = progress
        info["success"] = success
        return obs, 1.0 if success else 0.0, terminated, truncated, info


def _make_without_time_limit(env_id: str, **kwargs: Any) -> gymnasium.Env:
    # max_episode_steps=-1 tells gymnasium.make not to add the registry's TimeLimit: the
    # single limit is the one of our own registration, so `gymnasium.make(ours,
    # max_episode_steps=...)` can change the episode length without an inner limit cutting in.
    return gymnasium.make(env_id, max_episode_steps=-1, **kwargs)


def make_sparse_half_cheetah(
    threshold: float = HALF_CHEETAH_THRESHOLD, **kwargs: Any
) -> gymnasium.Env:
    """HalfCheetah-v5 with :class:`SparseForwardReward`; ``kwargs`` go to HalfCheetah-v5."""
    return SparseForwardReward(_make_without_time_limit("HalfCheetah-v5", **kwargs), threshold)


def make_sparse_ant(threshold: float = ANT_THRESHOLD, **kwargs: Any) -> gymnasium.Env:
    """Ant-v5 with :class:`SparseForwardReward`, never terminating when unhealthy.

    Our agents add a reward bias of -1 to every step, so ending the episode early (Ant-v5
    terminates when the torso height leaves (0.2, 1.0), e.g. when the ant flips over with
    a bounce or jumps) would save all remaining negative rewards: termination would itself
    be a reward, and the agent would learn to flip.  Hence ``terminate_when_unhealthy=False``
    unless overridden.
    """
    kwargs.setdefault("terminate_when_unhealthy", False)
    return SparseForwardReward(_make_without_time_limit("Ant-v5", **kwargs), threshold)

