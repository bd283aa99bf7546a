"""ooo/Adroit*Binary-v1: gymnasium-robotics' Adroit tasks with reward 1 exactly on success."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from ooo_lightning.envs import ADROIT_BINARY_IDS
from ooo_lightning.envs.adroit import SUCCESS_FROM_OBSERVATION, TASKS

OBSERVATION_DIMS = {"pen": 45, "door": 39, "relocate": 39}


def _force_success(env, task):
    """Puts the simulator in a state the library calls a success."""
    inner = env.unwrapped
    if task == "door":
        qpos, qvel = inner.data.qpos.copy(), inner.data.qvel.copy()
        qpos[inner.door_hinge_addrs] = 1.5  # success: >= 1.35 rad
        inner.set_state(qpos, qvel)
    elif task == "relocate":
        inner.model.site_pos[inner.target_obj_site_id] = inner.data.xpos[inner.obj_body_id]  # target on the ball
        mujoco.mj_forward(inner.model, inner.data)
    else:
        inner.model.body_quat[inner.target_obj_body_id] = inner.data.xquat[inner.obj_body_id]  # target turned as the pen
        mujoco.mj_forward(inner.model, inner.data)


@pytest.mark.parametrize("task", list(ADROIT_BINARY_IDS))
def test_limits_and_spaces_are_d4rls(task):
    # d4rl/hand_manipulation_suite: pen 100 steps, door and relocate 200.
    assert gym.spec(ADROIT_BINARY_IDS[task]).max_episode_steps == TASKS[task][1] == (100 if task == "pen" else 200)
    env = gym.make(ADROIT_BINARY_IDS[task])
    assert env.observation_space.shape == (OBSERVATION_DIMS[task],) and env.observation_space.dtype == np.float32


@pytest.mark.parametrize("task", list(ADROIT_BINARY_IDS))
def test_the_reward_is_one_exactly_on_the_environments_success(task):
    env = gym.make(ADROIT_BINARY_IDS[task])
    _, info = env.reset(seed=0)
    assert info["episode_score"] == 0.0
    seen = []
    for step in range(8):
        if step == 5:
            _force_success(env, task)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample() * 0.01)
        assert reward == float(info["success"]) and not terminated
        # D4RL's files record no success: the reader evaluates the library's rule on the observation.
        assert bool(SUCCESS_FROM_OBSERVATION[task](obs.astype(np.float64))) == info["success"]
        assert info["episode_score"] == float(any(seen + [info["success"]]))
        seen.append(info["success"])
    assert seen[:5] == [False] * 5 and seen[5]


def test_an_unknown_task_is_refused():
    from ooo_lightning.envs.adroit import make_binary_adroit

    with pytest.raises(ValueError, match="unknown adroit task 'hammer'"):
        make_binary_adroit("hammer")
