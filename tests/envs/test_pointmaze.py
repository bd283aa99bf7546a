"""Tests for the fixed-goal sparse PointMaze tasks."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from ooo_lightning.envs import POINT_MAZE_LARGE_ID, POINT_MAZE_MEDIUM_ID
from ooo_lightning.envs.pointmaze import (
    GOAL_RADIUS,
    MAZES,
    bfs_distances,
    cell_to_xy,
    free_cells,
    goal_xy,
    start_xy,
    xy_to_cell,
)

IDS = {"medium": POINT_MAZE_MEDIUM_ID, "large": POINT_MAZE_LARGE_ID}


@pytest.fixture(scope="module")
def medium_env():
    env = gymnasium.make(POINT_MAZE_MEDIUM_ID)
    yield env
    env.close()


def _place(env: gymnasium.Env, xy: np.ndarray) -> None:
    """Teleport the ball to ``xy`` at rest."""
    point = env.unwrapped.point_env
    qpos = point.data.qpos.copy()
    qpos[:2] = xy
    point.set_state(qpos, np.zeros_like(point.data.qvel))


@pytest.mark.parametrize("size", sorted(MAZES))
def test_registration_matches_layout(size: str) -> None:
    assert gymnasium.spec(IDS[size]).max_episode_steps == MAZES[size].max_episode_steps


@pytest.mark.parametrize("size", sorted(MAZES))
def test_cell_geometry_matches_the_library(size: str) -> None:
    layout = MAZES[size]
    env = gymnasium.make(IDS[size])
    maze = env.unwrapped.maze
    for cell in free_cells(layout):
        xy = cell_to_xy(layout, cell)
        np.testing.assert_allclose(xy, maze.cell_rowcol_to_xy(np.array(cell)))
        assert xy_to_cell(layout, xy + 0.4) == cell == xy_to_cell(layout, xy - 0.4)
    env.close()


@pytest.mark.parametrize("size, path_length", [("medium", 10), ("large", 15)])
def test_start_and_goal_are_far_apart(size: str, path_length: int) -> None:
    layout = MAZES[size]
    assert layout.is_free(layout.start_cell) and layout.is_free(layout.goal_cell)
    distances = bfs_distances(layout, layout.start_cell)
    assert len(distances) == len(free_cells(layout))  # the maze is connected
    assert distances[layout.goal_cell] == path_length
    # The goal is among the cells farthest from the start: reaching it crosses the maze.
    assert path_length >= 0.9 * max(distances.values())


def test_observation_is_flat_float32_and_goal_is_pinned(medium_env: gymnasium.Env) -> None:
    obs, info = medium_env.reset(seed=0)
    assert obs.shape == (4,) and obs.dtype == np.float32
    assert medium_env.observation_space.contains(obs)
    # Start: the start cell centre plus the library's uniform +-0.25 noise, at rest.
    assert np.all(np.abs(obs[:2] - start_xy("medium")) <= 0.25 + 1e-6)
    np.testing.assert_array_equal(obs[2:], 0.0)
    # The library noised the goal; the wrapper pins it to the cell centre.
    np.testing.assert_array_equal(medium_env.unwrapped.goal, goal_xy("medium"))
    assert info["success"] is False
    obs, reward, terminated, truncated, info = medium_env.step(np.zeros(2, dtype=np.float32))
    assert obs.shape == (4,) and obs.dtype == np.float32
    assert reward == 0.0 and not terminated and not truncated and not info["success"]


def test_reset_is_reproducible_per_seed() -> None:
    first = gymnasium.make(POINT_MAZE_MEDIUM_ID)
    second = gymnasium.make(POINT_MAZE_MEDIUM_ID)
    a, _ = first.reset(seed=7)
    b, _ = second.reset(seed=7)
    np.testing.assert_array_equal(a, b)
    c, _ = first.reset(seed=8)
    assert not np.array_equal(a, c)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(20, 2)).astype(np.float32)
    first.reset(seed=3)
    second.reset(seed=3)
    for action in actions:
        np.testing.assert_array_equal(first.step(action)[0], second.step(action)[0])
    first.close()
    second.close()


def test_reaching_the_goal_rewards_and_terminates(medium_env: gymnasium.Env) -> None:
    goal = goal_xy("medium")
    medium_env.reset(seed=0)
    _place(medium_env, goal + np.array([-0.3, 0.1]))  # within 0.45
    obs, reward, terminated, truncated, info = medium_env.step(np.zeros(2, dtype=np.float32))
    assert np.linalg.norm(obs[:2] - goal) <= GOAL_RADIUS
    assert reward == 1.0 and terminated and not truncated and info["success"]


def test_near_but_outside_the_goal_gives_nothing(medium_env: gymnasium.Env) -> None:
    goal = goal_xy("medium")
    medium_env.reset(seed=0)
    _place(medium_env, goal + np.array([-0.6, 0.0]))  # in the neighbouring free cell
    obs, reward, terminated, _, info = medium_env.step(np.zeros(2, dtype=np.float32))
    assert np.linalg.norm(obs[:2] - goal) > GOAL_RADIUS
    assert reward == 0.0 and not terminated and not info["success"]


@pytest.mark.parametrize("size", sorted(MAZES))
def test_time_limit(size: str) -> None:
    env = gymnasium.make(IDS[size])
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        steps += 1
    assert steps == MAZES[size].max_episode_steps and truncated and not terminated
    env.close()


def test_reset_options(medium_env: gymnasium.Env) -> None:
    obs, _ = medium_env.reset(seed=0, options={"reset_cell": (4, 4)})
    assert xy_to_cell(MAZES["medium"], obs[:2]) == (4, 4)
    with pytest.raises(ValueError, match="not a free cell"):
        medium_env.reset(options={"reset_cell": (0, 0)})
    with pytest.raises(ValueError, match="unsupported"):
        medium_env.reset(options={"goal_cell": (1, 1)})
