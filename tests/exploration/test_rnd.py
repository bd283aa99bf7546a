import numpy as np
import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.exploration import RNDBonus, RunningMeanStd


def test_running_mean_std_matches_numpy():
    stats = RunningMeanStd((3,), epsilon=0.0 + 1e-12)
    rng = np.random.default_rng(0)
    chunks = [rng.normal(2.0, 3.0, size=(n, 3)) for n in (5, 17, 40)]
    for chunk in chunks:
        stats.update(torch.as_tensor(chunk, dtype=torch.float32))
    allx = np.concatenate(chunks)
    np.testing.assert_allclose(stats.mean.numpy(), allx.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var.numpy(), allx.var(0), rtol=1e-3)


def test_bonus_falls_on_states_it_was_trained_on():
    torch.manual_seed(0)
    rnd = RNDBonus(2, hidden_dims=(64,), embedding_dim=64, learning_rate=1e-3, update_fraction=1.0)
    opt = torch.optim.Adam(rnd.predictor.parameters(), lr=1e-3)
    seen = torch.randn(256, 2) * 0.1 + torch.tensor([-1.0, -1.0])
    unseen = torch.randn(256, 2) * 0.1 + torch.tensor([1.5, 1.5])
    # Fix the normalisation first (from both regions) so the raw errors are comparable.
    rnd.observation_stats.update(torch.cat([seen, unseen]))
    before_seen = rnd.raw_error(seen).mean()
    for _ in range(300):
        batch = TensorDict({("next", "observation"): seen[torch.randint(0, 256, (64,))]}, batch_size=[64])
        _, loss = rnd.compute(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after_seen, after_unseen = rnd.raw_error(seen).mean(), rnd.raw_error(unseen).mean()
    assert after_seen < 0.2 * before_seen
    assert after_seen < 0.2 * after_unseen


def test_bonus_is_per_sample_normalised_and_predictor_trains_on_a_fraction():
    torch.manual_seed(0)
    rnd = RNDBonus(3, hidden_dims=(16,), embedding_dim=8, update_fraction=0.25)
    batch = TensorDict({("next", "observation"): torch.randn(40, 3)}, batch_size=[40])
    bonus, loss = rnd.compute(batch)
    assert bonus.shape == (40,) and not bonus.requires_grad and (bonus >= 0).all()
    assert loss.requires_grad
    # Evaluation mode: same bonus formula, no statistics update, no loss.
    count = rnd.error_stats.count.clone()
    bonus2, loss2 = rnd.compute(batch, update=False)
    assert loss2 is None and torch.equal(rnd.error_stats.count, count)


def test_moving_std_forgets_early_large_errors_where_the_cumulative_one_does_not():
    torch.manual_seed(0)
    cumulative, moving = RunningMeanStd(()), RunningMeanStd((), momentum=0.05)
    for scale, batches in ((10.0, 100), (1.0, 300)):
        for _ in range(batches):
            x = torch.randn(256) * scale + 3.0
            cumulative.update(x)
            moving.update(x)
    assert moving.std.item() == pytest.approx(1.0, rel=0.1)
    assert moving.mean.item() == pytest.approx(3.0, abs=0.1)
    assert cumulative.std.item() > 4.0


def test_moving_std_starts_from_the_first_batch():
    stats = RunningMeanStd((), momentum=0.01)
    stats.update(torch.tensor([1.0, 3.0]))
    assert stats.mean.item() == pytest.approx(2.0) and stats.std.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="momentum"):
        RunningMeanStd((), momentum=0.0)


BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def test_statistics_and_bonus_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    rnd = RNDBonus(3, hidden_dims=(16,), embedding_dim=8, update_fraction=0.5)
    reference = RNDBonus(3, hidden_dims=(16,), embedding_dim=8, update_fraction=0.5)
    reference.load_state_dict(rnd.state_dict())
    for _ in range(3):
        batch = TensorDict({("next", "observation"): torch.randn(40, 3) * 5 + 100}, batch_size=[40])
        with torch.autocast(**BF16):
            bonus, loss = rnd.compute(batch)
        ref_bonus, ref_loss = reference.compute(batch)
        assert bonus.dtype == loss.dtype == torch.float32
        assert torch.isfinite(bonus).all() and torch.isfinite(loss) and (bonus >= 0).all()
        # Only the networks' hidden and output layers run in bf16: loosely equal.
        torch.testing.assert_close(bonus, ref_bonus, rtol=5e-2, atol=1e-3)
    for stats in (rnd.observation_stats, rnd.error_stats):
        assert stats.mean.dtype == stats.var.dtype == stats.count.dtype == torch.float32
    # The observation statistics see the same float32 inputs: they must agree exactly.
    torch.testing.assert_close(rnd.observation_stats.mean, reference.observation_stats.mean, rtol=0, atol=0)
    torch.testing.assert_close(rnd.observation_stats.var, reference.observation_stats.var, rtol=0, atol=0)
    torch.testing.assert_close(rnd.error_stats.var, reference.error_stats.var, rtol=5e-2, atol=0)

