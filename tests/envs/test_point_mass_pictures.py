"""What the point-mass-wall pictures show, read back from the figure: the heat maps' counts
and the layout drawn over them."""

import numpy as np

from ooo_lightning.envs import point_mass_wall_layout
from ooo_lightning.envs.point_mass_pictures import plot_visits


def _cell(layout, xy, bins: int = 60) -> tuple[int, int]:
    """(row, column) of the image pixel that holds the point ``xy`` (origin at the bottom)."""
    (x0, x1), (y0, y1) = layout.x_bounds, layout.y_bounds
    return int((xy[1] - y0) / (y1 - y0) * bins), int((xy[0] - x0) / (x1 - x0) * bins)


def test_visited_states_map_counts_each_state_where_it_is(tmp_path, figures):
    layout = point_mass_wall_layout()
    (x0, x1), (y0, y1) = layout.x_bounds, layout.y_bounds
    here = (x0 + 0.21 * (x1 - x0), y0 + 0.81 * (y1 - y0))  # inside a pixel, not on its edge
    there = (x0 + 0.71 * (x1 - x0), y0 + 0.31 * (y1 - y0))
    offline = [here, here, there]
    online = [there]
    path = plot_visits(np.array(offline), np.array(online), tmp_path / "visits.png", env_kwargs={})
    assert path.is_file()
    (fig,) = figures
    offline_ax, online_ax = fig.axes[:2]
    offline_counts = np.expm1(np.asarray(offline_ax.images[0].get_array()))
    online_counts = np.expm1(np.asarray(online_ax.images[0].get_array()))
    np.testing.assert_allclose(offline_counts.sum(), 3.0)
    np.testing.assert_allclose(offline_counts[_cell(layout, here)], 2.0)
    np.testing.assert_allclose(offline_counts[_cell(layout, there)], 1.0)
    np.testing.assert_allclose(online_counts.sum(), 1.0)
    np.testing.assert_allclose(online_counts[_cell(layout, there)], 1.0)
    assert offline_ax.get_title() == "offline dataset: 3 states" and online_ax.get_title() == "online (explorer): 1 states"
    # The layout over the counts: each wall as a line, the goal as a circle of its radius.
    walls = [line for line in offline_ax.lines if line.get_color() == "white"]
    assert [tuple(zip(line.get_xdata(), line.get_ydata())) for line in walls] == [tuple(map(tuple, w)) for w in layout.walls]
    (goal,) = offline_ax.patches
    assert tuple(goal.center) == tuple(layout.goal) and goal.radius == layout.goal_radius
