from functools import partial

import pytest
import torch
from lightning.pytorch import Trainer

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.envs.point_mass_wall import STEP_SIZE
from ooo_lightning.exploration import RNDBonus
from ooo_lightning.losses import IQLLoss
from ooo_lightning.modules import ExploiterModule, ExplorerModule, NonFiniteLossError

ENV = "ooo/PointMassWall-v1"
SMALL = partial(IQLLoss, hidden_dims=(32, 32))


def _trainer(**kw) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def test_explorer_pretrains_then_collects_into_the_buffer(tiny_dataset):
    module = ExplorerModule(
        ENV, SMALL, bonus=partial(RNDBonus, hidden_dims=(32,), embedding_dim=16),
        offline_updates=16, online_steps=40, updates_per_step=4, utd_ratio=2, batch_size=32, eval_every=0,
    )
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer().fit(module, datamodule=data)
    assert module.num_training_steps == 4 + 20
    assert module.num_updates == 24 * 4
    assert module.env_steps == 40 and data.buffer.num_online == 40
    assert len(data.buffer) == data.buffer.num_offline + 40
    # online transitions are real environment steps: the next observation of one step is the
    # observation of the next step within an episode
    online = data.buffer.rows_between(data.buffer.num_offline, len(data.buffer))
    same_episode = ~online[:-1].get(("next", "done")).reshape(-1)
    assert torch.allclose(online[1:]["observation"][same_episode], online[:-1].get(("next", "observation"))[same_episode])
    # and every transition is one step of the dynamics, the first one included
    step = (online.get(("next", "observation")) - online["observation"]).norm(dim=-1)
    assert step.max() <= STEP_SIZE * 2**0.5 + 1e-6
    assert step.max() > 0.025 * 2**0.5  # the paper's step, not the old 0.025 per axis
    assert module.bonus.normaliser_stats.count > 1  # the bonus was computed on the batches


def test_random_warm_up_acts_uniformly_and_learns_only_after_it(tiny_dataset):
    """RLPD's warm-up: the first random_steps online actions are uniform in [-1, 1], not the
    policy's (here made to return zeros), and no update is made before they are collected."""
    module = ExplorerModule(ENV, SMALL, offline_updates=8, online_steps=40, random_steps=24, updates_per_step=4,
                            batch_size=32, eval_every=0)
    module.loss.actor.act = lambda obs, deterministic=False: torch.zeros(*obs.shape[:-1], 2)
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer().fit(module, datamodule=data)
    actions = data.buffer.rows_between(data.buffer.num_offline, len(data.buffer))["action"]
    assert actions.shape == (40, 2)
    assert (actions[:24].abs() > 0).all() and (actions[:24].abs() <= 1).all()
    assert actions[:24].std() > 0.3  # spread over the box, not near one action
    assert (actions[24:] == 0).all()
    # 2 offline steps + 10 online steps of 4 frames; the first 5 online steps make no update
    # (the 6th collects the last random frames, then learns).
    assert module.num_updates == 4 * (2 + 10 - 5)
    with pytest.raises(ConfigError, match="random_steps must be in"):
        ExplorerModule(ENV, SMALL, online_steps=10, random_steps=20)


def test_log_info_keys_follow_an_info_value_per_episode_and_reject_unknown_keys(tiny_dataset):
    """online/<key>_max: the largest value of info[key] in the latest episodes and the running
    one (point-mass-wall's info has only "success"; 160 steps end one 150-step episode)."""
    module = ExplorerModule(ENV, SMALL, offline_updates=8, online_steps=160, updates_per_step=4, batch_size=32,
                            eval_every=0, log_info_keys=["success"])
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer().fit(module, datamodule=data)
    assert module.episode_stats[0].episodes == 1 and len(module.episode_stats[0].recent_info_max["success"]) == 1
    rewards = data.buffer.rows_between(data.buffer.num_offline, len(data.buffer)).get(("next", "reward"))
    assert module.extra_metrics()["online/success_max"] == float(rewards.max() > 0)
    assert "success" not in data.buffer.replay.storage[0].keys(True)  # the buffer keeps transition fields only
    module = ExplorerModule(ENV, SMALL, offline_updates=0, online_steps=8, updates_per_step=4, batch_size=32,
                            eval_every=0, log_info_keys=["x_progress"])
    with pytest.raises(ConfigError, match="x_progress.*not in ooo/PointMassWall-v1's info"):
        _trainer().fit(module, datamodule=ReplayDataModule(dataset=str(tiny_dataset)))


