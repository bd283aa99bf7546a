"""ooo/AntMaze*-v0: D4RL's antmaze evaluation task on gymnasium-robotics' AntMaze, in the
library's frame and in D4RL's."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from ooo_lightning.envs import ANTMAZE_IDS
from ooo_lightning.envs.antmaze import MAZES, OBSERVATION_DIM, AntMazeTask

FRAMES = ("minari", "d4rl")


def _ant(env):
    return env.unwrapped.ant_env  # the library's AntMazeEnv holds the Ant


@pytest.mark.parametrize("size", list(MAZES))
def test_registration_has_d4rls_episode_limits_and_a_flat_observation(size):
    spec = gym.spec(ANTMAZE_IDS[size])
    assert spec.max_episode_steps == MAZES[size].max_episode_steps == (700 if size == "umaze" else 1000)
    env = gym.make(ANTMAZE_IDS[size])
    assert env.observation_space.shape == (OBSERVATION_DIM,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (8,)


@pytest.mark.parametrize("frame", FRAMES)
def test_the_observation_is_d4rls_qpos_and_qvel_with_positions_in_the_frame(frame):
    env = gym.make(ANTMAZE_IDS["medium"], frame=frame)
    task = env.get_wrapper_attr("task")
    obs, _ = env.reset(seed=3)
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
    data = _ant(env).data
    expected = np.concatenate([data.qpos[:15], data.qvel[:14]])
    expected[:2] -= task.origin
    np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-5)
    # The start: D4RL's origin in its frame (the library's +-1 of start noise stays).
    first, _ = env.reset(seed=0)
    assert np.all(np.abs(first[:2] - (task.cell_world_xy(task.start_cell) - task.origin)) <= 1.0 + 1e-6)


@pytest.mark.parametrize("frame", FRAMES)
def test_reaching_the_pinned_goal_pays_one_and_ends_the_episode(frame):
    env = gym.make(ANTMAZE_IDS["umaze"], frame=frame)
    task = env.get_wrapper_attr("task")
    env.reset(seed=0)
    goal_world = task.cell_world_xy(task.goal_cell)
    np.testing.assert_allclose(env.unwrapped.goal, goal_world)  # no goal noise
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert (reward, terminated, info["success"]) == (0.0, False, False)
    ant = _ant(env)
    ant.data.qpos[:2] = goal_world + [0.3, -0.2]  # 0.36 from the goal: inside D4RL's 0.5
    ant.data.qvel[:] = 0.0
    mujoco.mj_forward(ant.model, ant.data)
    obs, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)
    assert info["goal_distance"] == pytest.approx(np.linalg.norm(obs[:2] - task.goal_xy), abs=1e-5)


@pytest.mark.parametrize("size, goal", [("umaze", (0.0, 8.0)), ("medium", (20.0, 20.0)), ("large", (32.0, 24.0))])
def test_the_d4rl_frame_rebuilds_d4rls_maze_walls_start_and_goal(size, goal):
    # D4RL's maze_env.py puts the block of map cell (i, j) at (4 j, 4 i) minus the start cell's,
    # and its evaluation goals at (0, 8), (20, 20), (32, 24) (before its goal noise).
    env = gym.make(ANTMAZE_IDS[size], frame="d4rl")
    task = env.get_wrapper_attr("task")
    model = _ant(env).model
    d4rl_map, (start_row, start_col) = MAZES[size].maze_map, MAZES[size].d4rl_start
    rows = len(d4rl_map)
    walls = 0
    for i, row in enumerate(d4rl_map):
        for j, cell in enumerate(row):
            if cell != 1:
                continue
            geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"block_{rows - 1 - i}_{j}")
            assert geom >= 0
            np.testing.assert_allclose(model.geom_pos[geom][:2] - task.origin, [4 * (j - start_col), 4 * (i - start_row)])
            walls += 1
    assert walls == sum(v == 1 for row in d4rl_map for v in row)
    np.testing.assert_allclose(task.goal_xy, goal)
    np.testing.assert_allclose(task.cell_world_xy(task.start_cell) - task.origin, [0.0, 0.0])


def test_the_minari_frame_keeps_the_librarys_maze_and_minaris_umaze_route():
    task = AntMazeTask("umaze", "minari")
    assert task.maze_map == MAZES["umaze"].maze_map and np.all(task.origin == 0)
    # Minari's umaze data runs from cell (3, 1) to (1, 1): the goal is 8 up from the start, as D4RL's.
    np.testing.assert_allclose(task.goal_xy - task.cell_world_xy(task.start_cell), [0.0, 8.0])
    with pytest.raises(ValueError, match="frame 'mirror'"):
        AntMazeTask("umaze", "mirror")


def test_the_goal_missing_overlay_cuts_around_the_goal_of_its_environment():
    """configs/antmaze/goal_missing_large.yaml: its region is centred on the goal the
    evaluation rewards (a centre off the goal would leave the goal's data in)."""
    import yaml

    from conftest import REPO
    from ooo_lightning.data.regions import Region

    config = yaml.safe_load((REPO / "configs" / "antmaze" / "goal_missing_large.yaml").read_text())
    region = config["data"]["remove_region"]
    assert config["model"]["init_args"]["explorer"]["init_args"]["env"] == ANTMAZE_IDS["large"]
    np.testing.assert_array_equal(region["center"], AntMazeTask("large", "minari").goal_xy)
    assert region["radius"] >= AntMazeTask("large").goal_radius and region["dims"] == [0, 1]
    assert Region.parse(region).radius == region["radius"]  # the option reads it
