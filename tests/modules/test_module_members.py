"""A module with ``seeds``: several agents trained as one, each as it would train alone (issue 14)."""

from functools import partial

import pytest
import torch
from lightning.pytorch import Trainer

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.data.returns import MC_RETURN_KEY
from ooo_lightning.exploration import CountBonus, RNDBonus
from ooo_lightning.losses import CalQLLoss, IQLLoss, SACLoss
from ooo_lightning.modules import ExploiterModule, ExplorerModule, NonFiniteLossError

ENV = "ooo/PointMassWall-v1"
LOSSES = {"iql": partial(IQLLoss, hidden_dims=(32, 32)), "sac": partial(SACLoss, hidden_dims=(32, 32), actor_update_every=2)}


def _fit(dataset, seeds, loss="iql", **kw) -> ExploiterModule:
    module = ExploiterModule(ENV, LOSSES[loss], updates=24, updates_per_step=4, batch_size=32, eval_every=0,
                             positive_samples=2, seeds=seeds, **kw)
    Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(module, datamodule=ReplayDataModule(dataset=str(dataset)))
    return module


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_members_train_as_each_seed_alone(tiny_dataset, loss):
    """Initial weights, batches and the loss's noise all come from the member's own seed:
    two members fitted together end where each ends fitted alone."""
    together = _fit(tiny_dataset, [3, 5], loss)
    for k, seed in enumerate((3, 5)):
        alone = _fit(tiny_dataset, [seed], loss).loss.member(0).state_dict()
        member = together.loss.member(k).state_dict()
        for key, value in alone.items():
            torch.testing.assert_close(member[key], value, msg=f"seed {seed}: {key}")
    first, second = (together.loss.member(k).state_dict() for k in (0, 1))
    assert not torch.equal(first["actor.net.0.weight"], second["actor.net.0.weight"])
    results = together.evaluate_members(episodes=2)
    assert len(results) == 2 and len(together.policies()) == 2


def test_each_members_evaluation_is_logged_and_drawn(tiny_dataset, tmp_path, figures):
    from lightning.pytorch.loggers import CSVLogger

    from ooo_lightning.plots import plot_learning_curves, read_metrics

    module = ExploiterModule(ENV, LOSSES["iql"], updates=16, updates_per_step=4, batch_size=32, eval_every=2,
                             eval_episodes=1, seeds=[3, 5])
    Trainer(accelerator="cpu", max_epochs=1, logger=CSVLogger(tmp_path, name="exploiter", version=""), log_every_n_steps=1,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(
        module, datamodule=ReplayDataModule(dataset=str(tiny_dataset)))
    metrics = read_metrics(tmp_path / "exploiter" / "metrics.csv")
    assert {"eval/member_0/success_rate", "eval/member_1/return_mean", "eval/success_rate"} <= metrics.keys()
    assert plot_learning_curves(tmp_path).is_file()
    success_axis = figures[-1].axes[0]
    assert len(success_axis.lines) == 3  # the mean and each member
    assert {line.get_label() for line in success_axis.lines} >= {"exploiter (members' mean)", "exploiter members"}


def test_a_members_nan_stops_the_fit_naming_the_member_and_its_seed(tiny_dataset):
    module = ExploiterModule(ENV, LOSSES["iql"], updates=8, updates_per_step=4, batch_size=32, eval_every=0,
                             seeds=[3, 5, 7])
    with torch.no_grad():
        module.loss.stacked.value.net[0].weight[1].fill_(float("nan"))
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match=r"member\(s\) 1 \(seed 5\)"):
        trainer.fit(module, datamodule=ReplayDataModule(dataset=str(tiny_dataset)))


def test_no_seeds_are_refused():
    with pytest.raises(ConfigError, match="at least one seed"):
        ExploiterModule(ENV, LOSSES["iql"], seeds=[])


def _explorer_fit(dataset, seeds, loss=LOSSES["iql"], bonus=partial(RNDBonus, hidden_dims=(32,), embedding_dim=16), **kw):
    module = ExplorerModule(ENV, loss, bonus=bonus,
                            offline_updates=8, online_steps=48, random_steps=8, updates_per_step=4, batch_size=32,
                            eval_every=0, seeds=seeds, **kw)
    data = ReplayDataModule(dataset=str(dataset))
    Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(module, datamodule=data)
    return module, data.buffer


EXPLORERS = {
    "iql_rnd": {},
    # Cal-QL reads each member's Monte-Carlo returns, filled per member stream as its episodes
    # end: episodes of 10 steps end within the 48 collected.
    "calql_rnd": {"loss": partial(CalQLLoss, hidden_dims=(32, 32), num_sampled_actions=2),
                  "env_kwargs": {"max_episode_steps": 10}},
    # Each member's table counts the offline data and its own online transitions.
    "iql_counts": {"bonus": partial(CountBonus, cell_size=0.1)},
}