def test_utd_ratio_below_one_collects_more_steps_than_it_updates(tiny_dataset):
    module = ExplorerModule(ENV, SMALL, offline_updates=8, online_steps=40, utd_ratio=0.5, updates_per_step=4,
                            batch_size=32, eval_every=0)
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer().fit(module, datamodule=data)
    assert module.frames_per_step == 8 and module.env_steps == 40 and data.buffer.num_online == 40
    assert module.num_updates == 4 * (2 + 5)  # 2 offline steps, then 5 online steps of 8 frames
    with pytest.raises(ConfigError, match="whole number of environment steps"):
        ExplorerModule(ENV, SMALL, utd_ratio=0.3, updates_per_step=4)


def test_bonus_scale_zero_removes_the_bonus_and_its_optimiser():
    module = ExplorerModule(ENV, SMALL, bonus=partial(RNDBonus), bonus_scale=0.0)
    assert module.bonus is None
    assert [name for name, _, _ in module.optimizer_specs()] == ["value", "actor", "qvalue"]


def test_exploiter_trains_on_a_prefix_and_reports_its_env_steps(tiny_dataset):
    explorer = ExplorerModule(ENV, SMALL, bonus=None, offline_updates=4, online_steps=24, updates_per_step=4, batch_size=16, eval_every=0)
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer().fit(explorer, datamodule=data)
    exploiter = ExploiterModule(ENV, SMALL, updates=8, online_steps_limit=10, updates_per_step=4, batch_size=16, eval_every=0)
    phase3 = ReplayDataModule()
    phase3.attach(data.buffer)
    _trainer().fit(exploiter, datamodule=phase3)
    assert len(exploiter.buffer) == data.buffer.num_offline + 10  # it sampled from the prefix only
    assert exploiter.env_steps == 10 and exploiter.num_updates == 8


def test_cosine_actor_schedule_decays_only_the_actor_learning_rate_to_zero(tiny_dataset):
    """IQL's offline recipe: the actor's rate follows a cosine from its value to 0 over the
    module's updates, one scheduler step per gradient update; V and Q keep theirs."""
    exploiter = ExploiterModule(ENV, SMALL, updates=12, updates_per_step=4, batch_size=16, eval_every=0,
                                actor_lr_schedule="cosine")
    data = ReplayDataModule(dataset=str(tiny_dataset))
    trainer = _trainer()
    trainer.fit(exploiter, datamodule=data)
    rates = {name: opt.param_groups[0]["lr"] for name, opt in zip(exploiter._optimizer_names, exploiter.optimizers())}
    assert rates["actor"] == pytest.approx(0.0, abs=1e-12)
    assert rates["value"] == rates["qvalue"] == 3e-4
    schedule = exploiter.lr_schedulers()
    assert schedule.last_epoch == exploiter.num_updates == schedule.T_max == 12
    with pytest.raises(ConfigError, match="actor_lr_schedule must be one of"):
        ExploiterModule(ENV, SMALL, actor_lr_schedule="linear")


def test_non_finite_loss_stops_with_phase_and_step(tiny_dataset):
    module = ExplorerModule(ENV, SMALL, bonus=None, offline_updates=8, online_steps=0, updates_per_step=2,
                            batch_size=16, reward_bias=-1.0, reward_scale=1e38, eval_every=0)  # (-1e38)^2: inf
    before = {k: v.clone() for k, v in module.loss.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"explorer offline: non-finite loss \['qvalue'\] at update 0"):
        _trainer().fit(module, datamodule=ReplayDataModule(dataset=str(tiny_dataset)))
    # stopped before the optimiser step: the value step ran, the critic weights are untouched
    after = module.loss.state_dict()
    assert torch.equal(before["qvalue.net.0.weight"], after["qvalue.net.0.weight"])


def test_wrong_sizes_between_data_and_env_are_reported(tmp_path, tiny_dataset):
    module = ExploiterModule("Pendulum-v1", SMALL, updates=4, eval_every=0)
    with pytest.raises(Exception, match="observations"):
        _trainer().fit(module, datamodule=ReplayDataModule(dataset=str(tiny_dataset)))


def test_nvml_based_cuda_check_is_off_during_fit_and_restored_after(tiny_dataset, monkeypatch):
    import os

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # as `import lightning` leaves it
    seen = {}

    class Probe(ExploiterModule):
        def before_updates(self, batch_idx):
            seen["during"] = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")

    module = Probe(ENV, SMALL, updates=2, updates_per_step=2, batch_size=16, eval_every=0)
    _trainer().fit(module, datamodule=ReplayDataModule(dataset=str(tiny_dataset)))
    assert seen["during"] is None
    assert os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1"


