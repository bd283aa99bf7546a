"""Shared fixtures: tiny configurations so that whole phases run in seconds."""

from pathlib import Path

import pytest

from ooo_lightning.envs.scripted import generate_point_mass_wall_dataset
from ooo_lightning.data.d4rl import write_d4rl_hdf5

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pmw_tiny.hdf5"
    write_d4rl_hdf5(path, generate_point_mass_wall_dataset(num_episodes=4, seed=0))
    return path
