"""Tests for the scripted point-mass-wall offline dataset."""

from __future__ import annotations

import numpy as np
import pytest

from ooo_lightning.envs.point_mass_wall import MAX_EPISODE_STEPS, START, WALL, WallLayout
from ooo_lightning.envs.scripted import generate_point_mass_wall_dataset

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


SECOND_WALL = {"walls": [[[0.5, 0.1], [0.5, 1.2]], [[0.2, 0.3], [0.2, 0.7]]], "max_episode_steps": 60}


def test_follows_the_layout_of_env_kwargs() -> None:
    """A second wall in front of the start, and a shorter step limit: the data respects both."""
    data = generate_point_mass_wall_dataset(num_episodes=5, seed=0, env_kwargs=SECOND_WALL)
    assert len(data["observations"]) == 5 * 60
    np.testing.assert_array_equal(np.flatnonzero(data["timeouts"]), np.arange(1, 6) * 60 - 1)
    layout = WallLayout.from_values(walls=SECOND_WALL["walls"])
    # No transition goes through the new wall, and the controller piles up against it (x < 0.2).
    assert not any(layout.blocked(o, n) for o, n in zip(data["observations"], data["next_observations"]))
    assert data["observations"][:, 0].max() < 0.2


def test_a_layout_without_a_blocking_wall_is_refused() -> None:
    with pytest.raises(ValueError, match="no wall blocks the straight line"):
        generate_point_mass_wall_dataset(num_episodes=1, env_kwargs={"goal": [0.3, 0.5]})
