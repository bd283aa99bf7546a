from types import SimpleNamespace

import torch

from ooo_lightning.data.buffer import BufferInfo, make_replay_buffer
from ooo_lightning.data.datamodule import ReplayDataModule, _StackedBatches
from test_buffer import _transitions


def _module(**kw):
    defaults = dict(
        num_training_steps=5,
        updates_per_step=3,
        batch_size=16,
        positive_samples=0,
        offline_fraction=None,
        sampling_end=lambda buffer_len, num_offline: buffer_len,
        steps_done=0,
    )
    defaults.update(kw)
    return SimpleNamespace(**defaults)


def _data(n_offline: int, n_online: int) -> ReplayDataModule:
    rb = make_replay_buffer(n_offline + n_online)
    rb.extend(_transitions(n_offline + n_online))
    dm = ReplayDataModule()
    dm.attach(rb, BufferInfo(n_offline + n_online, n_offline, n_online, 2, 2))
    return dm


def test_batches_are_stacked_and_counted():
    batches = list(_StackedBatches(_data(40, 0), _module()))
    assert len(batches) == 5
    assert batches[0].batch_size == torch.Size([3, 16])


def test_prefix_limits_the_samples_to_offline_plus_first_online_steps():
    module = _module(sampling_end=lambda buffer_len, num_offline: num_offline + 10, num_training_steps=20)
    for batch in _StackedBatches(_data(40, 60), module):
        assert batch["observation"][..., 0].max() < 50


def test_positive_samples_come_from_rewarding_transitions():
    module = _module(positive_samples=4)
    for batch in _StackedBatches(_data(40, 0), module):
        rewards = batch.get(("next", "reward"))[:, :4]
        assert (rewards > 0).all()


def test_empty_buffer_yields_empty_batches_until_data_arrives():
    dm = ReplayDataModule()
    dm.attach(make_replay_buffer(10), BufferInfo(10, 0, 0, 2, 2))
    it = iter(_StackedBatches(dm, _module(num_training_steps=2)))
    assert next(it).batch_size.numel() == 0
    dm.add_online(_transitions(4))
    assert next(it).batch_size == torch.Size([3, 16])
    assert dm.info.num_online == 4


def _two_rank_data(module) -> ReplayDataModule:
    # 10 offline rows, then rank 0's 6 online rows and rank 1's 6 (as a DDP explorer leaves them).
    dm = _data(10, 12)
    dm.info.online_segments = [6, 6]
    dm.trainer = SimpleNamespace(lightning_module=module)
    return dm


def test_a_prefix_of_a_two_rank_buffer_takes_the_first_steps_of_each_rank():
    module = _module(sampling_end=lambda buffer_len, num_offline: min(buffer_len, num_offline + 4), online_capacity=0,
                     observation_dim=2, action_dim=2, env_id="x", mc_return_settings=lambda: None)
    dm = _two_rank_data(module)
    dm.setup("fit")
    obs = dm.replay.storage[torch.arange(len(dm.replay))]["observation"][:, 0].tolist()
    assert obs == [*range(10), 10, 11, 16, 17]  # offline, rank 0's first 2, rank 1's first 2
    assert (dm.info.num_online, dm.info.online_segments) == (4, [2, 2])


def test_returns_do_not_run_across_the_ranks_blocks():
    from ooo_lightning.data.returns import MC_RETURN_KEY

    module = _module(online_capacity=0, observation_dim=2, action_dim=2, env_id="x",
                     mc_return_settings=lambda: (0.5, None), shape_reward=lambda r: r)
    dm = _two_rank_data(module)
    done = dm.replay.storage[torch.arange(22)][("next", "done")]
    done[18] = True  # rank 0's block ends mid-episode; rank 1's first episode ends at row 18
    dm.replay.storage.set(slice(0, 22), dm.replay.storage[torch.arange(22)].set(("next", "done"), done), set_cursor=False)
    dm.setup("fit")
    returns = dm.replay.storage[torch.arange(22)][MC_RETURN_KEY].reshape(-1)
    # Rank 0's unfinished episode stays pending: it is not joined to rank 1's finished one.
    assert torch.isinf(returns[10:16]).all()
    assert torch.isfinite(returns[16:19]).all() and torch.isinf(returns[19:]).all()
