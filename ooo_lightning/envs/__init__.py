"""Environments; importing this package registers them with gymnasium, and with each the
project's tools for it (``task_tools``: dataset generator, pictures of its states).

Registration uses string entry points, so the MuJoCo-based tasks (and mujoco,
gymnasium-robotics) are only imported when one of them is made.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from ooo_lightning.envs.point_mass_wall import MAX_EPISODE_STEPS, PointMassWallEnv, WallLayout

POINT_MASS_WALL_ID = "ooo/PointMassWall-v1"
HALF_CHEETAH_SPARSE_ID = "ooo/HalfCheetahSparse-v0"
ANT_SPARSE_ID = "ooo/AntSparse-v0"
POINT_MAZE_MEDIUM_ID = "ooo/PointMazeMedium-v0"
POINT_MAZE_LARGE_ID = "ooo/PointMazeLarge-v0"
# The paper's benchmark tasks (antmaze.py, kitchen.py, adroit.py): D4RL's tasks on
# gymnasium-robotics, read from Minari's D4RL datasets or D4RL's HDF5 files.
ANTMAZE_IDS: dict[str, str] = {size: f"ooo/AntMaze{name}-v0" for size, name in
                               (("umaze", "UMaze"), ("medium", "Medium"), ("large", "Large"))}
KITCHEN_IDS: dict[str, str] = {name: f"ooo/Kitchen{name.capitalize()}-v0" for name in ("complete", "partial", "mixed")}
ADROIT_BINARY_IDS: dict[str, str] = {task: f"ooo/Adroit{task.capitalize()}Binary-v1" for task in ("pen", "door", "relocate")}

# id -> (entry point, max_episode_steps, kwargs for the entry point).  The step limits are
# literals so that this import stays light: they must equal sparse_mujoco's
# SPARSE_MAX_EPISODE_STEPS and pointmaze's MAZES[size].max_episode_steps (tests check it).
_REGISTRATIONS: dict[str, tuple[str, int, dict[str, object]]] = {
    POINT_MASS_WALL_ID: (
        "ooo_lightning.envs.point_mass_wall:PointMassWallEnv",
        MAX_EPISODE_STEPS,
        {},
    ),
    HALF_CHEETAH_SPARSE_ID: ("ooo_lightning.envs.sparse_mujoco:make_sparse_half_cheetah", 1000, {}),
    ANT_SPARSE_ID: ("ooo_lightning.envs.sparse_mujoco:make_sparse_ant", 1000, {}),
    POINT_MAZE_MEDIUM_ID: ("ooo_lightning.envs.pointmaze:make_point_maze", 600, {"size": "medium"}),
    POINT_MAZE_LARGE_ID: ("ooo_lightning.envs.pointmaze:make_point_maze", 800, {"size": "large"}),
    # Limits as D4RL's (antmaze.MAZES, kitchen.MAX_EPISODE_STEPS, adroit.TASKS; tests check them).
    **{env_id: ("ooo_lightning.envs.antmaze:make_ant_maze", 700 if size == "umaze" else 1000, {"size": size})
       for size, env_id in ANTMAZE_IDS.items()},
    **{env_id: ("ooo_lightning.envs.kitchen:make_kitchen", 280, {"dataset": name}) for name, env_id in KITCHEN_IDS.items()},
    **{env_id: ("ooo_lightning.envs.adroit:make_binary_adroit", 100 if task == "pen" else 200, {"task": task})
       for task, env_id in ADROIT_BINARY_IDS.items()},
}

# Guard: re-registering an id makes gymnasium warn, and this module may be imported
# again (e.g. after importlib.reload or from spawned workers).
for _env_id, (_entry_point, _max_steps, _kwargs) in _REGISTRATIONS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps, kwargs=_kwargs
        )


def point_mass_wall_layout(env_kwargs: dict | None = None) -> WallLayout:
    """The layout that ``gymnasium.make(POINT_MASS_WALL_ID, **env_kwargs)`` builds."""
    layout = {k: v for k, v in (env_kwargs or {}).items() if k != "max_episode_steps"}
    return PointMassWallEnv(**layout).layout


def point_mass_wall_record(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The env_kwargs a point-mass-wall dataset depends on, canonical: a layout given with its
    defaults spelled out equals the default layout."""
    steps = env_kwargs.get("max_episode_steps", gymnasium.spec(POINT_MASS_WALL_ID).max_episode_steps)
    return {**point_mass_wall_layout(env_kwargs).as_kwargs(), "max_episode_steps": steps}


