import math

import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.exploration import CountBonus


def as_batch(obs: torch.Tensor) -> TensorDict:
    return TensorDict({"next": {"observation": obs}}, batch_size=[obs.shape[0]])


def test_grid_keys_equal_within_a_cell_and_differ_across_boundaries():
    bonus = CountBonus(2, cell_size=0.1)
    same_cell = torch.tensor([[0.01, 0.02], [0.09, 0.05], [0.0, 0.0999]])
    keys = bonus.keys(same_cell)
    assert keys.dtype == torch.int64 and keys.shape == (3,)
    assert (keys == keys[0]).all()
    # Across an edge in x, in y, and across zero (floor, not truncation towards zero).
    neighbours = torch.tensor([[0.11, 0.02], [0.01, 0.12], [-0.01, 0.02], [0.01, -0.02]])
    assert (bonus.keys(neighbours) != keys[0]).all()
    assert bonus.keys(neighbours).unique().numel() == 4


def test_grid_cell_size_per_dim():
    bonus = CountBonus(2, cell_size=[0.1, 1.0])
    # 0.5 apart in y is the same cell when y cells are 1 wide; 0.15 apart in x is not.
    assert bonus.keys(torch.tensor([[0.01, 0.1]])) == bonus.keys(torch.tensor([[0.01, 0.6]]))
    assert bonus.keys(torch.tensor([[0.01, 0.1]])) != bonus.keys(torch.tensor([[0.16, 0.1]]))


def test_bonus_is_inverse_sqrt_of_observed_count():
    bonus = CountBonus(2, cell_size=0.05)
    seen = torch.tensor([0.3, -0.7])
    other = torch.tensor([1.3, 1.3])
    bonus.observe(as_batch(torch.stack([seen, other, seen, seen])))
    unseen = torch.tensor([-2.0, 2.0])
    values, loss = bonus.compute(as_batch(torch.stack([seen, other, unseen])))
    assert loss is None and not values.requires_grad
    assert values.shape == (3,) and values.dtype == torch.float32
    assert torch.equal(values, torch.tensor([1 / math.sqrt(4), 1 / math.sqrt(2), 1.0]))
    # compute only reads the table, whatever ``update`` says.
    counts = bonus.counts.clone()
    bonus.compute(as_batch(torch.stack([seen, unseen])), update=True)
    assert torch.equal(bonus.counts, counts) and int(counts.sum()) == 4


def test_observe_accepts_extra_batch_dimensions():
    bonus = CountBonus(2, cell_size=1.0)
    obs = torch.zeros(3, 5, 2)
    bonus.observe(TensorDict({"next": {"observation": obs}}, batch_size=[3, 5]))
    assert bonus.visit_counts(torch.zeros(1, 2)).item() == 15


@pytest.mark.parametrize("method", ["grid", "simhash"])
def test_dims_selection_ignores_other_entries(method):
    bonus = CountBonus(4, method=method, dims=[0, 1], cell_size=0.1, hash_bits=12)
    base = torch.tensor([[0.23, -0.41, 5.0, -3.0]])
    varied = base.repeat(50, 1)
    varied[:, 2:] = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) * 100
    assert (bonus.keys(varied) == bonus.keys(base)).all()
    bonus.observe(as_batch(varied))
    assert bonus.compute(as_batch(base))[0].item() == pytest.approx(1 / math.sqrt(51))
    if method == "grid":
        moved = base.clone()
        moved[0, 0] += 0.1
        assert bonus.keys(moved) != bonus.keys(base)


def test_simhash_is_deterministic_for_a_seed():
    obs = torch.randn(100, 5, generator=torch.Generator().manual_seed(3))
    a = CountBonus(5, method="simhash", hash_bits=16, seed=7)
    b = CountBonus(5, method="simhash", hash_bits=16, seed=7)
    c = CountBonus(5, method="simhash", hash_bits=16, seed=8)
    assert a.projection.shape == (16, 5)
    assert torch.equal(a.projection, b.projection) and torch.equal(a.keys(obs), b.keys(obs))
    assert not torch.equal(a.keys(obs), c.keys(obs))
    assert a.counts.numel() == 2**16
    assert ((a.keys(obs) >= 0) & (a.keys(obs) < 2**16)).all()


