"""``compile: true``: the same update as eager, through torch.compile (issue 14)."""

from functools import partial

import pytest
import torch
from lightning.pytorch import Trainer

from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.exploration import RNDBonus
from ooo_lightning.losses import CalQLLoss, IQLLoss, SACLoss
from ooo_lightning.modules import ExploiterModule, ExplorerModule

ENV = "ooo/PointMassWall-v1"
LOSSES = {
    "iql": partial(IQLLoss, hidden_dims=(32, 32)),
    "calql": partial(CalQLLoss, hidden_dims=(32, 32), num_sampled_actions=2),
    "sac": partial(SACLoss, hidden_dims=(32, 32)),
    "sac_delayed_actor": partial(SACLoss, hidden_dims=(32, 32), actor_update_every=2),
}


def _fit(module, dataset) -> None:
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=ReplayDataModule(dataset=str(dataset)))


@pytest.fixture
def same_random_draws(monkeypatch):
    """Inductor draws its own random numbers unless told to call the eager ones. And a graph
    traced again on every update (a counter inside a stage did that) fails instead of
    quietly falling back to eager once dynamo's limit is hit."""
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "fallback_random", True)
    monkeypatch.setattr(dynamo, "fail_on_recompile_limit_hit", True)
    torch._dynamo.reset()  # each new loss is traced anew: earlier tests' entries count too


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_compiled_exploiter_trains_as_the_eager_one(name, tiny_dataset, same_random_draws):
    weights = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        module = ExploiterModule(ENV, LOSSES[name], updates=24, updates_per_step=4, batch_size=32, eval_every=0,
                                 actor_lr_schedule="cosine", compile=compiled)
        _fit(module, tiny_dataset)
        assert module.num_updates == 24
        weights[compiled] = {k: v.clone() for k, v in module.loss.state_dict().items()}
        assert (module.compile_seconds is not None) == compiled
    changed = 0
    for key, eager in weights[False].items():
        torch.testing.assert_close(weights[True][key], eager, rtol=1e-4, atol=1e-5, msg=key)
        changed += 1
    assert changed > 0


def test_a_compiled_explorer_with_a_bonus_trains_as_the_eager_one(tiny_dataset, same_random_draws):
    """After an exploiter of the same loss class in the same process (the pipeline's order
    across seeds): the graphs traced on its batches, which have no bonus, must not serve
    the explorer's, which have one."""
    torch.manual_seed(0)
    _fit(ExploiterModule(ENV, LOSSES["iql"], updates=8, updates_per_step=4, batch_size=32, eval_every=0, compile=True),
         tiny_dataset)
    weights = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        module = ExplorerModule(ENV, LOSSES["iql"], bonus=partial(RNDBonus, hidden_dims=(32,), embedding_dim=16),
                                offline_updates=16, online_steps=16, updates_per_step=4, batch_size=32, eval_every=0,
                                compile=compiled)
        _fit(module, tiny_dataset)
        weights[compiled] = {k: v.clone() for k, v in module.state_dict().items()}
    for key, eager in weights[False].items():
        torch.testing.assert_close(weights[True][key], eager, rtol=1e-4, atol=1e-5, msg=key)
