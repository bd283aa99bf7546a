"""Pictures of point-mass-wall states: the offline data's coverage and a run's visited states,
with the layout's walls, start and goal drawn over log(1 + count) heat maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ooo_lightning.envs.point_mass_wall import WallLayout
from ooo_lightning.output import save_figure


def _layout(env_kwargs: dict[str, Any] | None) -> WallLayout:
    from ooo_lightning.envs import point_mass_wall_layout

    return point_mass_wall_layout(env_kwargs)


def draw_states(ax, states: np.ndarray, title: str, bins: int, layout: WallLayout) -> None:
    """Heat map of ``states`` over the arena with the walls, start and goal of ``layout``."""
    from matplotlib.patches import Circle

    extent = (*layout.x_bounds, *layout.y_bounds)
    hist, _, _ = np.histogram2d(states[:, 0], states[:, 1], bins=bins, range=[list(layout.x_bounds), list(layout.y_bounds)])
    ax.imshow(np.log1p(hist.T), origin="lower", extent=extent, cmap="viridis", aspect="auto")
    for i, ((x0, y0), (x1, y1)) in enumerate(layout.walls):
        ax.plot([x0, x1], [y0, y1], color="white", lw=3, label="wall" if i == 0 else None)
    ax.add_patch(Circle(layout.goal, layout.goal_radius, color="red", fill=False, lw=2, label="goal"))
    ax.plot(*layout.start, marker="*", color="orange", ms=12, ls="", label="start")
    ax.set_title(f"{title}: {len(states)} states")
    ax.set_xlabel("x")
    ax.set_xlim(layout.x_bounds)
    ax.set_ylim(layout.y_bounds)


def plot_visits(offline: np.ndarray, online: np.ndarray, path: str | Path, *, env_kwargs: dict | None = None,
                bins: int = 60, **_: Any) -> Path:
    """The observations of the offline data and of the explorer's online steps, side by side."""
    from matplotlib.figure import Figure

    layout = _layout(env_kwargs)
    fig = Figure(figsize=(11, 5))
    axes = fig.subplots(1, 2, sharey=True)
    draw_states(axes[0], np.asarray(offline), "offline dataset", bins, layout)
    draw_states(axes[1], np.asarray(online), "online (explorer)", bins, layout)
    axes[0].set_ylabel("y")
    axes[1].legend(loc="upper right", fontsize=8)
    fig.suptitle("visited states, log(1 + count)")
    return save_figure(fig, path, dpi=110)


def plot_dataset(data: dict[str, np.ndarray], path: str | Path, *, env_kwargs: dict | None = None, bins: int = 60,
                 **_: Any) -> Path:
    """Where a point-mass-wall dataset's states lie (the dataset command's picture)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    draw_states(ax, np.asarray(data["observations"]), "offline dataset", bins, _layout(env_kwargs))
    ax.set_ylabel("y")
    ax.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path, dpi=110)
