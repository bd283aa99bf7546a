"""Environments; importing this package registers them with gymnasium.

Registration uses string entry points, so the MuJoCo-based tasks (and mujoco,
gymnasium-robotics) are only imported when one of them is made.
"""

from __future__ import annotations

import gymnasium

from ooo_lightning.envs.point_mass_wall import MAX_EPISODE_STEPS, PointMassWallEnv, WallLayout

POINT_MASS_WALL_ID = "ooo/PointMassWall-v1"
HALF_CHEETAH_SPARSE_ID = "ooo/HalfCheetahSparse-v0"
ANT_SPARSE_ID = "ooo/AntSparse-v0"
POINT_MAZE_MEDIUM_ID = "ooo/PointMazeMedium-v0"
POINT_MAZE_LARGE_ID = "ooo/PointMazeLarge-v0"

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


__all__ = [
    "ANT_SPARSE_ID",
    "HALF_CHEETAH_SPARSE_ID",
    "POINT_MASS_WALL_ID",
    "POINT_MAZE_LARGE_ID",
    "POINT_MAZE_MEDIUM_ID",
    "PointMassWallEnv",
    "WallLayout",
    "point_mass_wall_layout",
]
