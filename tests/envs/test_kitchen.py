"""ooo/Kitchen*-v0: D4RL's kitchen tasks on gymnasium-robotics' FrankaKitchen, with D4RL's
60-entry observation and the datasets' reward (subtasks done in the next state)."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from ooo_lightning.envs import KITCHEN_IDS
from ooo_lightning.envs.kitchen import MAX_EPISODE_STEPS, OBSERVATION_DIM, TASKS
from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

QUIET = {"robot_noise_ratio": 0.0, "object_noise_ratio": 0.0}  # observations equal to the simulator's state


def test_d4rls_subtask_lists_limits_and_observation_width():
    # d4rl/kitchen: complete and partial both KitchenMicrowaveKettleLightSliderV0, mixed
    # KitchenMicrowaveKettleBottomBurnerLightV0; 280 steps.
    assert TASKS["complete"] == TASKS["partial"] == ("microwave", "kettle", "light switch", "slide cabinet")
    assert TASKS["mixed"] == ("microwave", "kettle", "bottom burner", "light switch")
    for env_id in KITCHEN_IDS.values():
        assert gym.spec(env_id).max_episode_steps == MAX_EPISODE_STEPS == 280
    env = gym.make(KITCHEN_IDS["mixed"])
    assert env.observation_space.shape == (OBSERVATION_DIM,) and env.observation_space.dtype == np.float32


def test_the_observation_is_d4rls_positions_and_goal():
    env = gym.make(KITCHEN_IDS["complete"], **QUIET)
    env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_allclose(obs[:30], env.unwrapped.data.qpos[:30], atol=1e-6)
    goal = obs[30:]
    for task in TASKS["complete"]:
        np.testing.assert_allclose(goal[OBS_ELEMENT_INDICES[task]], OBS_ELEMENT_GOALS[task], atol=1e-6)
    assert np.all(goal[OBS_ELEMENT_INDICES["bottom burner"]] == 0)  # not a subtask of complete


def _set_done(env, tasks):
    data, model = env.unwrapped.data, env.unwrapped.model
    for task in tasks:
        data.qpos[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
    data.qvel[:] = 0.0
    mujoco.mj_forward(model, data)


def test_the_reward_counts_the_subtasks_done_and_all_four_end_the_episode():
    env = gym.make(KITCHEN_IDS["mixed"], **QUIET)
    env.reset(seed=0)
    assert env.step(np.zeros(9))[1] == 0.0
    _set_done(env, ["microwave"])
    for _ in range(2):  # a done subtask is paid at every step it stays done (the datasets' reward)
        _, reward, terminated, _, info = env.step(np.zeros(9))
        assert (reward, terminated, info["success"], info["episode_score"]) == (1.0, False, False, 1.0)
    _set_done(env, ["kettle", "bottom burner", "light switch"])
    _, reward, terminated, _, info = env.step(np.zeros(9))
    assert (reward, terminated, info["success"], info["episode_score"]) == (4.0, True, True, 4.0)
    # D4RL's score counts a subtask once, even when it is undone later in the episode.
    env.reset(seed=1)
    _set_done(env, ["light switch"])
    env.step(np.zeros(9))
    env.unwrapped.data.qpos[OBS_ELEMENT_INDICES["light switch"]] = 0.0
    mujoco.mj_forward(env.unwrapped.model, env.unwrapped.data)
    _, reward, _, _, info = env.step(np.zeros(9))
    assert (reward, info["episode_score"]) == (0.0, 1.0)


def test_the_reset_forgets_the_episodes_score():
    env = gym.make(KITCHEN_IDS["complete"], **QUIET)
    env.reset(seed=0)
    _set_done(env, ["microwave"])
    assert env.step(np.zeros(9))[4]["episode_score"] == 1.0
    _, info = env.reset(seed=0)
    assert info["episode_score"] == 0.0


def test_unknown_subtasks_or_datasets_are_refused():
    from ooo_lightning.envs.kitchen import KitchenTask, make_kitchen

    with pytest.raises(ValueError, match="unknown kitchen subtasks"):
        KitchenTask(("microwave", "toaster"))
    with pytest.raises(ValueError, match="unknown kitchen dataset 'full'"):
        make_kitchen("full")
