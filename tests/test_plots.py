"""What the run's pictures show, read back from the figures: the heat maps' counts, the curves'
points, the layout drawn over them."""

import numpy as np
import pytest

from ooo_lightning import plots
from ooo_lightning.envs import point_mass_wall_layout


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plotting functions write, kept for inspection (still written)."""
    drawn = []
    write = plots.save_figure

    def keep(fig, path, **kwargs):
        drawn.append(fig)
        return write(fig, path, **kwargs)

    monkeypatch.setattr(plots, "save_figure", keep)
    return drawn


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
    path = plots.plot_point_mass_visits(np.array(offline), np.array(online), tmp_path / "visits.png", layout)
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


def test_exploiter_curve_plots_each_T_in_order_beside_the_explorer(tmp_path, figures):
    def entry(steps, success, ret):
        return {"env_steps": steps, "success_rate": success, "return_mean": ret}

    results = {"explorer": entry(100, 0.2, -50.0), "exploiter_T50": entry(50, 0.4, -30.0),
               "exploiter_T0": entry(0, 0.0, -150.0), "exploiter": entry(100, 1.0, -10.0)}
    plots.plot_exploiter_against_online_steps(results, tmp_path / "curve.png")
    (fig,) = figures
    success_ax, return_ax = fig.axes
    curve, explorer = success_ax.lines
    assert list(curve.get_xdata()) == [0, 50, 100] and list(curve.get_ydata()) == [0.0, 0.4, 1.0]
    assert list(explorer.get_ydata()) == [0.2, 0.2]
    assert list(return_ax.lines[0].get_ydata()) == [-150.0, -30.0, -10.0]
    assert list(return_ax.lines[1].get_ydata()) == [-50.0, -50.0]
    assert plots.plot_exploiter_against_online_steps({"explorer": results["explorer"]}, tmp_path / "none.png") is None


def test_learning_curves_plot_the_logged_evaluations_per_phase(tmp_path, figures):
    """From metrics.csv as Lightning's CSV logger writes it: evaluation rows and loss rows
    interleaved, blanks where a row does not log a value."""
    rows = {
        "explorer": "eval/updates,eval/success_rate,eval/return_mean,loss/actor\n"
                    "8,0.0,-150,\n,,,0.5\n16,0.5,-80,\n",
        "exploiter": "eval/updates,eval/success_rate,eval/return_mean\n10,0.25,-100\n20,1.0,-20\n",
    }
    for phase, text in rows.items():
        (tmp_path / phase).mkdir()
        (tmp_path / phase / "metrics.csv").write_text(text)
    assert plots.plot_learning_curves(tmp_path) == tmp_path / "plots" / "learning_curves.png"
    (fig,) = figures
    success_ax, return_ax = fig.axes[:2]
    explorer, exploiter = success_ax.lines
    assert (explorer.get_label(), exploiter.get_label()) == ("explorer", "exploiter")  # explorer first
    assert list(explorer.get_xdata()) == [8, 16] and list(explorer.get_ydata()) == [0.0, 0.5]
    assert list(exploiter.get_xdata()) == [10, 20] and list(exploiter.get_ydata()) == [0.25, 1.0]
    assert list(return_ax.lines[0].get_ydata()) == [-150.0, -80.0]
