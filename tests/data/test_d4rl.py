"""Tests for D4RL HDF5 reading/writing and the TensorDict conversion."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ooo_lightning.data.d4rl import load_d4rl_hdf5, write_d4rl_hdf5
from ooo_lightning.data.schema import DatasetError, derive_next_observations, to_tensordict


def make_dataset(
    n: int = 10, obs_dim: int = 2, act_dim: int = 2, with_next: bool = True
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    data = {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }
    if n > 6:
        data["terminals"][3] = True
        data["timeouts"][6] = True
    if with_next:
        data["next_observations"] = rng.normal(size=(n, obs_dim)).astype(np.float32)
    return data


def write_raw(path: Path, data: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)
    return path


def test_round_trip(tmp_path: Path) -> None:
    data = make_dataset()
    path = write_d4rl_hdf5(tmp_path / "a" / "b" / "data.hdf5", data)
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name != "data.hdf5"]  # no tmp left over
    loaded = load_d4rl_hdf5(path, obs_dim=2, act_dim=2)
    assert set(loaded) == set(data)
    for key in data:
        np.testing.assert_array_equal(loaded[key], data[key])
        assert loaded[key].dtype == data[key].dtype


def test_load_converts_dtypes_and_flattens_rewards(tmp_path: Path) -> None:
    data = make_dataset()
    raw = {k: v.astype(np.float64) for k, v in data.items()}
    raw["rewards"] = raw["rewards"][:, None]
    loaded = load_d4rl_hdf5(write_raw(tmp_path / "f64.hdf5", raw))
    assert loaded["observations"].dtype == np.float32 and loaded["rewards"].shape == (10,)
    assert loaded["terminals"].dtype == np.bool_ and loaded["terminals"][3]
    assert loaded["timeouts"].dtype == np.bool_ and loaded["timeouts"][6]


def test_derived_next_observations(tmp_path: Path) -> None:
    data = make_dataset(with_next=False)
    loaded = load_d4rl_hdf5(write_raw(tmp_path / "nonext.hdf5", data))
    keep = np.ones(10, dtype=bool)
    keep[6] = False  # timeout: successor unknown
    keep[9] = False  # last row: successor unknown
    assert len(loaded["observations"]) == 8
    np.testing.assert_array_equal(loaded["observations"], data["observations"][keep])
    successors = data["observations"][np.flatnonzero(keep) + 1]
    np.testing.assert_array_equal(loaded["next_observations"], successors)
    np.testing.assert_array_equal(loaded["actions"], data["actions"][keep])
    assert loaded["terminals"].sum() == 1
    # The episodes the dropped rows ended now end a step earlier: rows 5 and 8, kept as 5 and 7.
    np.testing.assert_array_equal(np.flatnonzero(loaded["timeouts"]), [5, 7])
    nxt, mask = derive_next_observations(data["observations"], data["timeouts"])
    np.testing.assert_array_equal(mask, keep)
    assert nxt.shape == (8, 2)


def assert_error(path: Path, key: str | None, *fragments: str, **kwargs) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_d4rl_hdf5(path, **kwargs)
    msg = str(info.value)
    assert path.name in msg
    if key is not None:
        assert key in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    hint = "ooo-lightning-data point-mass-wall --out"
    assert_error(tmp_path / "nope.hdf5", None, "not found", hint)


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "garbage.hdf5"
    path.write_bytes(b"this is not an hdf5 file")
    assert_error(path, None, "not a readable HDF5 file")


def test_missing_key(tmp_path: Path) -> None:
    data = make_dataset()
    del data["actions"]
    assert_error(write_raw(tmp_path / "nokey.hdf5", data), "actions", "missing")


def test_wrong_obs_dim(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "dim.hdf5", make_dataset(n=100, obs_dim=3))
    assert_error(
        path,
        "observations",
        "observations has shape (100, 3), expected (N, 2) to match the environment's observation space",
        obs_dim=2,
    )


def test_wrong_act_dim(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "adim.hdf5", make_dataset(act_dim=4))
    assert_error(path, "actions", "(10, 4)", "expected (N, 2)", act_dim=2)


def test_wrong_ndim(tmp_path: Path) -> None:
    data = make_dataset()
    data["observations"] = data["observations"][:, 0]
    assert_error(write_raw(tmp_path / "ndim.hdf5", data), "observations", "(10,)")
    data = make_dataset()
    data["rewards"] = np.zeros((10, 2), dtype=np.float32)
    assert_error(write_raw(tmp_path / "rew.hdf5", data), "rewards", "(10, 2)")


def test_length_mismatch(tmp_path: Path) -> None:
    data = make_dataset()
    data["rewards"] = data["rewards"][:7]
    assert_error(write_raw(tmp_path / "len.hdf5", data), "rewards", "7 rows", "10")


def test_empty(tmp_path: Path) -> None:
    assert_error(write_raw(tmp_path / "empty.hdf5", make_dataset(n=0)), "observations", "empty")


@pytest.mark.parametrize("key", ["observations", "actions", "rewards"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(tmp_path: Path, key: str, bad: float) -> None:
    data = make_dataset()
    data[key] = data[key].copy()
    data[key].reshape(-1)[5] = bad
    assert_error(write_raw(tmp_path / f"nan_{key}.hdf5", data), key, "non-finite")


def test_bad_flags(tmp_path: Path) -> None:
    data = make_dataset()
    data["terminals"] = np.full(10, 0.5, dtype=np.float32)
    assert_error(write_raw(tmp_path / "flags.hdf5", data), "terminals", "0/1")


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "atomic.hdf5"
    write_d4rl_hdf5(path, make_dataset())
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_d4rl_hdf5(path, {"observations": np.zeros((3, 2)), "bad": np.array([object()])})
    assert path.read_bytes() == before  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["atomic.hdf5"]  # tmp cleaned up


def test_to_tensordict(tmp_path: Path) -> None:
    data = make_dataset()
    data["timeouts"][3] = True  # terminal and timeout: counts as terminated, not truncated
    td = to_tensordict(data)
    assert td.batch_size == torch.Size([10])
    expected = {
        "observation": (torch.float32, (10, 2)),
        "action": (torch.float32, (10, 2)),
        ("next", "observation"): (torch.float32, (10, 2)),
        ("next", "reward"): (torch.float32, (10, 1)),
        ("next", "terminated"): (torch.bool, (10, 1)),
        ("next", "truncated"): (torch.bool, (10, 1)),
        ("next", "done"): (torch.bool, (10, 1)),
    }
    for key, (dtype, shape) in expected.items():
        assert td.get(key).dtype == dtype and tuple(td.get(key).shape) == shape, key
    assert td["next", "terminated"][:, 0].nonzero().flatten().tolist() == [3]
    assert td["next", "truncated"][:, 0].nonzero().flatten().tolist() == [6]
    assert td["next", "done"][:, 0].nonzero().flatten().tolist() == [3, 6]
    torch.testing.assert_close(td["next", "reward"][:, 0], torch.from_numpy(data["rewards"]))
    torch.testing.assert_close(td["next", "observation"], torch.from_numpy(data["next_observations"]))


def test_to_tensordict_requires_next_observations() -> None:
    with pytest.raises(DatasetError, match="next_observations"):
        to_tensordict(make_dataset(with_next=False))
