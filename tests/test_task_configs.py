"""The paper's task configs (configs/antmaze, kitchen, adroit_binary) end to end: each task
overlay on its IQL base (and one per domain on the Cal-QL overlay) loads its Minari dataset by
its default id, trains the three phases with tiny budgets, evaluates, and writes a normalized
score into results.json. The datasets are small ones made with minari over the real
environments (tests/paper_datasets.py), under a temporary MINARI_DATASETS_PATH."""

import json
import re

import pytest

from conftest import REPO
from ooo_lightning.cli import main
from paper_datasets import PAPER_DATASETS, write_paper_datasets
from runs import EXPLOITER, EXPLORER, config_files

#: Per domain: the base's own task (None: no overlay), then the task overlays.
TASKS = {
    "antmaze": (None, "medium_diverse", "large_diverse"),
    "kitchen": (None, "partial", "mixed"),
    "adroit_binary": (None, "pen", "door"),
}
SCORE_REFERENCES = {"antmaze": [0.0, 1.0], "kitchen": [0.0, 4.0], "adroit_binary": [0.0, 1.0]}
#: One task per domain also runs on the Cal-QL overlay.
CALQL_TASKS = {"antmaze": "large_diverse", "kitchen": "mixed", "adroit_binary": "door"}


@pytest.fixture(scope="session")
def paper_minari_root(tmp_path_factory):
    return write_paper_datasets(tmp_path_factory.mktemp("minari"))


def _tiny(root) -> list[str]:
    """Seconds instead of hours: 32-unit networks, two training steps per phase, 16 online
    steps, one 20-step evaluation episode."""
    return [
        f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
        f"{EXPLORER}.loss.init_args.hidden_dims=[32,32]", f"{EXPLORER}.bonus.init_args.hidden_dims=[32]",
        f"{EXPLORER}.bonus.init_args.embedding_dim=32", f"{EXPLORER}.batch_size=32", f"{EXPLORER}.offline_updates=16",
        f"{EXPLORER}.online_steps=16", f"{EXPLORER}.eval_every=0",
        f"{EXPLORER}.env_kwargs={{\"max_episode_steps\": 20}}",
        f"{EXPLOITER}.loss.init_args.hidden_dims=[32,32]", f"{EXPLOITER}.batch_size=64", f"{EXPLOITER}.updates=16",
        f"{EXPLOITER}.eval_every=0", "--model.init_args.final_eval_episodes=1",
    ]


def _cases():
    for domain, tasks in TASKS.items():
        for task in tasks:
            yield pytest.param(domain, task, False, id=f"{domain}/{task or 'base'}")
        yield pytest.param(domain, CALQL_TASKS[domain], True, id=f"{domain}/{CALQL_TASKS[domain]}+calql")


@pytest.mark.parametrize("domain, task, calql", list(_cases()))
def test_a_task_config_trains_all_three_phases_on_its_minari_dataset(domain, task, calql, paper_minari_root,
                                                                        tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(paper_minari_root))
    folder = REPO / "configs" / domain
    files = [folder / "ooo_iql.yaml", *([folder / "ooo_calql.yaml"] if calql else []),
             *([folder / f"{task}.yaml"] if task else [])]
    task_file = folder / f"{task}.yaml" if task else files[0]
    dataset = re.search(r"dataset: (\S+)", task_file.read_text()).group(1)
    assert dataset in PAPER_DATASETS  # the config's default is the Minari id of its task

    main(["fit", *(f"--config={f}" for f in files), *_tiny(tmp_path / "run")])

    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for policy in ("explorer", "exploiter"):
        entry = results[policy]
        assert entry["episodes"] == 1 and entry["env_steps"] == 16
        # antmaze: D4RL's [0, 1] on the return; kitchen: [0, 4] on the subtasks completed; binary
        # adroit: [0, 1] on whether the episode succeeded (the environments' episode_score).
        assert entry["score_reference"] == SCORE_REFERENCES[domain]
        assert ("score_mean" in entry) == (domain != "antmaze")
        assert entry["normalized_score"] == pytest.approx(
            100 * (entry.get("score_mean", entry["return_mean"]) - entry["score_reference"][0])
            / (entry["score_reference"][1] - entry["score_reference"][0]))
    assert (tmp_path / "run" / "buffer").is_dir()


def test_each_task_overlay_runs_after_its_base_and_names_its_own_environment():
    seen = set()
    for domain, tasks in TASKS.items():
        base = REPO / "configs" / domain / "ooo_iql.yaml"
        assert config_files(base) == [base]
        for task in tasks:
            overlay = REPO / "configs" / domain / f"{task}.yaml" if task else base
            assert config_files(overlay)[0] == base
            env = re.search(r"env: (ooo/\S+)", overlay.read_text()).group(1)
            assert env not in seen  # one environment per task: the run directories differ
            seen.add(env)
        calql = REPO / "configs" / domain / "ooo_calql.yaml"
        assert config_files(calql) == [base, calql]
    assert len(seen) == 9


def test_a_d4rl_hdf5_file_replaces_the_minari_id_with_the_d4rl_frame(tmp_path):
    """The README's recipe for D4RL's antmaze files: the file as data.dataset, the d4rl frame."""
    import gymnasium as gym
    import numpy as np

    from ooo_lightning.data.d4rl import write_d4rl_hdf5

    env = gym.make("ooo/AntMazeMedium-v0", frame="d4rl")
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    rows = []
    for t in range(40):
        action = env.action_space.sample()
        next_obs, *_ = env.step(action)
        rows.append((obs, action, next_obs))
        obs = next_obs
    observations, actions, next_observations = (np.asarray(x, dtype=np.float32) for x in zip(*rows))
    path = tmp_path / "antmaze-medium-diverse-v2.hdf5"
    write_d4rl_hdf5(path, {"observations": observations, "actions": actions, "next_observations": next_observations,
                           "rewards": np.zeros(40, np.float32), "terminals": np.zeros(40, bool),
                           "timeouts": np.arange(40) % 20 == 19})
    folder = REPO / "configs" / "antmaze"
    tiny = [a for a in _tiny(tmp_path / "run") if "env_kwargs" not in a]
    main(["fit", f"--config={folder / 'ooo_iql.yaml'}", f"--config={folder / 'medium_diverse.yaml'}", *tiny,
          f"--data.dataset={path}", f'{EXPLORER}.env_kwargs={{"frame": "d4rl", "max_episode_steps": 20}}'])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["exploiter"]["score_reference"] == [0.0, 1.0] and results["exploiter"]["env_steps"] == 16
