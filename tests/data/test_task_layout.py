"""Reading the paper's tasks' datasets into their environments' layout (data/task_layout.py):
Minari's dict observations flattened as the wrapper flattens them, rewards and terminals
recomputed with the task's rule, for Minari datasets (made with minari over the library's
environments) and D4RL-layout HDF5 files."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from ooo_lightning import envs
from ooo_lightning.data.d4rl import write_d4rl_hdf5
from ooo_lightning.data.schema import DatasetError
from ooo_lightning.data.sources import load_offline_dataset
from ooo_lightning.envs.antmaze import AntMazeTask
from ooo_lightning.envs.kitchen import TASKS, KitchenTask
from paper_datasets import make_library_env, record_episodes, write_dataset


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _rollout_file(path, env_id, steps=12, seed=0, **env_kwargs) -> dict:
    """A D4RL-layout file of one random-action episode of one of the project's environments."""
    env = gym.make(env_id, **env_kwargs)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = {k: [] for k in ("observations", "actions", "rewards", "next_observations")}
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, *_ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs)):
            rows[key].append(value)
        obs = next_obs
    data = {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}
    data["terminals"] = np.zeros(steps, bool)
    data["timeouts"] = np.arange(steps) == steps - 1
    write_d4rl_hdf5(path, data)
    return data


def test_antmaze_minari_data_is_flattened_and_rewarded_for_the_fixed_goal(minari_root):
    env = make_library_env("AntMaze_UMaze-v4", continuing_task=True, reset_target=False)
    buffers = record_episodes(env, episodes=2, steps=10, seed=0)
    task = AntMazeTask("umaze", "minari")
    # Step 4 of episode 0 reaches this task's goal; step 6 pays Minari's own (another) goal.
    buffers[0].observations["achieved_goal"][5] = task.goal_xy + [0.2, 0.2]
    buffers[0].rewards[6] = 1.0
    write_dataset("test/antmaze/goal-v0", buffers, env)

    data, _ = load_offline_dataset("test/antmaze/goal-v0", obs_dim=29, layout=envs.dataset_layout(envs.ANTMAZE_IDS["umaze"]))
    first = buffers[0].observations
    np.testing.assert_allclose(data["observations"][:10], np.concatenate([first["achieved_goal"], first["observation"]], -1)[:10],
                               rtol=1e-6, atol=1e-6)
    assert np.flatnonzero(data["rewards"]).tolist() == [4] and np.flatnonzero(data["terminals"]).tolist() == [4]
    assert np.flatnonzero(data["timeouts"]).tolist() == [9, 19]  # the episode ends stay, as time-outs

    kept, _ = load_offline_dataset("test/antmaze/goal-v0", layout=envs.dataset_layout(envs.ANTMAZE_IDS["umaze"]),
                                   relabel_rewards=False)
    assert np.flatnonzero(kept["rewards"]).tolist() == [6] and kept["observations"].shape == (20, 29)


def test_antmaze_frames_are_checked_against_the_data(minari_root, tmp_path):
    # A D4RL-frame file is read in the d4rl frame, and refused in the library's frame.
    d4rl_file = tmp_path / "antmaze-medium-diverse-v2.hdf5"
    _rollout_file(d4rl_file, envs.ANTMAZE_IDS["medium"], frame="d4rl")
    d4rl = envs.dataset_layout(envs.ANTMAZE_IDS["medium"], {"frame": "d4rl"})
    data, _ = load_offline_dataset(str(d4rl_file), layout=d4rl)
    assert data["observations"].shape == (12, 29) and not data["rewards"].any()
    with pytest.raises(DatasetError, match=r"antmaze-medium-diverse-v2.hdf5 for antmaze medium \(minari frame\): .* "
                                           r"looks like d4rl-frame data: set env_kwargs frame: d4rl"):
        load_offline_dataset(str(d4rl_file), layout=envs.dataset_layout(envs.ANTMAZE_IDS["medium"], {}))
    # Minari's dict observations are in the library's frame only.
    env = make_library_env("AntMaze_Medium_Diverse_GR-v4", continuing_task=True, reset_target=False)
    write_dataset("test/antmaze/medium-v0", record_episodes(env, 1, 5, 0), env)
    with pytest.raises(DatasetError, match="use env_kwargs frame: minari"):
        load_offline_dataset("test/antmaze/medium-v0", layout=d4rl)


