"""Tests for the sparse-reward MuJoCo locomotion tasks."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from ooo_lightning.envs import ANT_SPARSE_ID, HALF_CHEETAH_SPARSE_ID
from ooo_lightning.envs.sparse_mujoco import (
    ANT_THRESHOLD,
    HALF_CHEETAH_THRESHOLD,
    SPARSE_MAX_EPISODE_STEPS,
    SparseForwardReward,
    make_sparse_ant,
)


def _move_torso_x(env: gymnasium.Env, dx: float) -> None:
    """Shift the torso along x (velocities zeroed) through MuJoCo's set_state."""
    base = env.unwrapped
    qpos = base.data.qpos.copy()
    qpos[0] += dx
    base.set_state(qpos, np.zeros_like(base.data.qvel))


@pytest.mark.parametrize("env_id", [HALF_CHEETAH_SPARSE_ID, ANT_SPARSE_ID])
def test_registered_with_one_time_limit(env_id: str) -> None:
    assert gymnasium.spec(env_id).max_episode_steps == SPARSE_MAX_EPISODE_STEPS
    env = gymnasium.make(env_id)
    # Only the outer TimeLimit: an inner one from HalfCheetah-v5/Ant-v5 would cap overrides.
    limits, layer = [], env
    while isinstance(layer, gymnasium.Wrapper):
        if isinstance(layer, gymnasium.wrappers.TimeLimit):
            limits.append(layer)
        layer = layer.env
    assert len(limits) == 1
    env.close()


@pytest.mark.parametrize(
    "env_id, threshold",
    [(HALF_CHEETAH_SPARSE_ID, HALF_CHEETAH_THRESHOLD), (ANT_SPARSE_ID, ANT_THRESHOLD)],
)
def test_reward_only_past_threshold(env_id: str, threshold: float) -> None:
    env = gymnasium.make(env_id)
    obs, info = env.reset(seed=0)
    assert info["success"] is False and info["x_progress"] == 0.0
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    _, reward, _, _, info = env.step(zero)
    assert reward == 0.0 and not info["success"] and abs(info["x_progress"]) < 0.5

    _move_torso_x(env, threshold - 0.5)  # short of the threshold: still nothing
    _, reward, _, _, info = env.step(zero)
    assert reward == 0.0 and not info["success"]

    _move_torso_x(env, 1.0)  # now ~0.5 past it
    _, reward, _, _, info = env.step(zero)
    assert reward == 1.0 and info["success"] and info["x_progress"] > threshold
    env.close()


def test_half_cheetah_episode_is_exactly_1000_steps() -> None:
    env = gymnasium.make(HALF_CHEETAH_SPARSE_ID)
    env.reset(seed=1)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(zero)
        steps += 1
    assert steps == 1000 and truncated and not terminated
    env.close()


def test_longer_limit_is_not_cut_by_an_inner_limit() -> None:
    env = gymnasium.make(HALF_CHEETAH_SPARSE_ID, max_episode_steps=1200)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    for step in range(1, 1201):
        _, _, terminated, truncated, _ = env.step(zero)
        if terminated or truncated:
            break
    assert step == 1200 and truncated
    env.close()


def _make_unhealthy(env: gymnasium.Env) -> None:
    """Lift the ant upside down above Ant-v5's healthy torso height range (0.2, 1.0).

    Lying flipped on the floor puts the torso at z ~ 0.27, still "healthy" for Ant-v5; it is
    leaving the z range (bouncing up while flipping, falling) that ends Ant-v5 episodes.
    """
    base = env.unwrapped
    qpos = base.data.qpos.copy()
    qpos[2] = 1.5
    qpos[3:7] = [0.0, 1.0, 0.0, 0.0]
    base.set_state(qpos, np.zeros_like(base.data.qvel))


def test_unhealthy_ant_does_not_terminate_for_1000_steps() -> None:
    env = gymnasium.make(ANT_SPARSE_ID)
    env.reset(seed=0)
    _make_unhealthy(env)
    assert not env.unwrapped.is_healthy
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, _ = env.step(zero)
        steps += 1
    assert steps == 1000 and truncated and not terminated and reward == 0.0
    env.close()


def test_default_ant_would_terminate() -> None:
    # Guards the test above: with Ant-v5's default the same state ends the episode.
    env = make_sparse_ant(terminate_when_unhealthy=True)
    env.reset(seed=0)
    _make_unhealthy(env)
    _, _, terminated, _, _ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert terminated
    env.close()


def test_threshold_must_be_positive() -> None:
    inner = gymnasium.make("HalfCheetah-v5")
    with pytest.raises(ValueError, match="threshold"):
        SparseForwardReward(inner, 0.0)
    inner.close()