@pytest.mark.parametrize("explorer", sorted(EXPLORERS))
def test_explorer_members_collect_and_train_as_each_seed_alone(tiny_dataset, explorer):
    """Each member has its own environment, actions, bonus, batches and noise from its seed:
    two explorers collected and trained as one end where each seed alone ends, with the same
    transitions (to float rounding: a batched product rounds as a single one only nearly),
    each member's online data in a block of its own."""
    kw = EXPLORERS[explorer]
    together, buffer = _explorer_fit(tiny_dataset, [3, 5], **kw)
    assert (buffer.info.member_seeds, buffer.info.online_segments) == ([3, 5], [48, 48])
    assert together.member_env_steps() == [48, 48]
    for k, seed in enumerate((3, 5)):
        alone, alone_buffer = _explorer_fit(tiny_dataset, [seed], **kw)
        mine, its = buffer.rows(buffer.member_online_index(k)), alone_buffer.online_rows()
        keys = ["observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done")]
        if together.loss.uses_mc_returns:
            assert torch.isfinite(mine.get(MC_RETURN_KEY)).any()  # the ended episodes calibrate
            keys.append(MC_RETURN_KEY)
        for key in keys:
            torch.testing.assert_close(mine.get(key), its.get(key), atol=1e-5, rtol=0, msg=f"seed {seed}: {key}")
        for name, ours, theirs in (("loss", together.loss.member(k), alone.loss.member(0)),
                                   ("bonus", together.bonus.member(k), alone.bonus.member(0))):
            theirs = theirs.state_dict()
            for key, value in ours.state_dict().items():
                torch.testing.assert_close(value, theirs[key], atol=1e-5, rtol=1e-4, msg=f"seed {seed}: {name} {key}")
        if explorer == "iql_counts":  # the offline data and its own 48 steps, each once
            assert int(together.bonus.member(k).counts.sum()) == buffer.num_offline + 48
    first, second = (buffer.rows(buffer.member_online_index(k))["action"] for k in (0, 1))
    assert not torch.allclose(first, second)  # the members act apart
    assert together.extra_metrics()["bonus/online_max"] > 0


def test_phase_three_on_explorer_members_data_takes_the_same_seeds(tiny_dataset):
    _, buffer = _explorer_fit(tiny_dataset, [3, 5])

    def fit(seeds):
        data = ReplayDataModule()
        data.attach(buffer)
        module = ExploiterModule(ENV, LOSSES["iql"], updates=8, updates_per_step=4, batch_size=32, eval_every=0,
                                 seeds=seeds)
        Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False).fit(module, datamodule=data)
        return module

    assert fit([3, 5]).member_env_steps() == [48, 48]
    for seeds in (None, [5, 3], [3]):
        with pytest.raises(ConfigError, match=r"seeds: \[3, 5\] \(member k on explorer k's data\)"):
            fit(seeds)


PREFIX_LOSSES = {"iql": LOSSES["iql"], "calql": partial(CalQLLoss, hidden_dims=(32, 32), num_sampled_actions=2)}


@pytest.mark.parametrize("loss", sorted(PREFIX_LOSSES))
def test_prefix_members_train_as_each_prefix_alone(tiny_dataset, loss):
    """The curve against online steps in one fit: member k samples only the offline rows and
    the first T_k online ones, and ends where the same exploiter fitted on the buffer's prefix
    T_k alone ends. Cal-QL: the episode a prefix cuts is running in the prefix alone (returns
    PENDING), though the whole buffer holds how it ended."""
    from ooo_lightning.data.buffer import OfflineOnlineBuffer
    from ooo_lightning.data.datamodule import ReplayDataModule as Data

    data = Data(dataset=str(tiny_dataset))
    base = ExploiterModule(ENV, PREFIX_LOSSES[loss], updates=16, updates_per_step=4, batch_size=32, eval_every=0, seed=7)
    buffer = data.prepare(base.data_request())
    # Pretend the last 200 offline rows were collected online, as episodes ending at online
    # rows 30, 80 and 140 (then one still running): a buffer with an online part.
    info = buffer.info
    rows = buffer.rows_between(0, len(buffer))
    online = OfflineOnlineBuffer.empty(type(info)(**{**info.__dict__, "num_offline": len(rows) - 200, "num_online": 0}))
    online.replay.extend(rows[: len(rows) - 200])
    collected = rows[len(rows) - 200 :].clone()
    for key in ("done", "truncated", "terminated"):
        collected.get(("next", key)).zero_()
    for key in ("done", "truncated"):
        collected.get(("next", key))[[30, 80, 140]] = True
    online.add_online(collected)

    def fit(module, buffer=online):
        shared = Data()
        shared.attach(buffer)
        Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False).fit(module, datamodule=shared)
        return module

    steps = [0, 50, 200]
    together = fit(base.prefix_members(steps))
    assert together.member_env_steps() == steps
    if loss == "calql":  # T = 50 cuts the episode of online rows 31-80: finite here, PENDING in the prefix
        cut = online.rows(online.num_offline + torch.arange(31, 50)).get(MC_RETURN_KEY)
        assert torch.isfinite(cut).all()
        assert online.prefix_open_rows(50).tolist() == (online.num_offline + torch.arange(31, 50)).tolist()
    for k, t in enumerate(steps):
        alone = fit(base.prefix_members([t]), online.prefix(t)).loss.member(0).state_dict()
        member = together.loss.member(k).state_dict()
        for key, value in alone.items():
            torch.testing.assert_close(member[key], value, msg=f"T={t}: {key}")
    assert not torch.equal(together.loss.member(0).state_dict()["actor.net.0.weight"],
                           together.loss.member(2).state_dict()["actor.net.0.weight"])


def test_members_train_under_bf16_mixed_as_each_seed_alone(tiny_dataset):
    """Autocast reaches into vmap: under bf16-mixed two members end near where each seed
    alone ends (bf16 rounds a batched product and a single one alike only nearly)."""
    def fit(seeds):
        module = ExploiterModule(ENV, LOSSES["iql"], updates=16, updates_per_step=4, batch_size=32, eval_every=0,
                                 seeds=seeds)
        Trainer(accelerator="cpu", precision="bf16-mixed", max_epochs=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False).fit(
            module, datamodule=ReplayDataModule(dataset=str(tiny_dataset)))
        return module

    together = fit([3, 5])
    for k, seed in enumerate((3, 5)):
        alone = fit([seed]).loss.member(0).state_dict()
        member = together.loss.member(k).state_dict()
        for key, value in alone.items():
            torch.testing.assert_close(member[key], value, rtol=0.05, atol=2e-3, msg=f"seed {seed}: {key}")