def test_explorer_can_continue_from_a_saved_buffer(tiny_dataset, tmp_path):
    first = ReplayDataModule(dataset=str(tiny_dataset))
    explorer = ExplorerModule(ENV, SMALL, bonus=None, offline_updates=4, online_steps=8, updates_per_step=4,
                              batch_size=16, eval_every=0)
    _trainer().fit(explorer, datamodule=first)
    first.save(tmp_path / "buffer")
    # a second explorer on the saved buffer: the storage grows to hold its online steps too
    again = ReplayDataModule(buffer=str(tmp_path / "buffer"))
    explorer2 = ExplorerModule(ENV, SMALL, bonus=None, offline_updates=0, online_steps=12, updates_per_step=4,
                               batch_size=16, eval_every=0)
    _trainer().fit(explorer2, datamodule=again)
    assert again.buffer.num_online == 8 + 12
    assert len(again.buffer) == again.buffer.num_offline + 20 <= again.buffer.info.capacity


def test_calql_explorer_stores_monte_carlo_returns_for_finished_episodes(tiny_dataset):
    from ooo_lightning.data.returns import PENDING, monte_carlo_returns
    from ooo_lightning.losses import CalQLLoss

    loss = partial(CalQLLoss, hidden_dims=(16, 16), num_sampled_actions=2, sparse_failure_reward=0.0, gamma=0.9)
    module = ExplorerModule(
        ENV, loss, bonus=None, offline_updates=4, online_steps=200, updates_per_step=4,
        batch_size=16, eval_every=0, reward_bias=-1.0,
    )
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer().fit(module, datamodule=data)
    rows = data.buffer.rows_between(0, len(data.buffer))
    stored = rows["mc_return"].reshape(-1)
    shaped = rows["next", "reward"].reshape(-1) - 1.0
    done = rows["next", "done"].reshape(-1)
    n_off = data.buffer.num_offline
    # Offline data: failures of a sparse task get r_fail / (1 - gamma) = -10 at every step.
    expected_offline = monte_carlo_returns(shaped[:n_off], done[:n_off], 0.9, failure_reward=-1.0)
    assert torch.allclose(stored[:n_off], expected_offline)
    assert torch.all(expected_offline == -10.0)
    # Online: episodes that ended have their returns (150-step limit: one ended in 200
    # steps), the running one is still pending.
    online_done = done[n_off:]
    last_end = int(torch.nonzero(online_done).max()) + 1
    assert last_end >= 150
    expected_online = monte_carlo_returns(shaped[n_off:n_off + last_end], online_done[:last_end], 0.9, failure_reward=-1.0)
    assert torch.allclose(stored[n_off:n_off + last_end], expected_online)
    assert torch.all(stored[n_off + last_end:] == PENDING)


def test_count_bonus_counts_each_buffer_row_once(tiny_dataset):
    from ooo_lightning.exploration import CountBonus

    module = ExplorerModule(
        ENV, SMALL, bonus=partial(CountBonus, cell_size=0.05), offline_updates=8, online_steps=24,
        updates_per_step=4, batch_size=16, eval_every=0,
    )
    assert [name for name, _, _ in module.optimizer_specs()] == ["value", "actor", "qvalue"]
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer().fit(module, datamodule=data)
    assert int(module.bonus.counts.sum()) == len(data.buffer) == data.buffer.num_offline + 24


def test_explorer_collects_and_evaluates_under_bf16_mixed_precision(tiny_dataset):
    # Collection and evaluation happen inside training steps, i.e. under bf16 autocast.
    from ooo_lightning.losses import CalQLLoss

    loss = partial(CalQLLoss, hidden_dims=(16, 16), num_sampled_actions=2)
    explorer = ExplorerModule(ENV, loss, bonus=partial(RNDBonus, hidden_dims=(16,), embedding_dim=8),
                              offline_updates=8, online_steps=16, updates_per_step=4, batch_size=16,
                              eval_every=2, eval_episodes=1)
    data = ReplayDataModule(dataset=str(tiny_dataset))
    _trainer(precision="bf16-mixed").fit(explorer, datamodule=data)
    assert explorer.env_steps == 16
    assert data.buffer.rows_between(0, len(data.buffer))["action"].dtype == torch.float32
