"""AntMaze with D4RL's fixed start and evaluation goal, a flat observation and a sparse goal reward.

Built on gymnasium-robotics' ``AntMazeEnv`` of ``ant_maze_v4`` (the Ant-v4 body, 27-dim body
observation): the version Minari's ``D4RL/antmaze/*-v1`` datasets were collected with. The
maze maps are the library's ``U_MAZE``, ``MEDIUM_MAZE`` and ``LARGE_MAZE``, cell for cell
D4RL's ``U_MAZE``, ``BIG_MAZE`` and ``HARDEST_MAZE``, 4 x 4 cells.

* Observation: flat float32 ``(x, y, body)``, 29 = 2 + 27, which is D4RL's antmaze layout
  ``qpos[:15] + qvel[:14]`` (the library's ``achieved_goal`` is the torso's ``qpos[:2]`` and its
  ``observation`` ``qpos[2:15] + qvel[:14]``). The goal is fixed, so it is not observed (as in
  D4RL, whose evaluation environment drops it too).
* Reward 1.0 and termination once the torso is within ``goal_radius`` (0.5, D4RL's; the
  library uses 0.45) of the goal, else 0.0; ``info["success"]`` is True on that step. This is
  D4RL's evaluation environment (``eval=True``); its datasets were relabelled with the same rule
  (``scripts/generation/relabel_antmaze_rewards.py``), and :class:`AntMazeTask` relabels any
  dataset with it, so offline and online rewards are one function of the next position.
* The goal sits at its cell's centre (the library adds +-1 of noise, D4RL +0.75 on average); the
  start keeps the library's +-1 noise per axis.

Two coordinate frames (``frame``):

* ``minari`` (default): the library's own, maze centred on (0, 0), rows going down in y. Minari's
  datasets are in it. The medium and large mazes are D4RL's mirrored in y; the umaze start and
  goal are those of Minari's umaze data (its ``eval_env_spec`` map is the maze mirrored, Minari
  issue #304), which reproduce D4RL's route.
* ``d4rl``: D4RL's, for D4RL HDF5 files: the maze is built with its rows reversed, so it is
  D4RL's maze, not its mirror image, and positions are shifted so the start cell's centre is
  (0, 0) as in D4RL (goals: umaze (0, 8), medium (20, 20), large (32, 24)).

What no frame reconciles: D4RL's ant is another model (gear 30 at a 0.02 s timestep, 10 Hz
control) than gymnasium's (gear 150 at 0.01 s, 20 Hz), so a D4RL file's actions move the
gymnasium ant differently, and its 700 / 1000-step limits cover half the simulated time.

Importing this module imports gymnasium-robotics and mujoco; ``ooo_lightning.envs`` registers
the ids with string entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium_robotics.envs.maze.ant_maze_v4 import AntMazeEnv
from gymnasium_robotics.envs.maze.maps import LARGE_MAZE, MEDIUM_MAZE, U_MAZE

Cell = tuple[int, int]

FRAMES: tuple[str, ...] = ("minari", "d4rl")
#: D4RL's sparse reward and evaluation termination distance (goal_reaching_env.py).
D4RL_GOAL_RADIUS: float = 0.5
#: AntMazeEnv builds its maze with maze_size_scaling=4.
CELL_SIZE: float = 4.0
#: x, y, then the 27 body entries of the library's ``observation``.
OBSERVATION_DIM: int = 29
#: A dataset with more of its positions in walls or outside the maze is in the other frame.
OUTSIDE_MAZE_TOLERANCE: float = 0.05


@dataclass(frozen=True)
class MazeSpec:
    """One of D4RL's antmaze mazes, rows as D4RL and gymnasium-robotics list them."""

    maze_map: tuple[tuple[int, ...], ...]
    #: D4RL's start (``r``) and evaluation goal (``g``) cells in its ``*_TEST`` maps.
    d4rl_start: Cell
    d4rl_goal: Cell
    #: The same in gymnasium-robotics' frame, as Minari's datasets use them.
    minari_start: Cell
    minari_goal: Cell
    max_episode_steps: int


def _frozen(maze_map: list[list[Any]]) -> tuple[tuple[int, ...], ...]:
    if any(v not in (0, 1) for row in maze_map for v in row):
        raise ValueError("expected a 0/1 maze map")
    return tuple(tuple(int(v) for v in row) for row in maze_map)


