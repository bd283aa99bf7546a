"""Environments; importing this package registers them with gymnasium."""

from __future__ import annotations

import gymnasium

from ooo_lightning.envs.point_mass_wall import MAX_EPISODE_STEPS, PointMassWallEnv

POINT_MASS_WALL_ID = "ooo/PointMassWall-v0"

# Guard: re-registering an id makes gymnasium warn, and this module may be imported
# again (e.g. after importlib.reload or from spawned workers).
if POINT_MASS_WALL_ID not in gymnasium.registry:
    gymnasium.register(
        id=POINT_MASS_WALL_ID,
        entry_point="ooo_lightning.envs.point_mass_wall:PointMassWallEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )

__all__ = ["POINT_MASS_WALL_ID", "PointMassWallEnv"]
