"""Tests for the PointMaze offline dataset generator and its coverage plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ooo_lightning.envs.maze_data import (
    MazeDataStats,
    _drop_goal_region,
    generate_pointmaze_dataset,
    plot_coverage,
    pointmaze_walls,
)
from ooo_lightning.envs.pointmaze import GOAL_RADIUS, MAZES, free_cells, goal_xy, xy_to_cell

Data = tuple[dict[str, np.ndarray], MazeDataStats]

STEPS = 20_000
SEGMENT = 500
RADIUS = 1.0
KEYS = {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"}


@pytest.fixture(scope="module")
def full() -> Data:
    return generate_pointmaze_dataset("medium", STEPS, seed=0, segment_steps=SEGMENT)


@pytest.fixture(scope="module")
def missing() -> Data:
    return generate_pointmaze_dataset(
        "medium", STEPS, seed=0, segment_steps=SEGMENT, missing_goal_radius=RADIUS
    )


def _ends(data: dict[str, np.ndarray]) -> np.ndarray:
    return data["terminals"] | data["timeouts"]


def _assert_no_trajectory_crosses_a_gap(data: dict[str, np.ndarray]) -> None:
    """Inside a trajectory, each transition's next observation is the following observation."""
    inside = ~_ends(data)[:-1]
    np.testing.assert_array_equal(
        data["next_observations"][:-1][inside], data["observations"][1:][inside]
    )
    assert _ends(data)[-1]


def test_keys_shapes_dtypes(full: Data) -> None:
    data, stats = full
    assert set(data) == KEYS
    n = STEPS
    assert stats.generated_steps == stats.transitions == n and stats.dropped == 0
    for key, width in (("observations", 4), ("next_observations", 4), ("actions", 2)):
        assert data[key].shape == (n, width) and data[key].dtype == np.float32
    assert data["rewards"].shape == (n,) and data["rewards"].dtype == np.float32
    for key in ("terminals", "timeouts"):
        assert data[key].shape == (n,) and data[key].dtype == np.bool_
    assert np.all(np.abs(data["actions"]) <= 1.0)


def test_segments_are_consistent(full: Data) -> None:
    data, stats = full
    _assert_no_trajectory_crosses_a_gap(data)
    assert not np.any(data["terminals"] & data["timeouts"])  # each segment ends one way
    ends = np.flatnonzero(_ends(data))
    assert len(ends) == stats.segments
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert lengths.max() <= SEGMENT
    # Segments cut by the step budget (not the goal) run their full length.
    assert np.all(lengths[data["timeouts"][ends]][:-1] == SEGMENT)


def test_rewards_are_relabelled_for_the_fixed_goal(full: Data) -> None:
    data, stats = full
    distance = np.linalg.norm(data["next_observations"][:, :2] - goal_xy("medium"), axis=1)
    rewarded = data["rewards"] == 1.0
    assert set(np.unique(data["rewards"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(rewarded, data["terminals"])
    assert rewarded.sum() == stats.goal_terminals > 0  # 20k steps do reach the goal
    assert np.all(distance[rewarded] <= GOAL_RADIUS + 1e-5)
    assert np.all(distance[~rewarded] > GOAL_RADIUS - 1e-5)


def test_controller_covers_the_maze(full: Data) -> None:
    data, stats = full
    layout = MAZES["medium"]
    cells = free_cells(layout)
    counts: dict[tuple[int, int], int] = {}
    for xy in data["observations"][:, :2].astype(np.float64):
        cell = xy_to_cell(layout, xy)
        counts[cell] = counts.get(cell, 0) + 1
    assert set(counts) <= set(cells)  # never inside a wall
    well_visited = [cell for cell in cells if counts.get(cell, 0) >= 20]
    assert len(well_visited) >= 0.9 * len(cells)
    assert stats.cells_visited >= 0.9 * stats.free_cells
    assert stats.targets_reached >= 50  # it really travels, not just jitters in place


def test_generation_is_deterministic() -> None:
    a, _ = generate_pointmaze_dataset("large", 1_000, seed=5, segment_steps=300)
    b, _ = generate_pointmaze_dataset("large", 1_000, seed=5, segment_steps=300)
    c, _ = generate_pointmaze_dataset("large", 1_000, seed=6, segment_steps=300)
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["observations"], c["observations"])


def test_missing_goal_region(full: Data, missing: Data) -> None:
    data, stats = missing
    goal = goal_xy("medium")
    assert stats.dropped > 0
    assert stats.transitions == STEPS - stats.dropped == len(data["observations"])
    for key in ("observations", "next_observations"):
        assert np.linalg.norm(data[key][:, :2] - goal, axis=1).min() > RADIUS - 1e-5
    assert data["rewards"].sum() == 0 and not data["terminals"].any()
    _assert_no_trajectory_crosses_a_gap(data)
    # Same seed: the kept rows are the full data's rows away from the goal.
    full_data, _ = full
    away = np.linalg.norm(full_data["observations"][:, :2] - goal, axis=1) > RADIUS
    away &= np.linalg.norm(full_data["next_observations"][:, :2] - goal, axis=1) > RADIUS
    np.testing.assert_array_equal(data["observations"], full_data["observations"][away])
    assert data["timeouts"].sum() > full_data["timeouts"].sum()  # gaps added timeouts


def test_drop_marks_the_transition_before_each_gap() -> None:
    goal = np.zeros(2)
    xs = np.array([5.0, 4.0, 0.5, 0.4, 3.0, 4.0, 5.0])  # rows 1-3 touch the disc of radius 1
    obs = np.stack([xs, np.zeros(7), np.zeros(7), np.zeros(7)], axis=1)
    next_obs = np.roll(obs, -1, axis=0)
    data = {
        "observations": obs,
        "next_observations": next_obs,
        "actions": np.zeros((7, 2)),
        "rewards": np.zeros(7),
        "terminals": np.zeros(7, dtype=bool),
        "timeouts": np.array([False] * 6 + [True]),
    }
    kept, dropped = _drop_goal_region(data, goal, 1.0)
    assert dropped == 3
    np.testing.assert_array_equal(kept["observations"][:, 0], [5.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(kept["timeouts"], [True, False, False, True])


def test_radius_must_cover_the_goal_disc() -> None:
    with pytest.raises(ValueError, match="missing_goal_radius"):
        generate_pointmaze_dataset("medium", 10, missing_goal_radius=0.3)
    with pytest.raises(ValueError, match="unknown maze size"):
        generate_pointmaze_dataset("huge", 10)


def test_walls_match_the_map() -> None:
    for size, layout in MAZES.items():
        walls = pointmaze_walls(size)
        assert len(walls) == sum(v == 1 for row in layout.maze_map for v in row)
        rows, cols = layout.shape
        assert min(w[0] for w in walls) == -cols / 2 and max(w[1] + w[3] for w in walls) == rows / 2


def test_coverage_plot_writes_a_png(missing: Data, tmp_path: Path) -> None:
    out = tmp_path / "plots" / "cov.png"
    path = plot_coverage(missing[0], "medium", out, missing_goal_radius=RADIUS)
    assert path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
