"""Offline data from D4RL HDF5, npz and Minari: loading, errors that name the place, training on it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from conftest import REPO
from ooo_lightning.cli import OOOLightningCLI
from ooo_lightning.data.d4rl import write_d4rl_hdf5
from ooo_lightning.data.schema import DatasetError
from ooo_lightning.data.writers import episodes_from_transitions, write_minari, write_npz
from ooo_lightning.data.sources import load_offline_dataset, resolve_source
from ooo_lightning.envs import POINT_MASS_WALL_ID
from ooo_lightning.envs.scripted import generate_point_mass_wall_dataset


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture(scope="module")
def pmw_data() -> dict[str, np.ndarray]:
    return generate_point_mass_wall_dataset(num_episodes=3, seed=1)


def _minari_from_buffers(dataset_id: str, episodes: list[dict], obs_space: gym.Space) -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(id=i, infos={}, **ep) for i, ep in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=obs_space, action_space=gym.spaces.Box(-1, 1, (2,))
        )


def _episode(rng, steps: int, terminal: bool, obs_dim: int = 2, dict_obs: bool = False) -> dict:
    obs = rng.normal(size=(steps + 1, obs_dim))  # float64 on purpose
    if dict_obs:
        obs = {"observation": obs, "desired_goal": rng.normal(size=(steps + 1, 2))}
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(steps, 2)),
        "rewards": rng.normal(size=steps),
        "terminations": np.r_[np.zeros(steps - 1, bool), [terminal]],
        "truncations": np.r_[np.zeros(steps - 1, bool), [not terminal]],
    }


def test_sources_are_told_apart_by_suffix_or_id(tmp_path):
    assert resolve_source("data/x.hdf5").kind == "hdf5"
    assert resolve_source("data/x.H5").kind == "hdf5"
    assert resolve_source("data/x.npz").kind == "npz"
    assert resolve_source("D4RL/pointmaze/medium-v2") == resolve_source("minari:D4RL/pointmaze/medium-v2")
    assert resolve_source("minari:a/b-v0").location == "a/b-v0"
    odd = tmp_path / "data.csv"
    odd.write_text("1,2")
    with pytest.raises(DatasetError, match="unknown file type '.csv'"):
        resolve_source(str(odd))


def test_npz_round_trip_casts_float64(tmp_path, pmw_data):
    data64 = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in pmw_data.items()}
    path = write_npz(tmp_path / "d.npz", data64)
    loaded, meta = load_offline_dataset(str(path), obs_dim=2, act_dim=2)
    assert meta["kind"] == "npz" and meta["name"] == "d"
    for key, value in pmw_data.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
@pytest.mark.parametrize(
    "damage, key, message",
    [
        ("drop", "timeouts", "missing"),
        ("short", "rewards", "rows but observations has"),
        ("nan", "actions", "non-finite"),
        ("wide", "observations", "expected \\(N, 2\\)"),
    ],
)
def test_malformed_files_name_the_file_and_the_key(tmp_path, pmw_data, fmt, damage, key, message):
    data = dict(pmw_data)
    if damage == "drop":
        del data[key]
    elif damage == "short":
        data[key] = data[key][:-3]
    elif damage == "nan":
        data[key] = data[key].copy()
        data[key][5, 1] = np.nan
    elif damage == "wide":
        data[key] = np.concatenate([data[key], data[key][:, :1]], axis=1)
    path = tmp_path / f"bad.{fmt}"
    write_d4rl_hdf5(path, data) if fmt == "hdf5" else write_npz(path, data)
    with pytest.raises(DatasetError, match=message) as err:
        load_offline_dataset(str(path), obs_dim=2, act_dim=2)
    assert str(path) in str(err.value) and f"key '{key}'" in str(err.value)


def test_a_file_that_is_not_npz_is_reported(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="not a readable npz file"):
        load_offline_dataset(str(path))


def test_minari_dataset_written_by_minari_loads_as_transitions(minari_root):
    rng = np.random.default_rng(0)
    episodes = [_episode(rng, 7, terminal=True), _episode(rng, 5, terminal=False), _episode(rng, 4, terminal=False)]
    episodes[2]["truncations"][-1] = False  # the data ends mid-episode
    _minari_from_buffers("test/toy/mixed-v0", episodes, gym.spaces.Box(-np.inf, np.inf, (2,)))

    data, meta = load_offline_dataset("test/toy/mixed-v0", obs_dim=2, act_dim=2)
    assert meta == {"name": "test/toy/mixed-v0", "kind": "minari"}
    assert len(data["observations"]) == 16 and data["observations"].dtype == np.float32
    np.testing.assert_allclose(data["observations"][:7], episodes[0]["observations"][:-1], rtol=1e-6)
    np.testing.assert_allclose(data["next_observations"][:7], episodes[0]["observations"][1:], rtol=1e-6)
    assert np.flatnonzero(data["terminals"]).tolist() == [6]
    # the truncated episode and the one cut by the end of the data both end in a timeout
    assert np.flatnonzero(data["timeouts"]).tolist() == [11, 15]


def test_minari_dict_observations_use_the_observation_entry(minari_root):
    rng = np.random.default_rng(1)
    space = gym.spaces.Dict(
        {"observation": gym.spaces.Box(-np.inf, np.inf, (2,)), "desired_goal": gym.spaces.Box(-np.inf, np.inf, (2,))}
    )
    episodes = [_episode(rng, 6, terminal=False, dict_obs=True)]
    _minari_from_buffers("test/dictobs-v0", episodes, space)
    data, _ = load_offline_dataset("minari:test/dictobs-v0", obs_dim=2)
    np.testing.assert_allclose(data["observations"], episodes[0]["observations"]["observation"][:-1], rtol=1e-6)
    goals, _ = load_offline_dataset("test/dictobs-v0", observation_key="desired_goal")
    np.testing.assert_allclose(goals["observations"], episodes[0]["observations"]["desired_goal"][:-1], rtol=1e-6)
    with pytest.raises(DatasetError, match="none is 'achieved_goal'"):
        load_offline_dataset("test/dictobs-v0", observation_key="achieved_goal")


def test_minari_errors_name_the_dataset_and_what_exists(minari_root):
    rng = np.random.default_rng(2)
    episode = _episode(rng, 5, terminal=True)
    episode["rewards"][2] = np.nan
    _minari_from_buffers("test/nan-v0", [episode], gym.spaces.Box(-np.inf, np.inf, (2,)))
    with pytest.raises(DatasetError, match=r"minari dataset 'test/nan-v0' \[key 'rewards'\].*non-finite"):
        load_offline_dataset("test/nan-v0")
    with pytest.raises(DatasetError, match=r"\[key 'observations'\].*expected \(N, 3\)"):
        load_offline_dataset("test/nan-v0", obs_dim=3)
    with pytest.raises(DatasetError, match=r"not found under .*local datasets: \['test/nan-v0'\]"):
        load_offline_dataset("D4RL/pointmaze/medium-v2")


def test_episodes_split_at_ends_and_rebuild_the_last_observation(pmw_data):
    episodes = episodes_from_transitions(pmw_data)
    assert sum(len(ep["rewards"]) for ep in episodes) == len(pmw_data["rewards"])
    first = episodes[0]
    assert len(first["observations"]) == len(first["actions"]) + 1
    np.testing.assert_array_equal(first["observations"][-1], pmw_data["next_observations"][len(first["actions"]) - 1])
    assert first["truncations"][-1] and not first["truncations"][:-1].any()


def test_minari_writer_round_trips_the_transitions(minari_root, pmw_data):
    write_minari("ooo/pmw/test-v0", pmw_data, POINT_MASS_WALL_ID)
    loaded, _ = load_offline_dataset("ooo/pmw/test-v0", obs_dim=2, act_dim=2)
    for key, value in pmw_data.items():
        np.testing.assert_allclose(loaded[key], value, rtol=1e-6, err_msg=key)


TINY_EXPLOITER = [
    "--data.buffer=null",
    "--model.init_args.updates=16",
    "--model.init_args.eval_every=0",
    "--model.init_args.loss.init_args.hidden_dims=[32,32]",
    "--trainer.enable_progress_bar=false",
]


@pytest.mark.parametrize("fmt", ["hdf5", "npz", "minari"])
def test_each_format_trains_an_agent_for_a_few_steps(tmp_path, minari_root, pmw_data, fmt):
    if fmt == "minari":
        write_minari("ooo/pmw/train-v0", pmw_data, POINT_MASS_WALL_ID)
        spec = "minari:ooo/pmw/train-v0"
    else:
        spec = str(tmp_path / f"pmw.{fmt}")
        write_d4rl_hdf5(spec, pmw_data) if fmt == "hdf5" else write_npz(spec, pmw_data)
    cli = OOOLightningCLI(
        args=[f"--config={REPO / 'configs/point_mass_wall/exploiter_iql.yaml'}", f"--data.dataset={spec}",
              f"--trainer.default_root_dir={tmp_path / 'run'}", *TINY_EXPLOITER],
        run=False,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step > 0
    assert cli.datamodule.buffer.num_offline == len(pmw_data["observations"])
    assert cli.datamodule.buffer.info.dataset_name == ("ooo/pmw/train-v0" if fmt == "minari" else "pmw")


def test_d4rl_named_data_gets_a_normalized_score_in_results(tmp_path, pmw_data):
    # A file named like a D4RL dataset picks up D4RL's reference returns (here antmaze's 0..1).
    path = tmp_path / "antmaze-umaze-v2.hdf5"
    write_d4rl_hdf5(path, pmw_data)
    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/point_mass_wall/exploiter_iql.yaml'}", f"--data.dataset={path}",
              f"--trainer.default_root_dir={tmp_path / 'run'}", *TINY_EXPLOITER]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())["exploiter"]
    assert results["score_reference"] == [0.0, 1.0]
    assert results["normalized_score"] == pytest.approx(100 * results["return_mean"])


def test_the_dataset_option_reads_a_d4rl_file_to_the_arrays_written(tmp_path, pmw_data):
    """``data.dataset: x.hdf5`` goes through the format dispatch to D4RL's reader: every array
    written comes back, with its values, and the file's stem names the dataset."""
    path = write_d4rl_hdf5(tmp_path / "walls.hdf5", pmw_data)
    loaded, meta = load_offline_dataset(str(path), obs_dim=2, act_dim=2)
    assert meta == {"name": "walls", "kind": "hdf5"}
    assert set(loaded) == set(pmw_data)
    for key, written in pmw_data.items():
        np.testing.assert_array_equal(loaded[key], written)