MAZES: dict[str, MazeSpec] = {
    # Minari's umaze data goes from (3, 1) to (1, 1): D4RL's route (+x, +y, -x from the start).
    "umaze": MazeSpec(_frozen(U_MAZE), (1, 1), (3, 1), (3, 1), (1, 1), 700),
    "medium": MazeSpec(_frozen(MEDIUM_MAZE), (1, 1), (6, 6), (1, 1), (6, 6), 1000),
    "large": MazeSpec(_frozen(LARGE_MAZE), (1, 1), (7, 9), (1, 1), (7, 9), 1000),
}


def _choice(value: str, choices: Mapping | tuple, what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown antmaze {what} {value!r}; choose one of {sorted(choices)}")
    return value


@dataclass(frozen=True)
class AntMazeTask:
    """The task of ``ooo/AntMaze{UMaze,Medium,Large}-v0`` in one frame: the maze as built, its
    start, goal, observation and reward. Shared by the environment and the dataset reader
    (``dataset_layout``), so a dataset is read into the observations and rewards the
    environment gives."""

    size: str = "umaze"
    frame: str = "minari"
    goal_radius: float = D4RL_GOAL_RADIUS

    def __post_init__(self) -> None:
        _choice(self.size, MAZES, "size")
        _choice(self.frame, FRAMES, "frame")
        if not self.goal_radius > 0:
            raise ValueError(f"goal_radius must be > 0, got {self.goal_radius}")

    @property
    def spec(self) -> MazeSpec:
        return MAZES[self.size]

    @property
    def name(self) -> str:
        return f"antmaze {self.size} ({self.frame} frame)"

    @cached_property
    def maze_map(self) -> tuple[tuple[int, ...], ...]:
        """The map given to gymnasium-robotics: D4RL's rows reversed in the d4rl frame, since the
        library puts row 0 at the top (largest y) and D4RL at y = 0."""
        return self.spec.maze_map[::-1] if self.frame == "d4rl" else self.spec.maze_map

    def _built_cell(self, d4rl_cell: Cell) -> Cell:
        return (len(self.maze_map) - 1 - d4rl_cell[0], d4rl_cell[1])

    @cached_property
    def start_cell(self) -> Cell:
        """(row, column) of the start in ``maze_map``."""
        return self._built_cell(self.spec.d4rl_start) if self.frame == "d4rl" else self.spec.minari_start

    @cached_property
    def goal_cell(self) -> Cell:
        """(row, column) of the goal in ``maze_map``."""
        return self._built_cell(self.spec.d4rl_goal) if self.frame == "d4rl" else self.spec.minari_goal

    def cell_world_xy(self, cell: Cell) -> np.ndarray:
        """Simulator (x, y) of a cell centre (``Maze.cell_rowcol_to_xy``)."""
        rows, cols = len(self.maze_map), len(self.maze_map[0])
        return np.array([(cell[1] + 0.5 - cols / 2) * CELL_SIZE, (rows / 2 - cell[0] - 0.5) * CELL_SIZE])

    @cached_property
    def origin(self) -> np.ndarray:
        """Simulator (x, y) of the observation's (0, 0): the start cell's centre in the d4rl frame."""
        return self.cell_world_xy(self.start_cell) if self.frame == "d4rl" else np.zeros(2)

    @cached_property
    def goal_xy(self) -> np.ndarray:
        """The goal in observation coordinates."""
        return self.cell_world_xy(self.goal_cell) - self.origin

    # --- observation and reward, shared by the environment and the reader ---------------
    def flat_observation(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        """The library's dict observation (one step or stacked steps) as ``(x, y, body)``."""
        flat = np.concatenate([observation["achieved_goal"], observation["observation"]], axis=-1).astype(np.float64)
        flat[..., :2] -= self.origin
        return flat

    def success(self, observation: np.ndarray) -> np.ndarray:
        """Whether flat observations are within ``goal_radius`` of the goal."""
        return np.linalg.norm(np.asarray(observation)[..., :2] - self.goal_xy, axis=-1) <= self.goal_radius

    def outside_maze_fraction(self, observation: np.ndarray) -> float:
        """Share of flat observations whose position lies in a wall or outside the maze."""
        world = np.asarray(observation, dtype=np.float64)[..., :2].reshape(-1, 2) + self.origin
        rows, cols = len(self.maze_map), len(self.maze_map[0])
        row = np.floor(rows / 2 - world[:, 1] / CELL_SIZE).astype(int)
        col = np.floor(world[:, 0] / CELL_SIZE + cols / 2).astype(int)
        inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        walls = np.asarray(self.maze_map)
        free = np.zeros_like(inside)
        free[inside] = walls[row[inside], col[inside]] == 0
        return float(1.0 - free.mean()) if len(free) else 0.0


class FixedGoalAntMaze(gymnasium.Wrapper):
    """D4RL's antmaze evaluation task on gymnasium-robotics' AntMazeEnv (see the module doc).

    Wraps a continuing-task ``AntMazeEnv`` (it never terminates nor moves the goal itself);
    this wrapper ends the episode at the goal.
    """

    def __init__(self, env: AntMazeEnv, task: AntMazeTask) -> None:
        super().__init__(env)
        inner = env.unwrapped
        if not inner.continuing_task or inner.reset_target:
            raise ValueError("FixedGoalAntMaze needs continuing_task=True and reset_target=False")
        self.task = task
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBSERVATION_DIM,), dtype=np.float32)

    def _observe(self, observation: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
        flat = self.task.flat_observation(observation)
        distance = float(np.linalg.norm(flat[:2] - self.task.goal_xy))
        return flat, {"success": bool(self.task.success(flat)), "goal_distance": distance}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if options:
            raise ValueError(f"unsupported reset options {sorted(options)}: the start and goal are fixed")
        cells = {"reset_cell": np.array(self.task.start_cell), "goal_cell": np.array(self.task.goal_cell)}
        observation, _ = self.env.reset(seed=seed, options=cells)
        # The library noised the goal (its draws stay, so seeds keep their meaning): pin it to
        # the cell centre, for the rendered target too.
        inner = self.env.unwrapped
        inner.goal = self.task.cell_world_xy(self.task.goal_cell)
        inner.update_target_site_pos()
        observation["desired_goal"] = inner.goal.copy()
        flat, info = self._observe(observation)
        return flat.astype(np.float32), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        observation, _, _, truncated, _ = self.env.step(action)
        flat, info = self._observe(observation)
        success = info["success"]
        return flat.astype(np.float32), float(success), success, bool(truncated), info


def make_ant_maze(size: str = "umaze", frame: str = "minari", goal_radius: float = D4RL_GOAL_RADIUS,
                  **kwargs: Any) -> FixedGoalAntMaze:
    """Entry point of ``ooo/AntMaze{UMaze,Medium,Large}-v0``; ``kwargs`` go to ``AntMazeEnv``."""
    task = AntMazeTask(size, frame, goal_radius)
    env = AntMazeEnv(maze_map=[list(row) for row in task.maze_map], continuing_task=True, reset_target=False, **kwargs)
    return FixedGoalAntMaze(env, task)


class AntMazeDatasetLayout:
    """How an antmaze dataset becomes this task's transitions (``ooo_lightning.data.task_layout``):
    Minari's dict observations flattened as the environment does, rewards and terminals
    recomputed with the fixed goal (Minari's diverse datasets reward each episode's own goal)."""

    info_keys: tuple[str, ...] = ()

    def __init__(self, task: AntMazeTask) -> None:
        self.task = task
        self.name = task.name

    def observations(self, observations: Any) -> np.ndarray:
        if not isinstance(observations, Mapping):
            return np.asarray(observations)  # already flat: a D4RL file, in the frame it was made in
        if self.task.frame == "d4rl":
            raise ValueError(
                "dict observations are Minari's, in gymnasium-robotics' frame (its medium and large mazes are D4RL's "
                "mirrored): use env_kwargs frame: minari (the default) with Minari datasets"
            )
        return self.task.flat_observation(observations)

    def task_rewards(self, data: Mapping[str, np.ndarray], infos: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outside = self.task.outside_maze_fraction(data["observations"])
        if outside > OUTSIDE_MAZE_TOLERANCE:
            other = "d4rl" if self.task.frame == "minari" else "minari"
            raise ValueError(
                f"{100 * outside:.0f}% of its positions lie in walls or outside the {self.name} maze; it looks like "
                f"{other}-frame data: set env_kwargs frame: {other}"
            )
        success = self.task.success(data["next_observations"])
        return {"rewards": success.astype(np.float32), "terminals": success}


def dataset_layout(*, env_kwargs: Mapping[str, Any], size: str) -> AntMazeDatasetLayout:
    """The reader's layout for ``ooo/AntMaze*-v0`` with these ``env_kwargs`` (its frame and radius)."""
    return AntMazeDatasetLayout(AntMazeTask(size, env_kwargs.get("frame", "minari"),
                                            env_kwargs.get("goal_radius", D4RL_GOAL_RADIUS)))