def test_simhash_nearby_points_share_keys_more_often_than_far_ones():
    bonus = CountBonus(4, method="simhash", hash_bits=8, seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 4, generator=gen)
    near = x + 0.01 * torch.randn(2000, 4, generator=gen)
    far = torch.randn(2000, 4, generator=gen)
    near_share = (bonus.keys(x) == bonus.keys(near)).float().mean().item()
    far_share = (bonus.keys(x) == bonus.keys(far)).float().mean().item()
    # Measured about 0.97 and 0.04 with these seeds.
    assert near_share > 0.9
    assert far_share < 0.15


@pytest.mark.parametrize("method", ["grid", "simhash"])
def test_counts_survive_state_dict_round_trip(method):
    obs = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    source = CountBonus(3, method=method, hash_bits=10, seed=1)
    source.observe(as_batch(obs))
    source.observe(as_batch(obs[:10]))
    state = source.state_dict()
    assert "counts" in state and (method == "grid" or "projection" in state)
    # A different seed on the fresh instance: the loaded projection must win.
    fresh = CountBonus(3, method=method, hash_bits=10, seed=2)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.counts, source.counts)
    assert torch.equal(fresh.compute(as_batch(obs))[0], source.compute(as_batch(obs))[0])
    assert fresh.compute(as_batch(obs[:1]))[0].item() < 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_counts_and_keys_on_cuda_match_cpu():
    obs = torch.randn(256, 3, generator=torch.Generator().manual_seed(0)) * 0.2
    for method in ("grid", "simhash"):
        cpu = CountBonus(3, method=method, hash_bits=10)
        gpu = CountBonus(3, method=method, hash_bits=10).to("cuda")
        assert torch.equal(gpu.keys(obs.cuda()).cpu(), cpu.keys(obs))
        cpu.observe(as_batch(obs))
        gpu.observe(as_batch(obs).to("cuda"))
        assert torch.equal(gpu.counts.cpu(), cpu.counts)
        # A CPU batch scored by a CUDA module: the bonus stays on the batch's device.
        values, _ = gpu.compute(as_batch(obs))
        assert values.device.type == "cpu" and torch.equal(values, cpu.compute(as_batch(obs))[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"observation_dim": 0}, "observation_dim"),
        ({"method": "kmeans"}, "method"),
        ({"cell_size": 0.0}, "cell_size"),
        ({"cell_size": -1.0}, "cell_size"),
        ({"cell_size": float("nan")}, "cell_size"),
        ({"cell_size": [0.1, 0.1, 0.1]}, "cell_size"),
        ({"dims": [0, 2]}, "dims"),
        ({"dims": [-1]}, "dims"),
        ({"dims": []}, "dims"),
        ({"dims": [1, 1]}, "dims"),
        ({"table_size": 0}, "table_size"),
        ({"table_size": 2**40}, "table_size"),
        ({"method": "simhash", "hash_bits": 25}, "hash_bits"),
        ({"method": "simhash", "hash_bits": 0}, "hash_bits"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    kwargs = {"observation_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        CountBonus(kwargs.pop("observation_dim"), **kwargs)


def test_wrong_observation_size_raises():
    with pytest.raises(ValueError, match="observation"):
        CountBonus(3).keys(torch.zeros(4, 2))


@pytest.mark.parametrize("method", ["grid", "simhash"])
def test_keys_under_bf16_autocast_equal_those_without(method):
    # A bf16 projection flips the sign bits of states near a hyperplane (about 1 in 150).
    torch.manual_seed(0)
    bonus = CountBonus(4, method=method, cell_size=0.05)
    obs = torch.randn(5000, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        keys = bonus.keys(obs)
        bonus.observe(as_batch(obs))
        value, _ = bonus.compute(as_batch(obs))
    assert torch.equal(keys, bonus.keys(obs))
    assert value.dtype == torch.float32
    assert torch.equal(value, bonus.compute(as_batch(obs))[0])