def test_a_d4rl_file_with_infos_and_without_next_observations_loads(tmp_path, pmw_data):
    import h5py

    path = tmp_path / "maze2d-like.hdf5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
            f.create_dataset(key, data=pmw_data[key].astype(np.float64) if key != "terminals" else pmw_data[key])
        f.create_dataset("infos/goal", data=np.zeros((len(pmw_data["rewards"]), 2)))
        f.create_dataset("infos/qpos", data=np.zeros((len(pmw_data["rewards"]), 2)))
        f.attrs["env"] = "maze2d-medium-v1"
    data, _ = load_offline_dataset(str(path), obs_dim=2, act_dim=2)
    # rows cut by a time-out lose their unknown successor, as in D4RL's qlearning_dataset
    assert len(data["observations"]) == len(pmw_data["observations"]) - int(pmw_data["timeouts"].sum())
    assert data["observations"].dtype == np.float32 and not data["terminals"][data["timeouts"]].any()


def test_minari_reference_scores_reach_the_normalized_score(minari_root, tmp_path, pmw_data):
    import minari
    from minari.data_collector import EpisodeBuffer

    episodes = episodes_from_transitions(pmw_data)
    buffers = [EpisodeBuffer(id=i, infos={}, **ep) for i, ep in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("test/withref-v0", buffers, env=POINT_MASS_WALL_ID,
                                           ref_min_score=-200.0, ref_max_score=100.0)
    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/point_mass_wall/exploiter_iql.yaml'}",
              "--data.dataset=minari:test/withref-v0", f"--trainer.default_root_dir={tmp_path / 'run'}", *TINY_EXPLOITER]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())["exploiter"]
    # References off the task's own range (-150..0), so that neither bound is the return and
    # swapping them would show: 100 x (return - min) / (max - min).
    assert results["score_reference"] == [-200.0, 100.0]
    assert results["normalized_score"] == pytest.approx(100 * (results["return_mean"] + 200) / 300)
    assert 0 < results["normalized_score"] < 100