@dataclass(frozen=True)
class TaskTools:
    """What the project has for a task besides its environment, as ``module:function`` paths
    imported on first use. Each function also receives ``kwargs`` (e.g. the maze size).

    * ``generate_dataset(*, episodes, steps, seed, noise, missing_goal_radius, env_kwargs)``:
      the task's offline data as D4RL arrays;
    * ``plot_dataset(data, path, *, missing_goal_radius, env_kwargs)``: its coverage picture;
    * ``plot_visits(offline, online, path, *, env_kwargs)``: a run's visited states, from the
      observations of the offline data and of the explorer's online steps;
    * ``data_record(env_kwargs)``: the env_kwargs a generated dataset depends on (default:
      all of them), recorded next to the file so that a stale file is noticed;
    * ``dataset_layout(*, env_kwargs)``: how a dataset of the task is read into the
      environment's observations and rewards (``ooo_lightning.data.task_layout.TaskLayout``).
    """

    generate_dataset: str | None = None
    plot_dataset: str | None = None
    plot_visits: str | None = None
    data_record: str | None = None
    dataset_layout: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def call(self, tool: str, *args: Any, **kwargs: Any) -> Any:
        module, name = getattr(self, tool).split(":")
        return getattr(importlib.import_module(module), name)(*args, **{**self.kwargs, **kwargs})

    def record(self, env_kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.data_record is None:
            return json.loads(json.dumps(env_kwargs, sort_keys=True))
        module, name = self.data_record.split(":")
        return getattr(importlib.import_module(module), name)(env_kwargs)


def _maze_tools(size: str) -> TaskTools:
    where = "ooo_lightning.envs.maze_data"
    return TaskTools(f"{where}:generate_dataset", f"{where}:plot_dataset", f"{where}:plot_visits", kwargs={"size": size})


_TOOLS: dict[str, TaskTools] = {
    POINT_MASS_WALL_ID: TaskTools(
        generate_dataset="ooo_lightning.envs.scripted:generate_dataset",
        plot_dataset="ooo_lightning.envs.point_mass_pictures:plot_dataset",
        plot_visits="ooo_lightning.envs.point_mass_pictures:plot_visits",
        data_record="ooo_lightning.envs:point_mass_wall_record",
    ),
    POINT_MAZE_MEDIUM_ID: _maze_tools("medium"),
    POINT_MAZE_LARGE_ID: _maze_tools("large"),
    **{env_id: TaskTools(dataset_layout="ooo_lightning.envs.antmaze:dataset_layout", kwargs={"size": size})
       for size, env_id in ANTMAZE_IDS.items()},
    **{env_id: TaskTools(dataset_layout="ooo_lightning.envs.kitchen:dataset_layout", kwargs={"dataset": name})
       for name, env_id in KITCHEN_IDS.items()},
    **{env_id: TaskTools(dataset_layout="ooo_lightning.envs.adroit:dataset_layout", kwargs={"task": task})
       for task, env_id in ADROIT_BINARY_IDS.items()},
}


def task_tools(env_id: str) -> TaskTools:
    """The project's tools for ``env_id`` (none for a task it only knows as an environment)."""
    return _TOOLS.get(env_id, TaskTools())


def dataset_layout(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Any:
    """How a dataset of ``env_id`` is read into its observations and rewards (a
    ``TaskLayout``), or None for a task whose datasets are read as they are."""
    tools = task_tools(env_id)
    return tools.call("dataset_layout", env_kwargs=dict(env_kwargs or {})) if tools.dataset_layout else None


def dataset_env_ids() -> list[str]:
    """The tasks whose offline dataset the project can generate."""
    return sorted(env_id for env_id, tools in _TOOLS.items() if tools.generate_dataset)


__all__ = [
    "ADROIT_BINARY_IDS",
    "ANTMAZE_IDS",
    "ANT_SPARSE_ID",
    "HALF_CHEETAH_SPARSE_ID",
    "KITCHEN_IDS",
    "POINT_MASS_WALL_ID",
    "POINT_MAZE_LARGE_ID",
    "POINT_MAZE_MEDIUM_ID",
    "PointMassWallEnv",
    "TaskTools",
    "WallLayout",
    "dataset_env_ids",
    "dataset_layout",
    "point_mass_wall_layout",
    "task_tools",
]
