"""``ooo-lightning-data``: every task and format writes a dataset that loads, with its picture."""

from __future__ import annotations

import numpy as np
import pytest

from ooo_lightning.data.d4rl import load_d4rl_hdf5
from ooo_lightning.data.generate import coverage_path, generate_for_env, main
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