def test_kitchen_minari_data_gets_d4rls_observation_and_the_subtasks_done_next(minari_root):
    env = make_library_env("FrankaKitchen-v1", remove_task_when_completed=False, terminate_on_tasks_completed=False,
                           tasks_to_complete=list(TASKS["mixed"]))
    buffers = record_episodes(env, episodes=1, steps=8, seed=0)
    state = buffers[0].observations["observation"]
    state[3, 31] = -0.75  # the microwave door (object qpos 13) open at observation 3
    state[3, 26:28] = [-0.69, -0.05]  # and the light switch (object qpos 8, 9) on
    write_dataset("test/kitchen/mixed-v0", buffers, env)

    data, _ = load_offline_dataset("test/kitchen/mixed-v0", obs_dim=60, layout=envs.dataset_layout(envs.KITCHEN_IDS["mixed"]))
    task = KitchenTask(TASKS["mixed"])
    np.testing.assert_allclose(data["observations"][:, :9], state[:-1, :9], atol=1e-6)
    np.testing.assert_allclose(data["observations"][:, 9:30], state[:-1, 18:39], atol=1e-6)
    np.testing.assert_allclose(data["observations"][:, 30:], np.broadcast_to(task.goal, (8, 30)), atol=1e-6)
    assert data["rewards"].tolist() == [0, 0, 2, 0, 0, 0, 0, 0]  # transition 2 leads to observation 3
    assert not data["terminals"].any()


def test_kitchen_d4rl_files_are_counted_on_the_next_state_and_lose_their_last_step_terminal(tmp_path):
    # D4RL's generator counts the subtasks on the current observation and marks every
    # demonstration's last step terminal; the task's rule counts on the next one.
    path = tmp_path / "kitchen-complete-v0.hdf5"
    data = _rollout_file(path, envs.KITCHEN_IDS["complete"], steps=6)
    data["next_observations"][2, 22] = -0.75  # microwave open after transition 2
    data["rewards"][:] = 0.0
    data["rewards"][3] = 1.0  # D4RL: counted on observation 3
    data["terminals"][-1], data["timeouts"][-1] = True, False
    write_d4rl_hdf5(path, data)
    read, _ = load_offline_dataset(str(path), layout=envs.dataset_layout(envs.KITCHEN_IDS["complete"]))
    assert read["rewards"].tolist() == [0, 0, 1, 0, 0, 0]
    assert not read["terminals"].any() and read["timeouts"].tolist() == [False] * 5 + [True]


def test_binary_adroit_rewards_are_the_recorded_success_or_the_rule_on_d4rl_files(minari_root, tmp_path):
    env = make_library_env("AdroitHandDoor-v1")
    buffers = record_episodes(env, episodes=1, steps=6, seed=0)
    assert "success" in buffers[0].infos and len(buffers[0].infos["success"]) == 7  # the reset's, then one per step
    buffers[0].infos["success"][4] = True  # the step of transition 3
    write_dataset("test/door/human-v0", buffers, env)
    layout = envs.dataset_layout(envs.ADROIT_BINARY_IDS["door"])
    data, _ = load_offline_dataset("test/door/human-v0", obs_dim=39, layout=layout)
    assert data["rewards"].tolist() == [0, 0, 0, 1, 0, 0] and not data["terminals"].any()
    assert np.abs(np.asarray(buffers[0].rewards)).sum() > 0  # the dense rewards are gone

    # A D4RL file has no success flag: the door's rule (hinge >= 1.35) on the next observation.
    path = tmp_path / "door-human-v1.hdf5"
    data = _rollout_file(path, envs.ADROIT_BINARY_IDS["door"], steps=4)
    data["next_observations"][1, 28] = 1.4
    data["rewards"][:] = 7.0
    write_d4rl_hdf5(path, data)
    read, _ = load_offline_dataset(str(path), layout=layout)
    assert read["rewards"].tolist() == [0, 1, 0, 0]


def test_dict_observations_without_the_tasks_entries_name_the_dataset_and_the_task(minari_root):
    from minari.data_collector import EpisodeBuffer

    env = make_library_env("AdroitHandDoor-v1")
    episode = record_episodes(env, 1, 3, 0)[0]
    space = gym.spaces.Dict({"observation": env.observation_space})
    buffer = EpisodeBuffer(id=0, observations={"observation": episode.observations}, actions=episode.actions,
                           rewards=episode.rewards, terminations=episode.terminations, truncations=episode.truncations,
                           infos={})
    write_dataset("test/dict/door-v0", [buffer], env, observation_space=space)
    with pytest.raises(DatasetError, match=r"test/dict/door-v0' \[key 'observations'\] for antmaze umaze .*achieved_goal"):
        load_offline_dataset("test/dict/door-v0", layout=envs.dataset_layout(envs.ANTMAZE_IDS["umaze"]))
