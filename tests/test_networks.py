"""Building blocks: the critic ensemble's scalar head, member selection, the tanh-Gaussian."""

import math

import torch
from torch import nn

from ooo_lightning.networks import (
    EnsembleLinear,
    EnsembleScalarHead,
    GaussianPolicy,
    QEnsemble,
    TanhGaussianPolicy,
    ValueNetwork,
    full_precision,
    normal_log_prob,
    squash,
)


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


def test_scalar_head_stacks_under_vmap_as_several_agents_heads():
    """Several agents' critic heads in one call (torch.func.vmap over a leading agent axis):
    the values and gradients of one call per agent."""
    from torch.func import vmap

    torch.manual_seed(0)
    head = EnsembleScalarHead(2, 5)
    x = torch.randn(3, 2, 7, 5, requires_grad=True)  # [agents, ensemble, batch, in]
    w = torch.randn(3, 2, 5, 1, requires_grad=True)
    b = torch.randn(3, 2, 1, 1, requires_grad=True)
    out = vmap(head.forward_with)(x, w, b)
    g = torch.randn_like(out)
    out.backward(g)
    grads = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    ref = torch.stack([head.forward_with(x[i], w[i], b[i]) for i in range(3)])
    ref.backward(g)
    assert torch.allclose(out, ref)
    for got, t in zip(grads, (x, w, b)):
        assert torch.allclose(got, t.grad, atol=1e-5)


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


def test_full_precision_casts_and_disables_autocast_only_under_autocast():
    seen = {}

    @full_precision
    def probe(x, *, y, scale):
        seen.update(x=x, y=y, autocast=torch.is_autocast_enabled("cpu"), product=(x @ x).dtype)
        return x * scale

    x, y = torch.randn(3, 3), torch.randn(3, 3, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = probe(x.bfloat16(), y=y, scale=2.0)
        assert torch.is_autocast_enabled("cpu")  # restored on exit
    assert seen["x"].dtype == seen["y"].dtype == out.dtype == torch.float32
    assert not seen["autocast"] and seen["product"] == torch.float32
    # Without autocast: called as it is, the very same tensors (no copies, nothing changes).
    probe(x, y=y, scale=2.0)
    assert seen["x"] is x and seen["y"] is y and seen["autocast"] is False
    float64 = torch.randn(2, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probe(float64, y=y, scale=1.0)  # only half precision is cast, never down to float32
    assert seen["x"] is float64


def _hidden_linear_dtypes(module: nn.Module, run) -> list[torch.dtype]:
    """Output dtypes of the hidden (non-final) plain linear layers of ``module`` during ``run()``."""
    dtypes = []
    layers = next(m for m in module.modules() if isinstance(m, nn.Sequential))
    hidden = [layer for layer in list(layers)[:-1] if isinstance(layer, (nn.Linear, EnsembleLinear))]
    hooks = [layer.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype)) for layer in hidden]
    run()
    for h in hooks:
        h.remove()
    return dtypes


def test_output_layers_are_float32_under_bf16_autocast_and_hidden_layers_are_not():
    torch.manual_seed(0)
    obs, act = torch.randn(8, 4), torch.rand(8, 2) * 2 - 1
    value, gauss = ValueNetwork(4, (16, 16)), GaussianPolicy(4, 2, (16, 16))
    tanh_gauss = TanhGaussianPolicy(4, 2, (16,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = _hidden_linear_dtypes(value, lambda: value(obs))
        hidden += _hidden_linear_dtypes(gauss, lambda: gauss.log_prob(obs, act))
        hidden += _hidden_linear_dtypes(tanh_gauss, lambda: tanh_gauss.sample(obs, 3))
        v, (mean, _), log_prob = value(obs), gauss(obs), gauss.log_prob(obs, act)
        (mu, log_std), (actions, sampled_log_prob) = tanh_gauss(obs), tanh_gauss.sample(obs, 3)
    assert hidden == [torch.bfloat16] * 5  # where the speed comes from
    for t in (v, mean, log_prob, mu, log_std, actions, sampled_log_prob):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    assert torch.allclose(v, value(obs), rtol=5e-2, atol=5e-2)
    assert torch.allclose(log_prob, gauss.log_prob(obs, act), rtol=5e-2, atol=5e-2)


def test_single_layer_networks_are_exact_under_bf16_autocast():
    """Without hidden layers every layer is an output layer: bf16 autocast changes nothing."""
    torch.manual_seed(0)
    obs, act = torch.randn(8, 4) * 30, torch.rand(8, 2) * 2 - 1
    value, gauss, tanh_gauss = ValueNetwork(4, ()), GaussianPolicy(4, 2, ()), TanhGaussianPolicy(4, 2, ())
    q = QEnsemble(4, 2, (), num_nets=3)
    with torch.no_grad():
        gauss.log_std.fill_(-5.0)  # std 0.0067: the log-density resolves the mean to 1e-4
    eps = torch.randn(8, 2)

    def run():
        return value(obs), gauss.log_prob(obs, act), squash(*tanh_gauss(obs), eps)[1], q(obs, act)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = run()
    for m, r in zip(mixed, run()):
        assert m.dtype == torch.float32
        torch.testing.assert_close(m, r, rtol=1e-6, atol=1e-5)


def test_log_densities_are_float32_for_half_inputs_under_autocast():
    x, mean, log_std = torch.full((2, 3), 0.3), torch.full((2, 3), 0.2), torch.full((2, 3), -4.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = normal_log_prob(x.bfloat16(), mean.bfloat16(), log_std.bfloat16())
        a, lp_tanh = squash(mean.bfloat16(), log_std.bfloat16(), torch.randn(2, 3, dtype=torch.bfloat16))
    assert lp.dtype == lp_tanh.dtype == a.dtype == torch.float32
    # Computed from the (bf16-representable) inputs at float32 accuracy.
    expected = normal_log_prob(x.bfloat16().float(), mean.bfloat16().float(), log_std.bfloat16().float())
    torch.testing.assert_close(lp, expected)
