"""Offline PointMaze data in the manner of D4RL's maze2d, optionally without the goal region.

A waypoint controller wanders the maze: it picks a random free cell as its target, follows
the BFS cell path there by steering with a PD law toward the centre of the next cell, and
picks a new random target on arrival.  Gaussian noise on the actions spreads the states.
The data is collected in segments of ``segment_steps`` steps, each starting from a random
free cell other than the goal's, on the same gymnasium-robotics ``PointMazeEnv`` as
``ooo/PointMaze*-v0``.

Rewards are relabelled for the fixed evaluation goal of the layout, and a transition that
reaches it is terminal (the evaluation env ends the episode there), so the data matches
what the online env would have produced.  With ``missing_goal_radius`` every transition
touching the disc of that radius around the goal is removed: the "maze with missing goal
data" setting of the OOO paper (arXiv 2310.08558), where offline RL alone cannot learn to
reach a goal it never saw.

Written to disk (HDF5, npz or Minari, with the coverage picture) by ``ooo-lightning-data
pointmaze`` (:mod:`ooo_lightning.datasets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ooo_lightning.output import save_figure
from ooo_lightning.envs.pointmaze import (
    GOAL_RADIUS,
    Cell,
    MazeLayout,
    bfs_distances,
    cell_to_xy,
    free_cells,
    get_layout,
    goal_xy,
    make_point_maze_env,
    start_xy,
    xy_to_cell,
)

#: Defaults of the waypoint controller, tuned so that it reaches a new target every ~120
#: steps in the medium maze and visits every free cell within a few thousand steps.
DEFAULT_KP: float = 10.0
DEFAULT_KD: float = 1.0
#: A target counts as reached within this distance of its cell centre.
DEFAULT_REACH_RADIUS: float = 0.3
#: Waypoints are drawn uniformly within this distance (per axis) of their cell centre.
DEFAULT_WAYPOINT_JITTER: float = 0.3
#: Radius of PointMaze's ball; a waypoint closer than this to a wall would be unreachable.
_BALL_RADIUS: float = 0.1


@dataclass(frozen=True)
class MazeDataStats:
    """What happened during generation."""

    generated_steps: int  # transitions simulated
    transitions: int  # transitions kept (generated minus dropped)
    segments: int  # env resets
    targets_reached: int  # waypoint-controller targets reached
    goal_terminals: int  # segments cut at the evaluation goal (counted before any removal)
    dropped: int  # transitions removed by missing_goal_radius
    cells_visited: int  # free cells containing at least one kept observation
    free_cells: int


def _next_hop_table(layout: MazeLayout) -> dict[tuple[Cell, Cell], Cell]:
    """``(target, cell) -> neighbour of cell one step closer to target`` for all free pairs.

    Precomputed once (at most a few thousand pairs) so the controller needs no search per step.
    """
    cells = free_cells(layout)
    table: dict[tuple[Cell, Cell], Cell] = {}
    for target in cells:
        dist = bfs_distances(layout, target)
        for cell in cells:
            if cell == target or cell not in dist:
                continue
            row, col = cell
            for neighbour in ((row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)):
                if dist.get(neighbour) == dist[cell] - 1:
                    table[(target, cell)] = neighbour
                    break
    return table


class WaypointController:
    """Noisy PD controller that follows BFS cell paths to random target cells.

    Each waypoint is the centre of the next cell on the path plus a uniform offset of up to
    ``waypoint_jitter`` per axis, drawn when that cell becomes the next one: without it the
    stiff PD law keeps the ball on the cell centre lines and the data would cover only
    thin lines of the corridors.
    """

    def __init__(
        self,
        layout: MazeLayout,
        rng: np.random.Generator,
        kp: float = DEFAULT_KP,
        kd: float = DEFAULT_KD,
        action_noise: float = 0.3,
        reach_radius: float = DEFAULT_REACH_RADIUS,
        waypoint_jitter: float = DEFAULT_WAYPOINT_JITTER,
    ) -> None:
        if not 0 <= waypoint_jitter <= 0.5 - _BALL_RADIUS:
            raise ValueError(
                f"waypoint_jitter must be in [0, {0.5 - _BALL_RADIUS}], got {waypoint_jitter}"
            )
        self.layout = layout
        self.rng = rng
        self.kp, self.kd, self.action_noise = kp, kd, action_noise
        self.reach_radius, self.waypoint_jitter = reach_radius, waypoint_jitter
        self.cells = free_cells(layout)
        self.centres = {cell: cell_to_xy(layout, cell) for cell in self.cells}
        self.next_hop = _next_hop_table(layout)
        self.cell: Cell = self.cells[0]
        self.target: Cell = self.cells[0]
        self.waypoint_cell: Cell | None = None
        self.waypoint = self.centres[self.cell]
        self.targets_reached = 0

    def _new_target(self) -> None:
        target = self.cell
        while target == self.cell:
            target = self.cells[int(self.rng.integers(len(self.cells)))]
        self.target = target

    def reset(self, cell: Cell) -> None:
        """Start from ``cell`` with a fresh random target."""
        self.cell = cell
        self.waypoint_cell = None
        self._new_target()

    def act(self, state: np.ndarray) -> np.ndarray:
        """Action in [-1, 1]^2 for state ``(x, y, vx, vy)``."""
        pos, vel = state[:2], state[2:4]
        cell = xy_to_cell(self.layout, pos)
        # The ball's centre never enters a wall cell, but keep the last known cell if
        # rounding at a boundary ever says otherwise.
        if cell in self.centres:
            self.cell = cell
        if (
            self.cell == self.target
            and self.waypoint_cell == self.target
            and np.linalg.norm(pos - self.waypoint) < self.reach_radius
        ):
            self.targets_reached += 1
            self._new_target()
        if self.cell == self.target:
            next_cell = self.target
        else:
            next_cell = self.next_hop[(self.target, self.cell)]
        if next_cell != self.waypoint_cell:
            # Two adjacent cells form a convex rectangle and the waypoint stays inside the
            # next cell, so the straight line to it never crosses a wall.
            jitter = self.rng.uniform(-self.waypoint_jitter, self.waypoint_jitter, size=2)
            self.waypoint_cell, self.waypoint = next_cell, self.centres[next_cell] + jitter
        action = np.clip(self.kp * (self.waypoint - pos) - self.kd * vel, -1.0, 1.0)
        action = action + self.action_noise * self.rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0)


def _drop_goal_region(
    data: dict[str, np.ndarray], goal: np.ndarray, radius: float
) -> tuple[dict[str, np.ndarray], int]:
    """Remove transitions touching the disc; the kept transition before each gap times out."""
    near = (np.linalg.norm(data["observations"][:, :2] - goal, axis=1) <= radius) | (
        np.linalg.norm(data["next_observations"][:, :2] - goal, axis=1) <= radius
    )
    keep = ~near
    # Row i + 1 is row i's successor unless row i ends its segment; if that successor is
    # dropped, row i must end a trajectory so no reader splices across the gap.
    ends = data["terminals"] | data["timeouts"]
    cut_before_gap = keep[:-1] & ~keep[1:] & ~ends[:-1]
    data["timeouts"][:-1] |= cut_before_gap
    return {key: arr[keep] for key, arr in data.items()}, int(near.sum())


def _as_float32(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        key: arr if arr.dtype == np.bool_ else arr.astype(np.float32) for key, arr in data.items()
    }


def generate_pointmaze_dataset(
    size: str = "medium",
    num_steps: int = 100_000,
    seed: int = 0,
    action_noise: float = 0.3,
    missing_goal_radius: float | None = None,
    segment_steps: int = 1000,
) -> tuple[dict[str, np.ndarray], MazeDataStats]:
    """Generate ``num_steps`` transitions of waypoint-controller data on layout ``size``.

    Returns the D4RL layout (``observations``/``next_observations`` (N, 4) float32 ``(x, y,
    vx, vy)``, ``actions`` (N, 2) float32, ``rewards`` (N,) float32, ``terminals`` and
    ``timeouts`` (N,) bool) and :class:`MazeDataStats`.  Every segment ends in exactly one
    of: a terminal (the next position is within 0.45 of ``goal_xy(size)``, reward 1.0) or a
    timeout (``segment_steps`` reached, or the step budget ran out).

    ``missing_goal_radius=R`` (R >= 0.45, so the whole goal disc goes) removes every
    transition whose observation or next observation lies within R of the goal; the kept
    transition before each gap gets ``timeouts=True``.  No reward remains then, and N is
    smaller than ``num_steps`` (see ``stats.dropped``).  Deterministic given ``seed``.
    """
    layout = get_layout(size)
    if num_steps < 1 or segment_steps < 1:
        raise ValueError(
            f"num_steps and segment_steps must be >= 1, got {num_steps}, {segment_steps}"
        )
    if action_noise < 0:
        raise ValueError(f"action_noise must be >= 0, got {action_noise}")
    if missing_goal_radius is not None and missing_goal_radius < GOAL_RADIUS:
        raise ValueError(
            f"missing_goal_radius={missing_goal_radius} leaves part of the goal disc "
            f"(radius {GOAL_RADIUS}) in the data; use at least {GOAL_RADIUS}."
        )
    goal = goal_xy(size)
    rng = np.random.default_rng(seed)
    controller = WaypointController(layout, rng, action_noise=action_noise)
    # continuing_task=True with reset_target=False: the raw env never terminates or moves its
    # goal, so segments run their full length; termination is decided below for our goal.
    env = make_point_maze_env(size, continuing_task=True, reset_target=False)

    observations = np.empty((num_steps, 4))
    next_observations = np.empty((num_steps, 4))
    actions = np.empty((num_steps, 2))
    terminals = np.zeros(num_steps, dtype=bool)
    timeouts = np.zeros(num_steps, dtype=bool)
    # Not the goal cell: the eval env never starts there, and a start within the noise of
    # the goal would only add one-step rewarding segments.
    start_cells = [cell for cell in controller.cells if cell != layout.goal_cell]
    step, segments = 0, 0
    try:
        while step < num_steps:
            start_cell = start_cells[int(rng.integers(len(start_cells)))]
            cells = {"reset_cell": np.array(start_cell), "goal_cell": np.array(layout.goal_cell)}
            # Seeded once; later resets continue the env's RNG stream.
            obs, _ = env.reset(seed=seed if segments == 0 else None, options=cells)
            segments += 1
            controller.reset(start_cell)
            state = obs["observation"]
            for _ in range(min(segment_steps, num_steps - step)):
                action = controller.act(state)
                next_state = env.step(action)[0]["observation"]
                observations[step], actions[step] = state, action
                next_observations[step] = next_state
                step += 1
                state = next_state
                if np.linalg.norm(next_state[:2] - goal) <= GOAL_RADIUS:
                    terminals[step - 1] = True
                    break
            else:
                timeouts[step - 1] = True
    finally:
        env.close()

    rewards = terminals.astype(np.float64)
    data = {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": next_observations,
    }
    dropped = 0
    if missing_goal_radius is not None:
        data, dropped = _drop_goal_region(data, goal, missing_goal_radius)
        # Every rewarding transition ends within 0.45 <= R of the goal, so none can survive.
        assert data["rewards"].sum() == 0, "goal rewards left after removing the goal region"
    data = _as_float32(data)
    visited = {xy_to_cell(layout, xy) for xy in data["observations"][:, :2].astype(np.float64)}
    stats = MazeDataStats(
        generated_steps=num_steps,
        transitions=len(data["observations"]),
        segments=segments,
        targets_reached=controller.targets_reached,
        goal_terminals=int(terminals.sum()),
        dropped=dropped,
        cells_visited=len(visited & set(controller.cells)),
        free_cells=len(controller.cells),
    )
    return data, stats


def pointmaze_walls(size: str) -> list[tuple[float, float, float, float]]:
    """Wall cells of layout ``size`` as ``(x_min, y_min, width, height)`` world rectangles."""
    layout = get_layout(size)
    rows, cols = layout.shape
    walls = []
    for row in range(rows):
        for col in range(cols):
            if layout.maze_map[row][col] == 1:
                x, y = cell_to_xy(layout, (row, col))
                walls.append((float(x) - 0.5, float(y) - 0.5, 1.0, 1.0))
    return walls


def draw_maze_states(
    fig, ax, positions: np.ndarray, size: str, title: str, missing_goal_radius: float | None = None, bins_per_cell: int = 10
) -> None:
    """Log-scale 2-D histogram of ``positions`` (N, 2) over the maze on ``ax``, with the
    walls (grey), the start (circle), the goal (star) and the removed region (dashed)."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Circle, Rectangle

    layout = get_layout(size)
    rows, cols = layout.shape
    x_range, y_range = (-cols / 2, cols / 2), (-rows / 2, rows / 2)
    if len(positions):
        *_, image = ax.hist2d(
            positions[:, 0],
            positions[:, 1],
            bins=(cols * bins_per_cell, rows * bins_per_cell),
            range=(x_range, y_range),
            norm=LogNorm(),
            cmin=1,
            cmap="viridis",
        )
        fig.colorbar(image, ax=ax, label="observations per bin")
    for x0, y0, width, height in pointmaze_walls(size):
        ax.add_patch(Rectangle((x0, y0), width, height, facecolor="0.55", edgecolor="0.4"))
    goal, start = goal_xy(size), start_xy(size)
    marker_style = {"markeredgecolor": "white", "linestyle": "none"}
    ax.plot(*start, marker="o", markersize=9, color="tab:blue", label="start", **marker_style)
    ax.plot(*goal, marker="*", markersize=15, color="tab:red", label="goal", **marker_style)
    if missing_goal_radius is not None:
        ax.add_patch(
            Circle(
                tuple(goal),
                missing_goal_radius,
                fill=False,
                linestyle="--",
                edgecolor="tab:red",
                linewidth=1.5,
                label=f"removed (r={missing_goal_radius:g})",
            )
        )
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    ax.set_title(title, fontsize=9)


