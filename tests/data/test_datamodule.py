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
