"""Building blocks: the critic ensemble's scalar head, member selection, the tanh-Gaussian."""

import math

import torch

from ooo_lightning.networks import EnsembleLinear, EnsembleScalarHead, QEnsemble, TanhGaussianPolicy


def test_scalar_head_matches_a_plain_batched_matmul_forward_and_backward():
    torch.manual_seed(0)
    head = EnsembleScalarHead(3, 5)
    x = torch.randn(3, 7, 5, requires_grad=True)
    out = head(x)
    ref_w, ref_b = head.weight.detach().clone().requires_grad_(), head.bias.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ref = torch.baddbmm(ref_b, x_ref, ref_w)
    assert torch.allclose(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)
    assert torch.allclose(head.weight.grad, ref_w.grad, atol=1e-5)
    assert torch.allclose(head.bias.grad, ref_b.grad, atol=1e-6)


def test_scalar_head_stays_fp32_under_bf16_autocast():
    q = QEnsemble(4, 2, (16, 16), num_nets=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(torch.randn(8, 4), torch.randn(8, 2))
    assert out.dtype == torch.float32 and out.shape == (2, 8)


def test_member_subset_and_detached_weights_give_the_same_values():
    torch.manual_seed(0)
    q = QEnsemble(3, 2, (8, 8), num_nets=4, layer_norm=True)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    full = q(obs, act)
    members = torch.tensor([3, 1])
    assert torch.allclose(q(obs, act, members), full[members], atol=1e-6)
    act = act.requires_grad_()
    detached = q(obs, act, detach_weights=True)
    assert torch.allclose(detached, full, atol=1e-6)
    detached.sum().backward()
    assert act.grad is not None and all(p.grad is None for p in q.parameters())


def test_q_ensemble_accepts_leading_sample_dimensions():
    q = QEnsemble(3, 2, (8,), num_nets=2)
    obs = torch.randn(5, 3)
    actions = torch.randn(4, 5, 2)
    out = q(obs.expand(4, 5, 3), actions)
    assert out.shape == (2, 4, 5)
    assert torch.allclose(out[:, 2], q(obs, actions[2]), atol=1e-6)


def test_tanh_gaussian_samples_are_bounded_and_share_one_forward():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(3, 2, (16,))
    actions, log_prob = policy.sample(torch.randn(6, 3), num_samples=10)
    assert actions.shape == (10, 6, 2) and log_prob.shape == (10, 6)
    assert actions.abs().max() < 1.0 and torch.isfinite(log_prob).all()
    assert torch.equal(policy.act(torch.zeros(1, 3)), torch.tanh(policy(torch.zeros(1, 3))[0]))


def test_ensemble_linear_of_one_member_is_initialised_like_nn_linear():
    layer = EnsembleLinear(1, 100, 3)
    bound = 1 / math.sqrt(100)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
