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


def _obs_batch(x: torch.Tensor) -> TensorDict:
    return TensorDict({("next", "observation"): x}, batch_size=[x.shape[0]])


def _welford(values: list[np.ndarray]) -> tuple[float, float, float]:
    """(mean, var, count) of a cumulative estimate that starts at (0, 1, 1e-4), by hand."""
    mean, var, count = 0.0, 1.0, 1e-4
    for v in values:
        n, bm, bv = len(v), float(v.mean()), float(v.var())
        total = count + n
        delta = bm - mean
        mean, var = mean + delta * n / total, (var * count + bv * n + delta**2 * count * n / total) / total
        count = total
    return mean, var, count


def test_paper_normalisation_divides_by_the_std_of_the_bonus_itself():
    """bonus_std, by hand: the max-over-features error of the observation normalised with the
    statistics *before* this batch, divided by sqrt of the running variance of the earlier
    normalised bonuses (starting at var 1), which is then updated with this batch's bonus."""
    torch.manual_seed(0)
    rnd = RNDBonus(3, hidden_dims=(16,), embedding_dim=8, normalisation="bonus_std")
    batches = [torch.randn(40, 3) * 2 + 1, torch.randn(30, 3) * 0.5 - 2, torch.randn(50, 3)]
    seen, bonuses = [], []
    for x in batches:
        per_feature = [_welford([b[:, j] for b in seen]) for j in range(3)]  # (0, 1) before any batch
        mean, var = np.array([m for m, _, _ in per_feature]), np.array([v for _, v, _ in per_feature])
        z = ((x.numpy() - mean) / np.sqrt(var)).clip(-5, 5)
        with torch.no_grad():
            z_t = torch.as_tensor(z, dtype=torch.float32)
            error = (rnd.predictor(z_t) - rnd.target(z_t)).pow(2).amax(-1).numpy()
        divisor = np.sqrt(_welford(bonuses)[1]) if bonuses else 1.0
        expected = error / divisor
        bonus, loss = rnd.compute(_obs_batch(x))
        np.testing.assert_allclose(bonus.numpy(), expected, rtol=1e-4)
        assert loss.requires_grad
        seen.append(x.numpy())
        bonuses.append(expected)
    np.testing.assert_allclose(rnd.normaliser_stats.var.item(), _welford(bonuses)[1], rtol=1e-4)
    np.testing.assert_allclose(rnd.observation_stats.mean.numpy(), np.concatenate(seen).mean(0), rtol=1e-4)
    # Evaluation: the same formula, nothing updated, no loss.
    before = {k: v.clone() for k, v in rnd.state_dict().items()}
    bonus, loss = rnd.compute(_obs_batch(batches[0]), update=False)
    assert loss is None and all(torch.equal(before[k], v) for k, v in rnd.state_dict().items())


def test_error_std_normalisation_and_the_clip():
    """error_std, by hand: the raw error divided by the std of every raw error so far, this
    batch's included; ``clip`` bounds the result."""
    torch.manual_seed(0)
    rnd = RNDBonus(2, hidden_dims=(16,), embedding_dim=8, clip=1.5)  # error_std: the default
    x = torch.randn(64, 2)
    with torch.no_grad():
        error = (rnd.predictor(x) - rnd.target(x)).pow(2).amax(-1).numpy()  # stats start at (0, 1)
    bonus, _ = rnd.compute(_obs_batch(x))
    np.testing.assert_allclose(bonus.numpy(), np.minimum(error / np.sqrt(_welford([error])[1]), 1.5), rtol=1e-4)
    assert (bonus == 1.5).any() and (bonus < 1.5).any()
    with pytest.raises(ValueError, match="error_std_momentum applies to normalisation: error_std only"):
        RNDBonus(2, normalisation="bonus_std", error_std_momentum=0.1)
    with pytest.raises(ValueError, match="normalisation must be"):
        RNDBonus(2, normalisation="minmax")


def test_orthogonal_initialisation_with_the_papers_gain():
    rnd = RNDBonus(5, hidden_dims=(32,), embedding_dim=16, orthogonal_init_gain=2**0.5)
    first = rnd.target[0]
    # Orthogonal rows (out 32 > in 5: orthonormal columns) scaled by sqrt(2), zero biases.
    torch.testing.assert_close(first.weight.T @ first.weight, 2.0 * torch.eye(5), rtol=0, atol=1e-5)
    assert not first.bias.any() and not rnd.predictor[-1].bias.any()


