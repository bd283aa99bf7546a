"""PointMaze with a fixed start, a fixed goal and a sparse goal reward.

Built on gymnasium-robotics' ``PointMazeEnv`` (a force-actuated ball in D4RL's mazes) with
its standard MEDIUM_MAZE and LARGE_MAZE maps.  Differences from ``PointMaze_*-v3``:

* the start cell and goal cell are fixed per layout (``MAZES``), far apart;
* the goal sits exactly at its cell centre: gymnasium-robotics adds uniform noise of
  +-0.25 to the goal even when ``goal_cell`` is given, which we undo after each reset.
  The start keeps that noise, so resets differ by seed;
* the observation is the flat float32 ``(x, y, vx, vy)`` (the goal is fixed, so it is not
  observed);
* reward 1.0 and termination once the ball is within ``GOAL_RADIUS`` (0.45, the library's
  sparse rule) of the goal, with ``info["success"]`` True on that step.

Importing this module imports gymnasium-robotics and mujoco, so ``ooo_lightning.envs``
registers the ids with a string entry point and never imports it eagerly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium_robotics.envs.maze.maps import LARGE_MAZE, MEDIUM_MAZE
from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

Cell = tuple[int, int]

#: gymnasium-robotics' sparse reward / termination distance (maze_v4.MazeEnv, hard-coded there).
GOAL_RADIUS: float = 0.45
#: PointMazeEnv always builds its maze with maze_size_scaling=1: a cell is 1 x 1.
CELL_SIZE: float = 1.0
WALL: int = 1


@dataclass(frozen=True)
class MazeLayout:
    """A maze map (1 = wall, 0 = free; row 0 is the top) with its fixed start and goal."""

    maze_map: tuple[tuple[int, ...], ...]
    start_cell: Cell
    goal_cell: Cell
    max_episode_steps: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the map."""
        return len(self.maze_map), len(self.maze_map[0])

    def is_free(self, cell: Cell) -> bool:
        """Whether ``cell`` is inside the map and not a wall."""
        rows, cols = self.shape
        row, col = cell
        return 0 <= row < rows and 0 <= col < cols and self.maze_map[row][col] != WALL


def _frozen_map(maze_map: list[list[int | str]]) -> tuple[tuple[int, ...], ...]:
    # The library maps are plain 0/1 here; anything else (r/g/c markers) would mean the map
    # carries its own start/goal semantics, which MazeLayout replaces.
    if any(v not in (0, 1) for row in maze_map for v in row):
        raise ValueError("expected a 0/1 maze map")
    return tuple(tuple(int(v) for v in row) for row in maze_map)


#: Start top-left, goal bottom-right: shortest cell paths of 10 (medium) and 15 (large)
#: moves, winding around the inner walls (the goal is the farthest free cell from the
#: start in the large maze and one short of it in the medium one).
MAZES: dict[str, MazeLayout] = {
    "medium": MazeLayout(
        _frozen_map(MEDIUM_MAZE), start_cell=(1, 1), goal_cell=(6, 6), max_episode_steps=600
    ),
    "large": MazeLayout(
        _frozen_map(LARGE_MAZE), start_cell=(1, 1), goal_cell=(7, 10), max_episode_steps=800
    ),
}


def get_layout(size: str) -> MazeLayout:
    """``MAZES[size]`` with a helpful error for unknown sizes."""
    try:
        return MAZES[size]
    except KeyError:
        raise ValueError(f"unknown maze size {size!r}; choose one of {sorted(MAZES)}") from None


def cell_to_xy(layout: MazeLayout, cell: Cell) -> np.ndarray:
    """World (x, y) of a cell centre, as ``Maze.cell_rowcol_to_xy`` computes it.

    The maze is centred on the origin, x grows with the column and y shrinks with the row.
    """
    rows, cols = layout.shape
    x = (cell[1] + 0.5) * CELL_SIZE - cols / 2 * CELL_SIZE
    y = rows / 2 * CELL_SIZE - (cell[0] + 0.5) * CELL_SIZE
    return np.array([x, y], dtype=np.float64)


def xy_to_cell(layout: MazeLayout, xy: Any) -> Cell:
    """The (row, column) cell containing world position ``xy``."""
    rows, cols = layout.shape
    row = int(np.floor((rows / 2 * CELL_SIZE - xy[1]) / CELL_SIZE))
    col = int(np.floor((xy[0] + cols / 2 * CELL_SIZE) / CELL_SIZE))
    return row, col


