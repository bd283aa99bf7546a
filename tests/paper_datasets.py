"""Small Minari datasets of the paper's tasks, made with minari's own ``EpisodeBuffer`` and
``create_dataset_from_buffers`` over the gymnasium-robotics environments, recorded as Minari
recorded its ``D4RL/*`` datasets: the library's environment and kwargs, its dict observations,
its rewards, its ``success`` info where it has one. Random actions; a few short episodes.

(minari's ``DataCollector`` needs jax, which is not installed: the buffers are filled by hand.)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np

#: Minari dataset id -> (the library's environment id, its kwargs), as Minari's generation
#: scripts made them (minari-dataset-generation-scripts: antmaze, kitchen, adroit).
PAPER_DATASETS: dict[str, tuple[str, dict]] = {
    "D4RL/antmaze/umaze-v1": ("AntMaze_UMaze-v4", {"continuing_task": True, "reset_target": False}),
    "D4RL/antmaze/medium-diverse-v1": ("AntMaze_Medium_Diverse_GR-v4", {"continuing_task": True, "reset_target": False}),
    "D4RL/antmaze/large-diverse-v1": ("AntMaze_Large_Diverse_GR-v4", {"continuing_task": True, "reset_target": False}),
    **{f"D4RL/kitchen/{name}-v2": ("FrankaKitchen-v1", {"remove_task_when_completed": False,
                                                        "terminate_on_tasks_completed": False,
                                                        "tasks_to_complete": list(tasks)})
       for name, tasks in (("complete", ("microwave", "kettle", "light switch", "slide cabinet")),
                           ("partial", ("microwave", "kettle", "light switch", "slide cabinet")),
                           ("mixed", ("microwave", "kettle", "bottom burner", "light switch")))},
    **{f"D4RL/{task}/human-v2": (f"AdroitHand{task.capitalize()}-v1", {}) for task in ("relocate", "pen", "door")},
}
#: What Minari kept of each step's info (adroit and antmaze: ``success``; kitchen: none of the tasks').
RECORDED_INFOS = ("success",)


def _stack(values: list) -> np.ndarray | dict:
    if isinstance(values[0], dict):
        return {k: _stack([v[k] for v in values]) for k in values[0]}
    return np.asarray(values)


def record_episodes(env: gym.Env, episodes: int, steps: int, seed: int) -> list:
    """``episodes`` random-action episodes of ``steps`` steps (the last truncated) as minari
    ``EpisodeBuffer``s: T + 1 observations and infos (the reset's first), T of the rest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library's kitchen returns one goal dict at every step
        return _record(env, episodes, steps, seed)


def _record(env: gym.Env, episodes: int, steps: int, seed: int) -> list:
    from minari.data_collector import EpisodeBuffer

    env.action_space.seed(seed)
    buffers = []
    for episode in range(episodes):
        observation, info = env.reset(seed=seed + episode)
        observations, infos = [observation], [info]
        actions, rewards, terminations, truncations = [], [], [], []
        for t in range(steps):
            action = env.action_space.sample()
            observation, reward, terminated, truncated, info = env.step(action)
            observations.append(observation)
            infos.append(info)
            actions.append(action)
            rewards.append(float(reward))
            terminations.append(bool(terminated))
            truncations.append(bool(truncated) or t == steps - 1)
            if terminated or truncated:
                break
        kept = {k: np.asarray([bool(i.get(k, False)) for i in infos]) for k in RECORDED_INFOS if k in infos[-1]}
        buffers.append(EpisodeBuffer(id=episode, observations=_stack(observations), actions=np.asarray(actions),
                                     rewards=rewards, terminations=terminations, truncations=truncations, infos=kept))
    return buffers


def make_library_env(env_id: str, **kwargs) -> gym.Env:
    """A gymnasium-robotics environment by its registered id, quietly (its v4 ids are "out of date")."""
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id, **kwargs)


def write_dataset(dataset_id: str, buffers: list, env: gym.Env, observation_space: gym.Space | None = None) -> None:
    """A Minari dataset of ``buffers`` under the current ``MINARI_DATASETS_PATH``."""
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari asks for an author, e-mail, permalink...
        minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=observation_space or env.observation_space,
                                           action_space=env.action_space, algorithm_name="random actions")


def write_paper_datasets(root: Path, episodes: int = 2, steps: int = 12, seed: int = 0) -> Path:
    """Every dataset of ``PAPER_DATASETS`` under ``root`` (a ``MINARI_DATASETS_PATH``)."""
    import os

    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        for dataset_id, (env_id, kwargs) in PAPER_DATASETS.items():
            env = make_library_env(env_id, **kwargs)
            write_dataset(dataset_id, record_episodes(env, episodes, steps, seed), env)
            env.close()
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
    return root
