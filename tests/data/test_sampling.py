import torch

from ooo_lightning.data.buffer import BufferInfo, OfflineOnlineBuffer
from ooo_lightning.data.sampling import BatchStream, SamplingSpec, sample_indices
from test_buffer import _buffer, _transitions

SPEC = SamplingSpec(batch_size=16, updates_per_step=3)


def test_batches_are_stacked_and_counted():
    batches = list(BatchStream(_buffer(40, 0), SPEC, num_batches=5))
    assert len(batches) == 5
    assert batches[0].batch_size == torch.Size([3, 16])


def test_a_resumed_stream_yields_the_batches_that_remain():
    stream = BatchStream(_buffer(40, 0), SPEC, num_batches=5, batches_done=lambda: 3)
    assert len(stream) == 5 and len(list(stream)) == 2


def test_a_prefix_limits_the_samples_to_offline_plus_first_online_steps():
    prefix = _buffer(40, 60).prefix(10)
    for batch in BatchStream(prefix, SPEC, num_batches=20):
        assert batch["observation"][..., 0].max() < 50


def test_positive_samples_come_from_rewarding_transitions():
    spec = SamplingSpec(batch_size=16, updates_per_step=3, positive_samples=4)
    for batch in BatchStream(_buffer(40, 0), spec, num_batches=5):
        rewards = batch.get(("next", "reward"))[:, :4]
        assert (rewards > 0).all()


def test_empty_buffer_yields_empty_batches_until_data_arrives():
    buffer = OfflineOnlineBuffer.empty(BufferInfo(10, 0, 0, 2, 2))
    it = iter(BatchStream(buffer, SPEC, num_batches=2))
    assert next(it).batch_size.numel() == 0
    buffer.add_online(_transitions(4))
    assert next(it).batch_size == torch.Size([3, 16])
    assert buffer.num_online == 4


def test_sample_indices_respects_the_prefix_and_upsamples_positives():
    g = torch.Generator().manual_seed(0)
    idx = sample_indices(50, num_batches=4, batch_size=32, generator=g)
    assert idx.shape == (4, 32) and idx.min() >= 0 and idx.max() < 50
    positives = torch.tensor([3, 17])
    idx = sample_indices(50, 4, 32, positives, positive_samples=8, generator=g)
    assert set(idx[:, :8].reshape(-1).tolist()) <= {3, 17}
    # no positives yet: plain uniform sampling, no error
    idx = sample_indices(50, 2, 32, torch.empty(0, dtype=torch.long), positive_samples=8, generator=g)
    assert idx.shape == (2, 32)


def test_symmetric_sampling_takes_half_of_each_batch_from_the_offline_rows():
    g = torch.Generator().manual_seed(0)
    idx = sample_indices(1000, 4, 10, num_offline=900, offline_fraction=0.5, generator=g)
    assert torch.all(idx[:, :5] < 900) and torch.all(idx[:, 5:] >= 900)
    # Before any online row exists, every sample is offline.
    idx = sample_indices(900, 4, 10, num_offline=900, offline_fraction=0.5, generator=g)
    assert torch.all(idx < 900)
    # Positives still take the first slots.
    idx = sample_indices(1000, 4, 10, torch.tensor([950]), 2, num_offline=900, offline_fraction=0.5, generator=g)
    assert torch.all(idx[:, :2] == 950)


def test_on_member_streams_each_member_draws_the_offline_rows_and_its_own_explorers_rows():
    """Member k of a module trained on several explorers' data sees the offline rows (< 10)
    and explorer k's rows (100 (k + 1) + t) only: while they are collected (interleaved) and once
    split into blocks, and its positives come from that view as well."""
    from test_buffer import _member_buffer

    spec = SamplingSpec(batch_size=64, updates_per_step=2, positive_samples=4)
    buffer = _member_buffer()
    for split in (False, True):
        if split:
            buffer.split_members()
        generators = [torch.Generator().manual_seed(s) for s in (4, 7)]
        for batch in BatchStream(buffer, spec, num_batches=4, member_generators=generators):
            assert batch.batch_size == torch.Size([2, 2, 64])
            obs = batch["observation"][..., 0].long()
            for k in range(2):
                mine = obs[:, k]
                assert ((mine < 10) | ((mine >= 100 * (k + 1)) & (mine < 100 * (k + 1) + 5))).all()
                assert (mine >= 100).any()  # its online rows are drawn too
            assert (batch.get(("next", "reward"))[:, :, :4] > 0).all()
    limited = BatchStream(buffer, spec, num_batches=3, member_generators=generators, member_online_steps=[1, 2])
    for batch in limited:
        obs = batch["observation"][..., 0].long()
        assert ((obs[:, 0] < 10) | (obs[:, 0] == 100)).all() and ((obs[:, 1] < 10) | (obs[:, 1] == 200) | (obs[:, 1] == 201)).all()


def test_prefix_members_on_two_ranks_blocks_draw_each_blocks_first_steps():
    """The curve together on a buffer two DDP ranks collected: member T draws the offline rows
    and the first T / 2 rows of each rank's block, as buffer.prefix(T) holds them."""
    from test_buffer import _two_rank_buffer

    buffer = _two_rank_buffer()  # offline rows 0-9, rank 0's rows 10-15, rank 1's 16-21
    generators = [torch.Generator().manual_seed(1) for _ in range(3)]
    seen = [set() for _ in range(3)]
    for batch in BatchStream(buffer, SamplingSpec(batch_size=64, updates_per_step=2), num_batches=5,
                             member_generators=generators, member_online_steps=[0, 3, 12]):
        for k in range(3):
            seen[k] |= set(batch["observation"][:, k, :, 0].long().reshape(-1).tolist())
    offline = set(range(10))
    assert seen[0] == offline and seen[1] == offline | {10, 11, 16} and seen[2] == set(range(22))