def goal_xy(size: str) -> np.ndarray:
    """World (x, y) of the fixed goal of layout ``size``."""
    layout = get_layout(size)
    return cell_to_xy(layout, layout.goal_cell)


def start_xy(size: str) -> np.ndarray:
    """World (x, y) of the start cell centre of layout ``size`` (resets add +-0.25 noise)."""
    layout = get_layout(size)
    return cell_to_xy(layout, layout.start_cell)


def free_cells(layout: MazeLayout) -> list[Cell]:
    """All non-wall cells, row by row."""
    rows, cols = layout.shape
    return [(r, c) for r in range(rows) for c in range(cols) if layout.maze_map[r][c] != WALL]


def bfs_distances(layout: MazeLayout, source: Cell) -> dict[Cell, int]:
    """Shortest path length (4-connected moves) from ``source`` to every reachable free cell."""
    if not layout.is_free(source):
        raise ValueError(f"{source} is not a free cell")
    dist = {source: 0}
    queue = deque([source])
    while queue:
        row, col = queue.popleft()
        for neighbour in ((row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)):
            if layout.is_free(neighbour) and neighbour not in dist:
                dist[neighbour] = dist[(row, col)] + 1
                queue.append(neighbour)
    return dist


def make_point_maze_env(size: str = "medium", **kwargs: Any) -> PointMazeEnv:
    """The raw gymnasium-robotics ``PointMazeEnv`` on layout ``size`` (no wrappers).

    ``kwargs`` go to ``PointMazeEnv`` (``continuing_task``, ``reward_type``, ``render_mode``,
    ...).  Shared by the evaluation env and the dataset generator so the physics match.
    """
    layout = get_layout(size)
    return PointMazeEnv(maze_map=[list(row) for row in layout.maze_map], **kwargs)


class FixedGoalPointMaze(gymnasium.Wrapper):
    """Fixed start/goal, flat float32 ``(x, y, vx, vy)`` observations, sparse goal reward.

    Wraps an episodic (``continuing_task=False``), sparse-reward ``PointMazeEnv``; see the
    module docstring.  ``reset(options={"reset_cell": (row, col)})`` starts elsewhere
    (tests, analyses); the goal cannot be changed.
    """

    def __init__(self, env: PointMazeEnv, layout: MazeLayout) -> None:
        super().__init__(env)
        maze = env.unwrapped
        if maze.continuing_task or maze.reward_type != "sparse":
            raise ValueError(
                "FixedGoalPointMaze needs continuing_task=False and reward_type='sparse'"
            )
        self.layout = layout
        self.goal = cell_to_xy(layout, layout.goal_cell)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)

    def _info(self, obs: np.ndarray) -> dict[str, Any]:
        distance = float(np.linalg.norm(obs[:2] - self.goal))
        return {"success": distance <= GOAL_RADIUS, "goal_distance": distance}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        options = dict(options or {})
        reset_cell = tuple(options.pop("reset_cell", self.layout.start_cell))
        if options:
            raise ValueError(f"unsupported reset options {sorted(options)}; only 'reset_cell'")
        if not self.layout.is_free(reset_cell):
            raise ValueError(f"reset_cell {reset_cell} is not a free cell")
        cells = {"reset_cell": np.array(reset_cell), "goal_cell": np.array(self.layout.goal_cell)}
        obs, _ = self.env.reset(seed=seed, options=cells)
        # The library noised the goal too (its RNG draws stay, so seeds keep their meaning);
        # pin it to the cell centre, also for its reward/termination and the rendered site.
        maze = self.env.unwrapped
        maze.goal = self.goal.copy()
        maze.update_target_site_pos()
        state = obs["observation"]
        return state.astype(np.float32), self._info(state)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, _ = self.env.step(action)
        state = obs["observation"]
        info = self._info(state)
        return state.astype(np.float32), float(reward), bool(terminated), bool(truncated), info


def make_point_maze(size: str = "medium", **kwargs: Any) -> FixedGoalPointMaze:
    """Entry point of ``ooo/PointMaze{Medium,Large}-v0``; ``kwargs`` go to ``PointMazeEnv``."""
    env = make_point_maze_env(size, continuing_task=False, reward_type="sparse", **kwargs)
    return FixedGoalPointMaze(env, get_layout(size))
