"""FrankaKitchen with D4RL's task lists, D4RL's 60-dim observation and its dataset reward.

Built on gymnasium-robotics' ``KitchenEnv`` (``FrankaKitchen-v1``). Tasks, as D4RL registers
them (``d4rl/kitchen/__init__.py``): ``complete`` and ``partial`` = microwave, kettle, light
switch, slide cabinet (``KitchenMicrowaveKettleLightSliderV0``); ``mixed`` = microwave, kettle,
bottom burner, light switch (``KitchenMicrowaveKettleBottomBurnerLightV0``). Minari's
``D4RL/kitchen/*-v2`` datasets use the same lists.

* Observation: D4RL's 60 entries, robot joint positions (9), object positions (21), and the
  goal (30: the task's target values at their qpos indices, zeros elsewhere, constant). The
  library's ``observation`` (59) has the same positions with the robot's and the objects'
  velocities between them; those are dropped, as D4RL's policies never saw them. The
  library's observation noise (robot 0.01, objects 0.0005 x its amplitudes) stays.
* Reward: the number of the task's subtasks done in the next state (joint values within 0.3 of
  the target, the library's and D4RL's ``BONUS_THRESH``), counted on the observation. This is
  the reward of the datasets: D4RL's (``generate_kitchen_datasets.py``: ``REMOVE_TASKS_WHEN_COMPLETE
  = False``, "a Markovian reward") and Minari's (``FrankaKitchen-v1`` with
  ``remove_task_when_completed=False``). ``FrankaKitchen-v1``'s own default reward, like D4RL's
  evaluation environment's, is instead the number of subtasks *first* completed at that step.
* Termination once every subtask is done at once (``info["success"]``); 280-step limit.
* ``info["episode_score"]``: the subtasks completed at least once in the episode, D4RL's score
  (the return of its evaluation environment, normalized with 0 and 4). The evaluation uses it
  for the normalized score, since this reward's return counts a subtask once per step it holds.

Importing this module imports gymnasium-robotics and mujoco.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium_robotics.envs.franka_kitchen.kitchen_env import BONUS_THRESH, OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES, KitchenEnv

TASKS: dict[str, tuple[str, ...]] = {
    "complete": ("microwave", "kettle", "light switch", "slide cabinet"),
    "partial": ("microwave", "kettle", "light switch", "slide cabinet"),
    "mixed": ("microwave", "kettle", "bottom burner", "light switch"),
}
#: D4RL's layout: robot qpos (9), object qpos (21), goal (30).
OBSERVATION_DIM: int = 60
ROBOT_JOINTS: int = 9
OBJECT_JOINTS: int = 21
QPOS_DIM: int = ROBOT_JOINTS + OBJECT_JOINTS
MAX_EPISODE_STEPS: int = 280
#: Where the library's 59-entry observation keeps the positions: robot qpos [0, 9), robot qvel
#: [9, 18), object qpos [18, 39), object qvel [39, 59).
_ROBOT_QPOS = slice(0, ROBOT_JOINTS)
_OBJECT_QPOS = slice(2 * ROBOT_JOINTS, 2 * ROBOT_JOINTS + OBJECT_JOINTS)


@dataclass(frozen=True)
class KitchenTask:
    """A kitchen task's observation and reward, shared by the environment and the reader."""

    tasks: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in OBS_ELEMENT_GOALS]
        if unknown or not self.tasks:
            raise ValueError(f"unknown kitchen subtasks {unknown}; choose among {sorted(OBS_ELEMENT_GOALS)}")

    @property
    def name(self) -> str:
        return f"kitchen ({', '.join(self.tasks)})"

    @cached_property
    def goal(self) -> np.ndarray:
        """D4RL's 30-entry goal: each subtask's target at its qpos indices, zeros elsewhere."""
        goal = np.zeros(QPOS_DIM)
        for task in self.tasks:
            goal[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
        return goal

    def flat_observation(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        """The library's dict observation (one step or stacked steps) in D4RL's 60 entries."""
        state = np.asarray(observation["observation"], dtype=np.float64)
        goal = np.broadcast_to(self.goal, (*state.shape[:-1], QPOS_DIM))
        return np.concatenate([state[..., _ROBOT_QPOS], state[..., _OBJECT_QPOS], goal], axis=-1)

    def done_subtasks(self, observation: np.ndarray) -> np.ndarray:
        """(..., subtasks) bool: which subtasks a flat observation shows done."""
        qpos = np.asarray(observation)[..., :QPOS_DIM]
        return np.stack([np.linalg.norm(qpos[..., OBS_ELEMENT_INDICES[t]] - OBS_ELEMENT_GOALS[t], axis=-1) < BONUS_THRESH
                         for t in self.tasks], axis=-1)

    def reward(self, observation: np.ndarray) -> np.ndarray:
        return self.done_subtasks(observation).sum(-1).astype(np.float32)


class KitchenSubtasks(gymnasium.Wrapper):
    """D4RL's kitchen task on ``KitchenEnv`` (see the module doc). The inner environment must
    neither remove completed tasks nor terminate: this wrapper counts and ends."""

    def __init__(self, env: KitchenEnv, task: KitchenTask) -> None:
        super().__init__(env)
        inner = env.unwrapped
        if inner.remove_task_when_completed or inner.terminate_on_tasks_completed:
            raise ValueError("KitchenSubtasks needs remove_task_when_completed=False and terminate_on_tasks_completed=False")
        self.task = task
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBSERVATION_DIM,), dtype=np.float32)
        self._completed: set[str] = set()

    def _observe(self, observation: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        flat = self.task.flat_observation(observation)
        done = self.task.done_subtasks(flat)
        self._completed.update(t for t, d in zip(self.task.tasks, done) if d)
        info = {"success": bool(done.all()), "subtasks_done": int(done.sum()), "episode_score": float(len(self._completed))}
        return flat, done, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        observation, _ = self.env.reset(seed=seed, options=options)
        self._completed = set()
        flat, _, info = self._observe(observation)
        return flat.astype(np.float32), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        observation, _, _, truncated, _ = self.env.step(action)
        flat, done, info = self._observe(observation)
        return flat.astype(np.float32), float(done.sum()), bool(done.all()), bool(truncated), info


def make_kitchen(dataset: str = "complete", **kwargs: Any) -> KitchenSubtasks:
    """Entry point of ``ooo/Kitchen{Complete,Partial,Mixed}-v0``; ``kwargs`` go to ``KitchenEnv``
    (``robot_noise_ratio``, ``object_noise_ratio``, ``render_mode``, ...)."""
    if dataset not in TASKS:
        raise ValueError(f"unknown kitchen dataset {dataset!r}; choose one of {sorted(TASKS)}")
    task = KitchenTask(TASKS[dataset])
    env = KitchenEnv(tasks_to_complete=list(task.tasks), remove_task_when_completed=False,
                     terminate_on_tasks_completed=False, **kwargs)
    return KitchenSubtasks(env, task)


class KitchenDatasetLayout:
    """How a kitchen dataset becomes this task's transitions: Minari's dict observations in
    D4RL's 60 entries, the reward and termination counted on the next observation (D4RL's files
    count on the current one, and mark every demonstration's last step terminal)."""

    info_keys: tuple[str, ...] = ()

    def __init__(self, task: KitchenTask) -> None:
        self.task = task
        self.name = task.name

    def observations(self, observations: Any) -> np.ndarray:
        if isinstance(observations, Mapping):
            return self.task.flat_observation(observations)
        return np.asarray(observations)  # a D4RL file: already its 60 entries

    def task_rewards(self, data: Mapping[str, np.ndarray], infos: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = self.task.done_subtasks(data["next_observations"])
        return {"rewards": done.sum(-1).astype(np.float32), "terminals": done.all(-1)}


def dataset_layout(*, env_kwargs: Mapping[str, Any], dataset: str) -> KitchenDatasetLayout:
    """The reader's layout for ``ooo/Kitchen*-v0``."""
    return KitchenDatasetLayout(KitchenTask(TASKS[dataset]))
