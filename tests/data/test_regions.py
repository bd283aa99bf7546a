"""``data.remove_region``: a region cut out of any offline dataset (the paper's goal-missing data),
checked row by row against a brute-force rule, with its episode boundaries, errors and picture."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import REPO
from ooo_lightning.config_checks import ConfigError
from ooo_lightning.data.buffer import OfflineOnlineBuffer
from ooo_lightning.data.d4rl import write_d4rl_hdf5
from ooo_lightning.data.datamodule import DataRequest, ReplayDataModule
from ooo_lightning.data.regions import plot_region_cut, remove_region
from ooo_lightning.data.returns import ReturnSpec, episode_ends, monte_carlo_returns
from ooo_lightning.data.sampling import SamplingSpec
from ooo_lightning.data.writers import write_npz

OBS_DIM = 3
#: The region most tests cut: a disc in entries 0 and 1 that random walks from the origin cross.
REGION = {"center": [0.6, -0.4], "radius": 0.5}


def random_walks(episodes: int = 12, steps: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Episodes of a random walk from near the origin, in the schema's layout: the first half
    end in a terminal (reward 1 on that step), the others by a time-out. ``episode`` and
    ``row`` (not schema keys) say where each row came from; ``remove_region`` carries them."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals",
                                              "timeouts", "episode")}
    for e in range(episodes):
        states = np.cumsum(rng.normal(scale=0.15, size=(steps + 1, OBS_DIM)), axis=0)
        terminal = e < episodes // 2
        parts["observations"].append(states[:-1])
        parts["next_observations"].append(states[1:])
        parts["actions"].append(rng.uniform(-1, 1, size=(steps, 2)))
        parts["rewards"].append(np.r_[np.zeros(steps - 1), [float(terminal)]])
        parts["terminals"].append(np.r_[np.zeros(steps - 1, bool), [terminal]])
        parts["timeouts"].append(np.r_[np.zeros(steps - 1, bool), [not terminal]])
        parts["episode"].append(np.full(steps, e))
    data = {k: np.concatenate(v) for k, v in parts.items()}
    for key in ("observations", "next_observations", "actions", "rewards"):
        data[key] = data[key].astype(np.float32)
    data["row"] = np.arange(len(data["rewards"]))
    return data


def touches(point: np.ndarray, center: list[float], radius: float, dims: list[int]) -> bool:
    return math.dist([float(point[d]) for d in dims], center) <= radius


@pytest.mark.parametrize("center, radius, dims", [
    ([0.6, -0.4], 0.5, [0, 1]),
    ([0.3], 0.2, [2]),  # one entry: a slab
    ([-0.5, 0.2, 0.4], 0.8, [2, 0, 1]),  # three entries, in another order
])
def test_the_cut_removes_exactly_the_transitions_that_start_or_end_in_the_region(center, radius, dims):
    data = random_walks()
    kept, cut = remove_region(data, {"center": center, "radius": radius, "dims": dims})
    expected = [i for i in range(len(data["row"]))
                if not (touches(data["observations"][i], center, radius, dims)
                        or touches(data["next_observations"][i], center, radius, dims))]
    assert 0 < cut.num_removed < cut.total
    assert kept["row"].tolist() == expected
    assert cut.removed.tolist() == [i not in set(expected) for i in range(cut.total)]
    for key in ("observations", "next_observations", "actions", "rewards", "terminals"):
        np.testing.assert_array_equal(kept[key], data[key][expected], err_msg=key)
    # No kept transition starts or ends in the region.
    for key in ("observations", "next_observations"):
        assert not any(touches(p, center, radius, dims) for p in kept[key])


def test_a_trajectory_never_runs_across_a_removed_gap():
    data = random_walks()
    kept, cut = remove_region(data, REGION)
    done = torch.as_tensor(kept["terminals"] | kept["timeouts"])
    for start, end in episode_ends(done):
        rows = kept["row"][start:end]
        assert (np.diff(rows) == 1).all(), f"trajectory {rows} runs across a gap"
        assert len(set(kept["episode"][start:end])) == 1
    # The flags: a kept terminal stays terminal; the rows marked as time-outs are the episode
    # ends that were kept plus one per gap, each just before a removed row.
    np.testing.assert_array_equal(kept["terminals"], data["terminals"][kept["row"]])
    marked = kept["timeouts"] & ~data["timeouts"][kept["row"]]
    assert marked.sum() == cut.gaps > 0
    assert cut.removed[kept["row"][marked] + 1].all()
    assert not kept["terminals"][marked].any()


def test_monte_carlo_returns_stop_at_each_gap():
    """With reward 1 on every step and gamma 1 a row's return is the length of the rest of its
    trajectory: the kept rows that follow it without a gap, in its own episode."""
    data = random_walks()
    kept, _ = remove_region(data, REGION)
    ones = torch.ones(len(kept["row"]))
    returns = monte_carlo_returns(ones, torch.as_tensor(kept["terminals"] | kept["timeouts"]), gamma=1.0)
    rows, episodes = kept["row"].tolist(), kept["episode"].tolist()
    for i in range(len(rows)):
        length = 1
        while i + length < len(rows) and rows[i + length] == rows[i] + length and episodes[i + length] == episodes[i]:
            length += 1
        assert returns[i].item() == length, f"row {rows[i]}"


def test_the_cut_is_the_pointmaze_generators_missing_goal_rule():
    """``missing_goal_radius`` of the PointMaze generator and the option remove the same rows and
    mark the same time-outs, on the same data."""
    from ooo_lightning.envs.maze_data import _drop_goal_region

    data = random_walks()
    del data["episode"], data["row"]
    generator, dropped = _drop_goal_region({k: v.copy() for k, v in data.items()}, np.array(REGION["center"]), REGION["radius"])
    ours, cut = remove_region(data, REGION)
    assert cut.num_removed == dropped
    for key, value in generator.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


@pytest.mark.parametrize("spec, message", [
    ({"center": [0.6, -0.4], "radius": -1.0}, "radius must be a finite number > 0, got -1.0"),
    ({"center": [0.6, -0.4], "radius": 0}, "radius must be a finite number > 0"),
    ({"center": [0.6, -0.4], "radius": float("nan")}, "radius must be a finite number > 0"),
    ({"center": [0.6, -0.4, 0.1], "radius": 0.5, "dims": [0, 1]}, "center has 3 coordinates but dims names 2"),
    ({"center": [0.6], "radius": 0.5, "dims": [0, 1]}, "center has 1 coordinates but dims names 2"),
    ({"center": [], "radius": 0.5}, "center must be a non-empty list of finite numbers"),
    ({"center": "0.6, -0.4", "radius": 0.5}, "center must be a non-empty list"),
    ({"center": [0.6, float("inf")], "radius": 0.5}, "center must be a non-empty list of finite numbers"),
    ({"center": [0.6, -0.4], "radius": 0.5, "dims": [0, -1]}, "dims must be a list of distinct observation entries >= 0"),
    ({"center": [0.6, -0.4], "radius": 0.5, "dims": [1, 1]}, "dims must be a list of distinct"),
    ({"center": [0.6, -0.4], "radius": 0.5, "dims": [0, 3]}, "dims \\[0, 3\\] name observation entry 3, but the observations"),
    ({"centre": [0.6, -0.4], "radius": 0.5}, "unknown key\\(s\\) \\['centre'\\]"),
    ({"radius": 0.5}, "center missing"),
    ([0.6, -0.4, 0.5], "must be a mapping"),
    ({"center": [40.0, 40.0], "radius": 0.5}, "removes no transition of the dataset: none lies within 0.5 of \\[40.0, 40.0\\]"),
    ({"center": [0.0, 0.0], "radius": 1e6}, "removes all 480 transitions"),
])
def test_bad_regions_are_refused_with_one_line_that_says_what_to_fix(spec, message):
    with pytest.raises(ConfigError, match=message) as error:
        remove_region(random_walks(), spec)
    assert "\n" not in str(error.value)


def test_the_picture_shows_before_and_after_and_notebooks_get_the_figure(tmp_path):
    data = random_walks()
    _, cut = remove_region(data, REGION)
    path = plot_region_cut(cut, tmp_path / "plots" / "removed_region.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = plot_region_cut(cut)  # no path: the Figure itself
    titles = [ax.get_title() for ax in figure.axes]
    assert "before: 480 transitions" in titles and f"after: {cut.num_kept} kept, {cut.num_removed} removed" in titles
    _, line_cut = remove_region(data, {"center": [0.3], "radius": 0.2, "dims": [2]})
    assert plot_region_cut(line_cut, tmp_path / "line.png").is_file()


def _request() -> DataRequest:
    return DataRequest(env_id="ooo/PointMassWall-v1", env_kwargs={}, observation_dim=OBS_DIM, action_dim=2,
                       sampling=SamplingSpec(batch_size=8), num_batches=1, returns=ReturnSpec(gamma=0.9))


def _schema_only(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in data.items() if k not in ("episode", "row")}


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_the_data_module_cuts_the_dataset_and_the_saved_buffer_says_so(tmp_path, fmt):
    data = random_walks()
    path = tmp_path / f"walks.{fmt}"
    write_d4rl_hdf5(path, _schema_only(data)) if fmt == "hdf5" else write_npz(path, _schema_only(data))
    module = ReplayDataModule(dataset=str(path), remove_region=REGION)
    module.pictures_dir = tmp_path / "plots"
    buffer = module.prepare(_request())
    expected, cut = remove_region(data, REGION)
    assert buffer.num_offline == cut.num_kept == len(expected["row"])
    rows = buffer.rows_between(0, buffer.num_offline)
    np.testing.assert_array_equal(rows.get("observation").numpy(), expected["observations"])
    np.testing.assert_array_equal(rows.get(("next", "done")).numpy().reshape(-1), expected["terminals"] | expected["timeouts"])
    assert (tmp_path / "plots" / "removed_region.png").is_file()
    record = {**REGION, "dims": [0, 1], "removed_transitions": cut.num_removed, "transitions_before": 480}
    assert buffer.info.removed_region == record
    assert OfflineOnlineBuffer.load(buffer.save(tmp_path / "buffer")).info.removed_region == record


def test_the_data_module_refuses_a_region_without_a_dataset_or_outside_the_observations(tmp_path):
    with pytest.raises(ConfigError, match="not a saved buffer"):
        ReplayDataModule(buffer=str(tmp_path / "buffer"), remove_region=REGION)
    with pytest.raises(ConfigError, match="needs an offline dataset"):
        ReplayDataModule(remove_region=REGION)
    module = ReplayDataModule(dataset=str(tmp_path / "absent.hdf5"), remove_region={**REGION, "dims": [0, 5]})
    # Said before the dataset is read (the file does not even exist).
    with pytest.raises(ConfigError, match="name observation entry 5, but the observations of environment"):
        module.prepare(_request())


def test_the_command_line_option_cuts_the_data_and_results_and_plots_say_so(tmp_path, capsys):
    """``--data.remove_region`` through ``ooo-lightning fit``: the run's results.json records the
    region and plots/ holds the picture; a region off the data stops with one line."""
    from ooo_lightning.cli import OOOLightningCLI, main
    from ooo_lightning.envs.scripted import generate_point_mass_wall_dataset

    data = generate_point_mass_wall_dataset(num_episodes=3, seed=1)
    path = write_d4rl_hdf5(tmp_path / "pmw.hdf5", data)
    center = [float(v) for v in data["observations"][len(data["observations"]) // 2]]
    region = json.dumps({"center": center, "radius": 0.1})
    config = f"--config={REPO / 'configs/point_mass_wall/exploiter_iql.yaml'}"
    tiny = ["--data.buffer=null", "--model.init_args.updates=16", "--model.init_args.eval_every=0",
            "--model.init_args.loss.init_args.hidden_dims=[32,32]", "--trainer.enable_progress_bar=false"]
    cli = OOOLightningCLI(args=["fit", config, f"--data.dataset={path}", f"--data.remove_region={region}",
                                f"--trainer.default_root_dir={tmp_path / 'run'}", *tiny])
    removed = json.loads((cli.run_dir / "results.json").read_text())["exploiter"]["removed_region"]
    assert removed["center"] == center and removed["radius"] == 0.1 and removed["dims"] == [0, 1]
    assert 0 < removed["removed_transitions"] < len(data["observations"]) == removed["transitions_before"]
    assert (cli.run_dir / "plots" / "removed_region.png").is_file()

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", config, f"--data.dataset={path}", '--data.remove_region={"center": [5, 5], "radius": 0.1}',
              f"--trainer.default_root_dir={tmp_path / 'off'}", *tiny])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "ooo-lightning: error: data.remove_region removes no transition of" in err and "Traceback" not in err
