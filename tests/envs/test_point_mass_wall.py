"""Tests for the point-mass-wall environment."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ooo_lightning.envs  # noqa: F401  (registers the env)
from ooo_lightning.envs import POINT_MASS_WALL_ID
from ooo_lightning.envs.point_mass_wall import (
    GOAL,
    GOAL_RADIUS,
    MAX_EPISODE_STEPS,
    START,
    START_NOISE,
    STEP_SIZE,
    X_BOUNDS,
    Y_BOUNDS,
    PointMassWallEnv,
    crosses_wall,
)


@pytest.fixture()
def env() -> PointMassWallEnv:
    e = PointMassWallEnv()
    e.reset(seed=0)
    return e


def test_crosses_wall_helper() -> None:
    assert crosses_wall((0.49, 0.5), (0.51, 0.5))
    assert crosses_wall((0.49, 0.5), (0.5, 0.5))  # touching counts
    assert crosses_wall((0.49, 0.1), (0.51, 0.1))  # through the lower endpoint
    assert not crosses_wall((0.49, 0.09), (0.51, 0.09))  # below the wall end
    assert not crosses_wall((0.49, 1.21), (0.51, 1.21))  # above the wall end
    assert not crosses_wall((0.1, 0.5), (0.4, 0.5))


def test_wall_blocks_crossing_step(env: PointMassWallEnv) -> None:
    env.set_position((0.49, 0.5))
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.49, 0.5], atol=1e-6)
    assert reward == 0.0 and not terminated and not truncated and info == {"success": False}


def test_step_below_wall_end_allowed(env: PointMassWallEnv) -> None:
    env.set_position((0.49, 0.05))
    obs, *_ = env.step(np.array([1.0, 0.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.49 + STEP_SIZE, 0.05], atol=1e-6)


def test_action_clipped_and_scaled(env: PointMassWallEnv) -> None:
    env.set_position((0.0, 0.5))
    obs, *_ = env.step(np.array([5.0, -5.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [STEP_SIZE, 0.5 - STEP_SIZE], atol=1e-6)


@pytest.mark.parametrize(
    ("start", "action", "expected"),
    [
        ((X_BOUNDS[0] + 0.01, 0.5), (-1.0, 0.0), (X_BOUNDS[0], 0.5)),
        ((X_BOUNDS[1] - 0.01, 0.5), (1.0, 0.0), (X_BOUNDS[1], 0.5)),
        ((0.0, Y_BOUNDS[0] + 0.01), (0.0, -1.0), (0.0, Y_BOUNDS[0])),
        ((0.0, Y_BOUNDS[1] - 0.01), (0.0, 1.0), (0.0, Y_BOUNDS[1])),
    ],
)
def test_position_clipped_to_bounds(env: PointMassWallEnv, start, action, expected) -> None:
    env.set_position(start)
    obs, *_ = env.step(np.asarray(action, dtype=np.float32))
    np.testing.assert_allclose(obs, expected, atol=1e-6)
    assert env.observation_space.contains(obs)


def test_goal_reward_and_termination(env: PointMassWallEnv) -> None:
    # One step left of the goal, moving into it.
    env.set_position((GOAL[0] - GOAL_RADIUS - 0.01, GOAL[1]))
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert np.linalg.norm(obs - np.asarray(GOAL)) <= GOAL_RADIUS
    assert reward == 1.0 and terminated and not truncated and info["success"] is True


def test_outside_goal_no_reward(env: PointMassWallEnv) -> None:
    env.set_position((GOAL[0] - GOAL_RADIUS - 0.05, GOAL[1]))
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert reward == 0.0 and not terminated and info["success"] is False


def test_truncated_at_max_steps_via_make() -> None:
    env = gymnasium.make(POINT_MASS_WALL_ID)
    env.reset(seed=1)
    zero = np.zeros(2, dtype=np.float32)
    for t in range(1, MAX_EPISODE_STEPS + 1):
        _, _, terminated, truncated, info = env.step(zero)
        assert not terminated and "success" in info
        assert truncated == (t == MAX_EPISODE_STEPS)
    env.close()


def test_reset_noise_and_seeding() -> None:
    env = PointMassWallEnv()
    starts = np.stack([env.reset(seed=s)[0] for s in range(200)])
    assert starts.dtype == np.float32
    assert np.all(np.abs(starts - np.asarray(START)) <= START_NOISE + 1e-6)
    assert len(np.unique(starts[:, 0])) > 100  # actually random
    a, info = env.reset(seed=123)
    b, _ = PointMassWallEnv().reset(seed=123)
    np.testing.assert_array_equal(a, b)
    assert info == {"success": False}


def test_registration_is_idempotent() -> None:
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(ooo_lightning.envs)
    assert POINT_MASS_WALL_ID in gymnasium.registry
    assert gymnasium.registry[POINT_MASS_WALL_ID].max_episode_steps == MAX_EPISODE_STEPS


def test_gymnasium_check_env() -> None:
    check_env(PointMassWallEnv(), skip_render_check=True)


def test_torchrl_check_env_specs() -> None:
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    env = GymEnv(POINT_MASS_WALL_ID)
    check_env_specs(env, seed=0)
    env.close()


def test_default_step_is_the_papers_per_axis() -> None:
    env = PointMassWallEnv()
    env.reset(seed=0)
    env.set_position((0.0, 0.5))
    obs, *_ = env.step(np.array([1.0, 1.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.05 / 2**0.5, 0.5 + 0.05 / 2**0.5], atol=1e-6)  # 0.0354 per axis


def test_geometry_from_env_kwargs() -> None:
    """Through gymnasium.make, as a config's env_kwargs: a second wall blocks, the goal moves,
    and step, bounds, start and step limit follow."""
    kwargs = {
        "walls": [[[0.5, 0.1], [0.5, 1.2]], [[0.0, 0.8], [0.4, 0.8]]],
        "start": [0.2, 0.6], "start_noise": 0.0, "goal": [0.9, 1.0], "goal_radius": 0.1,
        "step_size": 0.1, "x_bounds": [0.0, 1.0], "y_bounds": [0.0, 1.2], "max_episode_steps": 7,
    }
    env = gymnasium.make(POINT_MASS_WALL_ID, **kwargs)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, [0.2, 0.6])
    up = np.array([0.0, 1.0], dtype=np.float32)
    obs, *_ = env.step(up)
    np.testing.assert_allclose(obs, [0.2, 0.7], atol=1e-6)  # step_size 0.1
    obs, *_ = env.step(up)
    np.testing.assert_allclose(obs, [0.2, 0.7], atol=1e-6)  # the second wall at y = 0.8 blocks
    np.testing.assert_array_equal(env.observation_space.low, [0.0, 0.0])
    env.unwrapped.set_position((0.85, 0.85))
    _, reward, terminated, _, info = env.step(up)  # (0.85, 0.95) is within 0.1 of the moved goal
    assert reward == 1.0 and terminated and info["success"]
    env.reset(seed=0)
    truncated = [env.step(np.zeros(2, dtype=np.float32))[3] for _ in range(7)]
    assert truncated == [False] * 6 + [True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"goal": [1.0]}, "goal must be two finite numbers"),
        ({"walls": [[[0.5, 0.1]]]}, r"walls\[0\] must be"),
        ({"step_size": 0.0}, "step_size must be a finite number > 0"),
        ({"x_bounds": [1.0, 0.0]}, "x_bounds must be"),
        ({"goal": [3.0, 0.0]}, "outside the bounds"),
        ({"gaol": [1.0, 0.0]}, "its env_kwargs are"),
    ],
)
def test_bad_geometry_is_named(kwargs, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        PointMassWallEnv(**kwargs)
