"""Binary Adroit: gymnasium-robotics' Adroit hand tasks with reward 1 exactly on success.

``ooo/Adroit{Pen,Door,Relocate}Binary-v1`` wrap ``AdroitHand{Pen,Door,Relocate}-v1``'s classes
(dense variant; the reward is replaced, so which one does not matter) and give reward 1.0 on a
step whose ``info["success"]`` is True, else 0.0: the binary ("sparse") adroit tasks of the
paper's Cal-QL and IQL commands, whose agents shift it to -1 on failure and 0 on success.
Observations, actions and the success rule are the library's, unchanged:

* pen: the pen within 0.075 of the target position and orientation cosine above 0.95;
* door: the door hinge opened past 1.35 rad;
* relocate: the ball within 0.1 of the target.

The episode never terminates (as the library's and D4RL's); the limits are D4RL's: 100 steps
for pen, 200 for door and relocate (gymnasium-robotics registers 200 for all three).
``info["episode_score"]`` is 1.0 once the episode has succeeded at some step: Cal-QL's
goal-achieved rate, which the evaluation normalizes instead of the return.

The datasets: Minari's ``D4RL/<task>/*-v2`` replays of D4RL's demonstrations record
``info["success"]`` at every step; it becomes the reward. D4RL's HDF5 files do not (their
``infos/*`` hold simulator states), so there the same rule is evaluated on the next
observation, which holds every quantity it needs (:data:`SUCCESS_FROM_OBSERVATION`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np


def _pen_success(obs: np.ndarray) -> np.ndarray:
    # obs: qpos[:-6] (24), obj_pos (3), obj_vel (6), obj_orien [33:36], desired_orien [36:39],
    # obj_pos - desired_pos [39:42], obj_orien - desired_orien [42:45].
    distance = np.linalg.norm(obs[..., 39:42], axis=-1)
    cosine = np.sum(obs[..., 33:36] * obs[..., 36:39], axis=-1)
    return (distance < 0.075) & (cosine > 0.95)


def _door_success(obs: np.ndarray) -> np.ndarray:
    # obs: qpos[1:-2] (27), latch_pos [27], door_pos [28], palm, handle, palm - handle, door_open.
    return obs[..., 28] >= 1.35


def _relocate_success(obs: np.ndarray) -> np.ndarray:
    # obs: qpos[:-6] (30), palm - obj [30:33], palm - target [33:36], obj - target [36:39].
    return np.linalg.norm(obs[..., 36:39], axis=-1) < 0.1


#: task -> (environment class, D4RL's episode limit, the library's success rule on an observation).
TASKS: dict[str, tuple[str, int, Callable[[np.ndarray], np.ndarray]]] = {
    "pen": ("gymnasium_robotics.envs.adroit_hand.adroit_pen:AdroitHandPenEnv", 100, _pen_success),
    "door": ("gymnasium_robotics.envs.adroit_hand.adroit_door:AdroitHandDoorEnv", 200, _door_success),
    "relocate": ("gymnasium_robotics.envs.adroit_hand.adroit_relocate:AdroitHandRelocateEnv", 200, _relocate_success),
}
SUCCESS_FROM_OBSERVATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {k: v[2] for k, v in TASKS.items()}


def _task(task: str) -> tuple[str, int, Callable[[np.ndarray], np.ndarray]]:
    if task not in TASKS:
        raise ValueError(f"unknown adroit task {task!r}; choose one of {sorted(TASKS)}")
    return TASKS[task]


class BinarySuccessReward(gymnasium.Wrapper):
    """Reward 1.0 on a step whose ``info["success"]`` is True, else 0.0; all else unchanged
    (observations cast to float32). ``info["episode_score"]`` is 1.0 once the episode has
    succeeded at some step: the goal-achieved rate Cal-QL reports for these tasks, which the
    evaluation normalizes (with ``data.score_reference: [0, 1]``) instead of the return."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        box = env.observation_space
        self.observation_space = gymnasium.spaces.Box(box.low.astype(np.float32), box.high.astype(np.float32),
                                                      dtype=np.float32)
        self._succeeded = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._succeeded = False
        return np.asarray(observation, dtype=np.float32), {**info, "success": False, "episode_score": 0.0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        success = bool(info["success"])
        self._succeeded = self._succeeded or success
        info = {**info, "success": success, "episode_score": float(self._succeeded)}
        return np.asarray(observation, dtype=np.float32), float(success), terminated, truncated, info


def make_binary_adroit(task: str = "relocate", **kwargs: Any) -> BinarySuccessReward:
    """Entry point of ``ooo/Adroit{Pen,Door,Relocate}Binary-v1``; ``kwargs`` go to the library's class."""
    module, name = _task(task)[0].split(":")
    env_class = getattr(importlib.import_module(module), name)
    return BinarySuccessReward(env_class(**{"reward_type": "dense", **kwargs}))


class BinaryAdroitDatasetLayout:
    """How an adroit dataset becomes the binary task's transitions: the reward is the recorded
    ``success`` (Minari) or the success rule on the next observation (D4RL files); adroit
    episodes never terminate, so no transition is terminal."""

    info_keys: tuple[str, ...] = ("success",)

    def __init__(self, task: str) -> None:
        self.success_rule = _task(task)[2]
        self.name = f"binary adroit {task}"

    def observations(self, observations: Any) -> np.ndarray:
        return np.asarray(observations)

    def task_rewards(self, data: Mapping[str, np.ndarray], infos: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "success" in infos:
            success = np.asarray(infos["success"], dtype=bool).reshape(-1)
        else:
            success = self.success_rule(np.asarray(data["next_observations"], dtype=np.float64))
        return {"rewards": success.astype(np.float32), "terminals": np.zeros(len(success), dtype=bool)}


def dataset_layout(*, env_kwargs: Mapping[str, Any], task: str) -> BinaryAdroitDatasetLayout:
    """The reader's layout for ``ooo/Adroit*Binary-v1``."""
    return BinaryAdroitDatasetLayout(task)
