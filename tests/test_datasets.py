"""``ooo-lightning-data``: every task and format writes a dataset that loads, with its picture."""

from __future__ import annotations

import numpy as np
import pytest

from ooo_lightning.data.d4rl import load_d4rl_hdf5
from ooo_lightning.datasets import coverage_path, generate_for_env, main
from ooo_lightning.data.sources import load_offline_dataset
from ooo_lightning.envs import POINT_MASS_WALL_ID, POINT_MAZE_MEDIUM_ID
from ooo_lightning.envs.pointmaze import goal_xy


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pointmaze_command_writes_hdf5_without_the_goal_region(tmp_path, capsys):
    out = tmp_path / "maze.hdf5"
    main(["pointmaze", "--size", "medium", "--steps", "3000", "--missing-goal-radius", "1.0", "--out", str(out)])
    data = load_d4rl_hdf5(out, obs_dim=4, act_dim=2)
    goal = goal_xy("medium")
    for key in ("observations", "next_observations"):
        assert np.linalg.norm(data[key][:, :2] - goal, axis=1).min() > 1.0
    assert not (data["rewards"] > 0).any()
    printed = capsys.readouterr().out
    assert "wrote" in printed and "0 rewarding transitions" in printed
    assert _is_png(coverage_path(out, "hdf5"))


def test_point_mass_wall_command_writes_npz(tmp_path):
    out = tmp_path / "pmw.npz"
    main(["point-mass-wall", "--episodes", "3", "--out", str(out)])
    data, meta = load_offline_dataset(str(out), obs_dim=2, act_dim=2)
    assert meta["kind"] == "npz" and len(data["observations"]) > 0
    assert _is_png(coverage_path(out, "npz"))


def test_minari_format_writes_a_local_dataset_that_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    data = generate_for_env(POINT_MAZE_MEDIUM_ID, "ooo/pointmaze-medium/tiny-v0", fmt="minari", steps=1500)
    loaded, meta = load_offline_dataset("ooo/pointmaze-medium/tiny-v0", obs_dim=4, act_dim=2)
    assert meta["kind"] == "minari"
    np.testing.assert_allclose(loaded["observations"], data["observations"], rtol=1e-6)
    np.testing.assert_array_equal(loaded["terminals"], data["terminals"])
    assert _is_png(tmp_path / "minari" / "ooo/pointmaze-medium/tiny-v0" / "coverage.png")
    # a second write replaces the dataset only when allowed
    with pytest.raises(FileExistsError, match="already exists"):
        generate_for_env(POINT_MAZE_MEDIUM_ID, "ooo/pointmaze-medium/tiny-v0", fmt="minari", steps=500, overwrite=False)
    generate_for_env(POINT_MAZE_MEDIUM_ID, "ooo/pointmaze-medium/tiny-v0", fmt="minari", steps=500)
    again, _ = load_offline_dataset("ooo/pointmaze-medium/tiny-v0")
    assert len(again["observations"]) == 500


def test_unknown_environment_or_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no dataset generator for 'Hopper-v5'"):
        generate_for_env("Hopper-v5", tmp_path / "x.hdf5")
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        generate_for_env(POINT_MASS_WALL_ID, tmp_path / "x.csv", fmt="csv")
    with pytest.raises(ValueError, match="must end in .hdf5 or .h5"):
        generate_for_env(POINT_MASS_WALL_ID, tmp_path / "ooo/pmw-v0")


def test_point_mass_wall_layout_reaches_the_data_and_its_picture(tmp_path):
    """A layout from the command line (as a config's env_kwargs): the data and the coverage
    picture follow it, and the file records it."""
    import json

    from matplotlib.figure import Figure

    from ooo_lightning.envs import point_mass_wall_layout
    from ooo_lightning.envs.point_mass_pictures import draw_states

    layout = {"goal": [1.0, 0.3], "walls": [[[0.5, 0.2], [0.5, 1.2]], [[0.2, 0.35], [0.2, 0.65]]]}
    out = tmp_path / "pmw.hdf5"
    main(["point-mass-wall", "--episodes", "3", "--out", str(out), "--env-kwargs", json.dumps(layout)])
    data = load_d4rl_hdf5(out, obs_dim=2, act_dim=2)
    walls = point_mass_wall_layout(layout)
    assert not any(walls.blocked(o, n) for o, n in zip(data["observations"], data["next_observations"]))
    assert json.loads(out.with_name("pmw.hdf5.generated.json").read_text())["env_kwargs"]["goal"] == [1.0, 0.3]
    assert _is_png(coverage_path(out, "hdf5"))
    # What the picture draws: both walls where they are, the goal disc at the moved goal.
    ax = Figure().subplots()
    draw_states(ax, data["observations"], "data", 20, walls)
    drawn = [line.get_xydata().tolist() for line in ax.lines if line.get_label() != "start"]
    assert drawn == [[[0.5, 0.2], [0.5, 1.2]], [[0.2, 0.35], [0.2, 0.65]]]
    (goal,) = ax.patches
    assert goal.center == (1.0, 0.3) and goal.radius == walls.goal_radius


def test_a_dataset_generated_for_another_layout_is_refused(tmp_path):
    from ooo_lightning.datasets import check_generation_record

    out = tmp_path / "pmw.hdf5"
    generate_for_env(POINT_MASS_WALL_ID, out, episodes=1)
    check_generation_record(out, POINT_MASS_WALL_ID, {})
    check_generation_record(out, POINT_MASS_WALL_ID, {"goal": [1.0, 0.15], "max_episode_steps": 150})  # the defaults
    with pytest.raises(ValueError, match=r"generated for other env_kwargs \(goal_radius\)"):
        check_generation_record(out, POINT_MASS_WALL_ID, {"goal_radius": 0.01})