def plot_coverage(
    dataset: Mapping[str, np.ndarray],
    size: str,
    path: str | Path,
    title: str | None = None,
    missing_goal_radius: float | None = None,
    bins_per_cell: int = 10,
) -> Path:
    """PNG of where the dataset's observations are (see :func:`draw_maze_states`)."""
    # A bare Figure renders through Agg without pyplot: no global backend switch and no
    # pyplot figure registry to leak (nothing to close).
    from matplotlib.figure import Figure

    rows, cols = get_layout(size).shape
    positions = np.asarray(dataset["observations"], dtype=np.float64)[:, :2]
    fig = Figure(figsize=(0.6 * cols + 1.5, 0.6 * rows + 0.5))
    ax = fig.subplots()
    title = title or f"PointMaze {size}: {len(positions)} transitions"
    draw_maze_states(fig, ax, positions, size, title, missing_goal_radius, bins_per_cell)
    return save_figure(fig, path, dpi=120)


def plot_visits(offline: np.ndarray, online: np.ndarray, path: str | Path, *, size: str, **_: object) -> Path:
    """Offline data and the explorer's online states side by side (a run's visited_states.png)."""
    from matplotlib.figure import Figure

    rows, cols = get_layout(size).shape
    fig = Figure(figsize=(2 * (0.6 * cols + 1.5), 0.6 * rows + 0.8))
    axes = fig.subplots(1, 2)
    for ax, states, name in ((axes[0], offline, "offline dataset"), (axes[1], online, "online (explorer)")):
        positions = np.asarray(states, dtype=np.float64)[:, :2]
        draw_maze_states(fig, ax, positions, size, f"{name}: {len(positions)} states")
    fig.suptitle("visited states, log scale")
    return save_figure(fig, path, dpi=120)


def generate_dataset(*, size: str, steps: int, seed: int, noise: float, missing_goal_radius: float | None,
                     **_: object) -> dict[str, np.ndarray]:
    """``generate_pointmaze_dataset`` in the form ``ooo_lightning.envs.task_tools`` registers."""
    return generate_pointmaze_dataset(size=size, num_steps=steps, seed=seed, action_noise=noise,
                                      missing_goal_radius=missing_goal_radius)[0]


def plot_dataset(data: Mapping[str, np.ndarray], path: str | Path, *, size: str, missing_goal_radius: float | None = None,
                 **_: object) -> Path:
    """The dataset command's coverage picture."""
    title = f"PointMaze {size}: {len(data['observations'])} transitions"
    if missing_goal_radius:
        title += f", none within {missing_goal_radius} of the goal"
    return plot_coverage(data, size, path, title=title, missing_goal_radius=missing_goal_radius)
