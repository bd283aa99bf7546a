import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.data.d4rl import DatasetError
from ooo_lightning.data.buffer import BufferInfo, load_buffer, make_replay_buffer, sample_indices, save_buffer


def _transitions(n: int, start: int = 0) -> TensorDict:
    obs = torch.arange(start, start + n, dtype=torch.float32).reshape(n, 1).repeat(1, 2)
    return TensorDict(
        {
            "observation": obs,
            "action": torch.zeros(n, 2),
            ("next", "observation"): obs + 1,
            ("next", "reward"): (torch.arange(start, start + n) % 7 == 0).float().reshape(n, 1),
            ("next", "terminated"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "truncated"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
        },
        batch_size=[n],
    )


def test_save_load_round_trip(tmp_path):
    rb = make_replay_buffer(100)
    rb.extend(_transitions(30))
    rb.extend(_transitions(12, start=30))
    info = BufferInfo(capacity=100, num_offline=30, num_online=12, observation_dim=2, action_dim=2, env_id="x")
    save_buffer(rb, tmp_path / "buffer", info)
    loaded, loaded_info = load_buffer(tmp_path / "buffer")
    assert loaded_info == info
    assert len(loaded) == 42
    original = rb.storage[torch.arange(42)]
    again = loaded.storage[torch.arange(42)]
    for key in original.keys(include_nested=True, leaves_only=True):
        assert torch.equal(original.get(key), again.get(key)), key
    # still appendable after loading
    loaded.extend(_transitions(3, start=42))
    assert len(loaded) == 45


def test_load_rejects_a_folder_that_is_not_a_buffer(tmp_path):
    with pytest.raises(DatasetError, match="not a saved ooo-lightning replay buffer"):
        load_buffer(tmp_path)


def test_load_detects_a_count_mismatch(tmp_path):
    rb = make_replay_buffer(10)
    rb.extend(_transitions(5))
    save_buffer(rb, tmp_path / "b", BufferInfo(10, 5, 3, 2, 2))
    with pytest.raises(DatasetError, match="damaged"):
        load_buffer(tmp_path / "b")


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