def test_predictor_trains_on_a_random_subset_of_rows():
    """Under positive_samples (or offline_fraction) a batch's first rows are not a uniform
    sample; the predictor's 25% must be drawn at random. Which rows were used is read back
    from the loss: each row's own squared error is known."""
    torch.manual_seed(0)
    rnd = RNDBonus(2, hidden_dims=(16,), embedding_dim=8, update_fraction=0.25)
    x = torch.randn(8, 2)
    rnd.observation_stats.update(x)  # fixed from here: compute() then normalises alike every call
    z = rnd._normalise(x)
    with torch.no_grad():
        per_row = (rnd.predictor(z) - rnd.target(z)).pow(2).mean(-1)
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    used = []
    for _ in range(40):
        state = rnd.observation_stats.state_dict()
        _, loss = rnd.compute(_obs_batch(x))
        rnd.observation_stats.load_state_dict(state)
        used.append(min(pairs, key=lambda p: abs(per_row[list(p)].mean().item() - loss.item())))
    rows = {r for pair in used for r in pair}
    assert rows == set(range(8)), rows  # every row is trained on sometimes
    assert used.count((0, 1)) < 10  # not the first two rows every time


def test_predictor_loss_is_the_mean_squared_error_on_its_rows_by_hand():
    """The training subset pinned: round(0.3 x 10) = 3 rows, the first 3 of a permutation
    drawn from the global RNG, and the loss is the mean over those rows and every feature of
    (predictor - target)^2 on the observation normalised with the statistics before the batch."""
    rnd = RNDBonus(2, hidden_dims=(16,), embedding_dim=4, update_fraction=0.3)
    x = torch.randn(10, 2) * 3 + 1
    z = (x / 1.0).clamp(-5, 5)  # statistics still (0, 1): normalising changes nothing but the clip
    with torch.no_grad():
        sq_err = (rnd.predictor(z) - rnd.target(z)).pow(2)
    torch.manual_seed(7)
    rows = torch.randperm(10)[:3]
    torch.manual_seed(7)
    _, loss = rnd.compute(_obs_batch(x))
    torch.testing.assert_close(loss, sq_err[rows].mean(), rtol=1e-6, atol=0)
    assert not torch.isclose(loss, sq_err.mean())  # not the whole batch


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
    for stats in (rnd.observation_stats, rnd.normaliser_stats):
        assert stats.mean.dtype == stats.var.dtype == stats.count.dtype == torch.float32
    # The observation statistics see the same float32 inputs: they must agree exactly.
    torch.testing.assert_close(rnd.observation_stats.mean, reference.observation_stats.mean, rtol=0, atol=0)
    torch.testing.assert_close(rnd.observation_stats.var, reference.observation_stats.var, rtol=0, atol=0)
    torch.testing.assert_close(rnd.normaliser_stats.var, reference.normaliser_stats.var, rtol=5e-2, atol=0)



def test_default_config_bonus_on_real_point_mass_wall_data(tiny_dataset):
    """The default job's RND, trained on point-mass-wall data as the explorer samples it:
    never-seen states (under the wall, by the goal) get a bonus far above the states it has
    learnt, and the scale rule of the config holds there: bonus_scale x bonus on never-seen
    states is of the order of the per-step task reward and never above it, so reward + bonus
    <= 0 and reaching the goal stays worth more than wandering on (docs/rnd_bonus.md)."""
    import yaml

    from tests.conftest import REPO
    from ooo_lightning.data.d4rl import load_d4rl_hdf5

    explorer = yaml.safe_load((REPO / "configs/point_mass_wall/ooo_iql.yaml").read_text())["model"]["init_args"]["explorer"]["init_args"]
    scale, penalty = float(explorer["bonus_scale"]), -float(explorer["reward_bias"])
    states = torch.as_tensor(load_d4rl_hdf5(tiny_dataset, obs_dim=2, act_dim=2)["next_observations"])
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rnd = RNDBonus(2, **explorer["bonus"]["init_args"])
    opt = torch.optim.Adam(rnd.predictor.parameters(), lr=rnd.learning_rate)
    for _ in range(300):
        _, loss = rnd.compute(_obs_batch(states[torch.randint(0, len(states), (256,), generator=g)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    novel = torch.stack([torch.rand(1000, generator=g) * 0.6 + 0.45, torch.rand(1000, generator=g) * 0.2], 1)
    known = rnd.compute(_obs_batch(states), update=False)[0] * scale
    unseen = rnd.compute(_obs_batch(novel), update=False)[0] * scale
    assert unseen.median() > 20 * known.median()
    assert unseen.max() <= penalty + 1e-6  # reward + bonus <= 0 everywhere
    assert unseen.median() >= 0.25 * penalty  # and of the order of the task reward where it acts
