"""A module with ``seeds``: several agents trained as one, each as it would train alone (issue 14)."""

from functools import partial

import pytest
import torch
from lightning.pytorch import Trainer

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.losses import IQLLoss, SACLoss
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


def test_no_seeds_and_an_explorer_with_members_are_refused():
    with pytest.raises(ConfigError, match="at least one seed"):
        ExploiterModule(ENV, LOSSES["iql"], seeds=[])
    with pytest.raises(ConfigError, match="exploiter only"):
        ExplorerModule(ENV, LOSSES["iql"], seeds=[0, 1])


def test_prefix_members_train_as_each_prefix_alone(tiny_dataset):
    """The curve against online steps in one fit: member k samples only the offline rows and
    the first T_k online ones, and ends where the same exploiter fitted on T_k alone ends."""
    from ooo_lightning.data.buffer import OfflineOnlineBuffer
    from ooo_lightning.data.datamodule import ReplayDataModule as Data

    data = Data(dataset=str(tiny_dataset))
    base = ExploiterModule(ENV, LOSSES["iql"], updates=16, updates_per_step=4, batch_size=32, eval_every=0, seed=7)
    buffer = data.prepare(base.data_request())
    # Pretend the last 200 offline rows were collected online: a buffer with an online part.
    info = buffer.info
    rows = buffer.rows_between(0, len(buffer))
    online = OfflineOnlineBuffer.empty(type(info)(**{**info.__dict__, "num_offline": len(rows) - 200, "num_online": 0}))
    online.replay.extend(rows[: len(rows) - 200])
    online.add_online(rows[len(rows) - 200 :])

    def fit(module):
        shared = Data()
        shared.attach(online)
        Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False).fit(module, datamodule=shared)
        return module

    steps = [0, 50, 200]
    together = fit(base.prefix_members(steps))
    assert together.member_env_steps() == steps
    for k, t in enumerate(steps):
        alone = fit(base.prefix_members([t])).loss.member(0).state_dict()
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
