"""Tests for the scripted point-mass-wall offline dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ooo_lightning.data.d4rl import load_d4rl_hdf5
from ooo_lightning.envs.point_mass_wall import MAX_EPISODE_STEPS, START, WALL
from ooo_lightning.envs.scripted import (
    ensure_point_mass_wall_dataset,
    generate_point_mass_wall_dataset,
    main,
)

EPISODES = 8


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    return generate_point_mass_wall_dataset(num_episodes=EPISODES, seed=3)


def test_keys_shapes_dtypes(dataset: dict[str, np.ndarray]) -> None:
    n = EPISODES * MAX_EPISODE_STEPS
    keys = {"observations", "actions", "next_observations", "rewards", "terminals", "timeouts"}
    assert set(dataset) == keys
    for key in ("observations", "actions", "next_observations"):
        assert dataset[key].shape == (n, 2) and dataset[key].dtype == np.float32
    for key in ("rewards", "terminals", "timeouts"):
        assert dataset[key].shape == (n,)
    assert dataset["terminals"].dtype == np.bool_ and dataset["timeouts"].dtype == np.bool_
    assert np.all(np.abs(dataset["actions"]) <= 1.0)


def test_reward_free_and_timeout_episodes(dataset: dict[str, np.ndarray]) -> None:
    assert dataset["rewards"].sum() == 0
    assert not dataset["terminals"].any()
    ends = np.flatnonzero(dataset["timeouts"])
    np.testing.assert_array_equal(ends, np.arange(1, EPISODES + 1) * MAX_EPISODE_STEPS - 1)
    # Transitions chain within an episode; episodes start near START.
    obs, nxt = dataset["observations"], dataset["next_observations"]
    inner = ~dataset["timeouts"][:-1]
    np.testing.assert_array_equal(nxt[:-1][inner], obs[1:][inner])
    starts = obs[::MAX_EPISODE_STEPS]
    assert np.all(np.abs(starts - np.asarray(START)) <= 0.02 + 1e-6)


def test_stays_left_of_wall(dataset: dict[str, np.ndarray]) -> None:
    wall_x = WALL[0][0]
    assert dataset["observations"][:, 0].max() <= wall_x
    assert dataset["next_observations"][:, 0].max() <= wall_x
    # The controller really does reach the wall (it is not just idling at the start).
    assert dataset["observations"][:, 0].max() > wall_x - 0.05


def test_deterministic_by_seed(dataset: dict[str, np.ndarray]) -> None:
    again = generate_point_mass_wall_dataset(num_episodes=EPISODES, seed=3)
    other = generate_point_mass_wall_dataset(num_episodes=EPISODES, seed=4)
    for key in dataset:
        np.testing.assert_array_equal(dataset[key], again[key])
    assert not np.array_equal(dataset["observations"], other["observations"])


def test_large_noise_discards_instead_of_leaking() -> None:
    data = generate_point_mass_wall_dataset(num_episodes=10, seed=0, noise=1.0)
    assert data["rewards"].sum() == 0 and data["observations"][:, 0].max() <= WALL[0][0]


def test_ensure_writes_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sub" / "pmw.hdf5"
    with caplog.at_level(logging.INFO, logger="ooo_lightning.envs.scripted"):
        assert ensure_point_mass_wall_dataset(path, num_episodes=2, seed=0) == path
    assert "generating" in caplog.text
    loaded = load_d4rl_hdf5(path, obs_dim=2, act_dim=2)
    assert len(loaded["observations"]) == 2 * MAX_EPISODE_STEPS
    mtime = path.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ooo_lightning.envs.scripted"):
        ensure_point_mass_wall_dataset(path, num_episodes=5, seed=1)
    assert path.stat().st_mtime_ns == mtime and "generating" not in caplog.text


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.hdf5"
    main(["--out", str(out), "--episodes", "2", "--seed", "0", "--noise", "0.5"])
    text = capsys.readouterr().out
    assert str(out) in text and "transitions: 300" in text and "x > 0.5): 0.0000" in text
    assert out.is_file()
