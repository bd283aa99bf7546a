"""Small, fast building blocks shared by the losses.

Twin (or larger) Q-ensembles are stored as one batched MLP: one ``baddbmm`` per layer
evaluates every member, which is what makes the update cheap on a 2-core CPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

_F = TypeVar("_F", bound=Callable)
_HALF = (torch.float16, torch.bfloat16)


def _to_float32(x):
    return x.float() if isinstance(x, torch.Tensor) and x.dtype in _HALF else x


def full_precision(fn: _F) -> _F:
    """Decorator for the numerically sensitive parts (output layers, TD targets, log-densities,
    logsumexps, running statistics): under autocast (``bf16-mixed``, ``16-mixed``) ``fn`` runs
    with autocast off and its half-precision tensor arguments cast to float32. Without autocast
    it is called as it is: no casts, nothing changes under ``32-true``.

    The device is that of the first tensor argument; only top-level arguments are cast.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in (*args, *kwargs.values()):
            if isinstance(a, torch.Tensor):
                device = a.device.type
                break
        else:
            return fn(*args, **kwargs)
        if not torch.is_autocast_enabled(device):
            return fn(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(*map(_to_float32, args), **{k: _to_float32(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


class EnsembleLinear(nn.Module):
    """``ensemble_size`` independent linear layers evaluated with one batched matmul.

    Input ``[E, B, in]`` (or ``[B, in]``, broadcast to every member), output ``[E, B, out]``.
    Initialised like ``nn.Linear`` so an ensemble of one matches a plain MLP.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with(x, self.weight, self.bias)

    def forward_with(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The layer with other (e.g. sliced or detached) weights of the same layout."""
        if x.dim() == 2:
            x = x.expand(weight.shape[0], *x.shape)
        return torch.baddbmm(bias, x, weight)

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in={self.in_features}, out={self.out_features}"


class _ScalarHead(torch.autograd.Function):
    """baddbmm to one output feature, with a backward that avoids a K=1 matrix product:
    the input gradient is a broadcast product (one pass), where bmm with an inner size of
    one ran several times slower on the CPU."""

    generate_vmap_rule = True  # torch.func.vmap can stack several agents' heads

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(bias, x, weight)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad * weight.transpose(1, 2) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(x.transpose(1, 2), grad) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1, keepdim=True) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


_scalar_head = full_precision(_ScalarHead.apply)  # why: see EnsembleScalarHead


class EnsembleScalarHead(EnsembleLinear):
    """The last layer of a critic ensemble (one output per member).

    Runs in float32 even under autocast (``full_precision``): a bf16 Q value of -50 has a
    resolution of 0.25, coarser than the TD errors it must learn from.
    """

    def __init__(self, ensemble_size: int, in_features: int) -> None:
        super().__init__(ensemble_size, in_features, 1)

    def forward_with(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(weight.shape[0], *x.shape)
        return _scalar_head(x, weight, bias)


class FullPrecisionLinear(nn.Linear):
    """``nn.Linear`` that runs in float32 under autocast: the output layer of V and of the
    policies, whose values are used at finer resolution than bf16's 3 digits (V in the TD
    target; a policy mean against a standard deviation down to exp(-5) in the log-density).
    Same parameters as ``nn.Linear`` (checkpoints are interchangeable); a small matmul."""

    forward = full_precision(nn.Linear.forward)


def mlp(
    in_dim: int,
    out_dim: int,
    hidden_dims: Sequence[int] = (256, 256),
    ensemble_size: int | None = None,
    layer_norm: bool = False,
    full_precision_output: bool = False,
) -> nn.Sequential:
    """ReLU MLP, no activation on the output; an ensemble when ``ensemble_size`` is set.

    The output layer runs in float32 under autocast for ensembles of one output (critics)
    and, for single networks, with ``full_precision_output``; hidden layers follow autocast.
    """
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden_dims]
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers.append(nn.Linear(d_in, d_out) if ensemble_size is None else EnsembleLinear(ensemble_size, d_in, d_out))
        if layer_norm:
            # Per-member affine parameters would need an ensemble LayerNorm; the normalisation
            # itself is what curbs value extrapolation, so ensembles use a parameter-free one.
            layers.append(nn.LayerNorm(d_out, elementwise_affine=ensemble_size is None))
        # In place: no layer here needs its output kept for the backward pass.
        layers.append(nn.ReLU(inplace=True))
    if ensemble_size is None:
        layers.append((FullPrecisionLinear if full_precision_output else nn.Linear)(dims[-1], out_dim))
    elif out_dim == 1:
        layers.append(EnsembleScalarHead(ensemble_size, dims[-1]))
    else:
        layers.append(EnsembleLinear(ensemble_size, dims[-1], out_dim))
    return nn.Sequential(*layers)


class QEnsemble(nn.Module):
    """Q(s, a) for ``num_nets`` critics at once: returns ``[num_nets, *batch]``.

    Only the ``EnsembleLinear`` layers hold per-member parameters (LayerNorm is parameter-free
    in ensembles), which is what lets ``forward`` pick members by slicing the weights.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        num_nets: int = 2,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_nets = num_nets
        self.net = mlp(observation_dim + action_dim, 1, hidden_dims, ensemble_size=num_nets, layer_norm=layer_norm)

    def forward(
        self,
        observation: torch.Tensor,
        action: torch.Tensor,
        members: torch.Tensor | None = None,
        detach_weights: bool = False,
    ) -> torch.Tensor:
        """Q values ``[num_nets, *batch]``, or ``[len(members), *batch]`` for a subset of the
        critics (only those are computed). ``detach_weights`` keeps the output differentiable
        in the action while the backward skips the weight gradients (an actor's loss)."""
        x = torch.cat([observation, action], dim=-1)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        if members is None and not detach_weights:
            out = self.net(x)  # [E, N, 1]
        else:
            out = x.expand(self.num_nets if members is None else members.shape[0], *x.shape)
            for layer in self.net:
                if isinstance(layer, EnsembleLinear):
                    weight, bias = layer.weight, layer.bias
                    if members is not None:
                        weight, bias = weight[members], bias[members]
                    if detach_weights:
                        weight, bias = weight.detach(), bias.detach()
                    out = layer.forward_with(out, weight, bias)
                else:
                    out = layer(out)
        return out.reshape(out.shape[0], *lead)


class ValueNetwork(nn.Module):
    """V(s): returns ``[*batch]``."""

    def __init__(self, observation_dim: int, hidden_dims: Sequence[int] = (256, 256), layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp(observation_dim, 1, hidden_dims, layer_norm=layer_norm, full_precision_output=True)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.net(observation).squeeze(-1)


class GaussianPolicy(nn.Module):
    """IQL's policy: Normal(tanh(mlp(s)), exp(log_std)) with a state-independent log-std.

    The mean is squashed, the sample is not (actions are clipped by the caller), as in the
    IQL reference code; evaluation uses the mean.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
    ) -> None:
        super().__init__()
        self.net = mlp(observation_dim, action_dim, hidden_dims, full_precision_output=True)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_bounds

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (mean, log_std), log_std broadcast to the mean's shape."""
        mean = torch.tanh(self.net(observation))
        log_std = self.log_std.clamp(self.log_std_min, self.log_std_max).expand_as(mean)
        return mean, log_std

    def log_prob(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(observation)
        return normal_log_prob(action, mean, log_std)

    @torch.no_grad()
    def act(self, observation: torch.Tensor, deterministic: bool = True, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The mean, or a sample; ``noise`` is its standard normal draw, given from outside
        (a member's, from its own generator), else drawn here."""
        mean, log_std = self(observation)
        if deterministic:
            return mean
        noise = torch.randn_like(mean) if noise is None else noise
        return (mean + noise * log_std.exp()).clamp(-1.0, 1.0)


class TanhGaussianPolicy(nn.Module):
    """SAC's policy: a = tanh(u), u ~ Normal(mu(s), sigma(s)), both heads from one MLP.

    ``sample(observation, num_samples)`` draws several actions per state from *one* forward
    pass (the distribution depends on the state only), which is what keeps CQL's sampled
    actions cheap. Evaluation uses tanh(mu).
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        log_std_bounds: tuple[float, float] = (-20.0, 2.0),
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.net = mlp(observation_dim, 2 * action_dim, hidden_dims, full_precision_output=True)
        self.log_std_min, self.log_std_max = log_std_bounds

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (mu, log_std) of the pre-tanh Normal."""
        mu, log_std = self.net(observation).chunk(2, dim=-1)
        return mu, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(
        self, observation: torch.Tensor, num_samples: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised actions and their log-densities.

        Shapes: ``[*batch, A]`` and ``[*batch]``, or ``[num_samples, *batch, A]`` and
        ``[num_samples, *batch]`` when ``num_samples`` is given.
        """
        mu, log_std = self(observation)
        shape = mu.shape if num_samples is None else (num_samples, *mu.shape)
        eps = torch.randn(shape, dtype=mu.dtype, device=mu.device)
        return squash(mu, log_std, eps)

    @torch.no_grad()
    def act(self, observation: torch.Tensor, deterministic: bool = True, noise: torch.Tensor | None = None) -> torch.Tensor:
        """tanh(mu), or a sample; ``noise`` as in ``GaussianPolicy.act``."""
        if deterministic:
            return torch.tanh(self(observation)[0])
        if noise is None:
            return self.sample(observation)[0]
        return squash(*self(observation), noise)[0]


_LOG2 = math.log(2.0)


@full_precision
def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_std)), summed over the last dimension.

    float32 under autocast: dividing by a std down to exp(-5) magnifies any rounding of
    x - mean 150-fold, and this is the actor's (weighted) log-likelihood.
    Written out (rather than torch.distributions.Normal) to save a few small ops per update.
    """
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


@full_precision
def squash(mu: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh(mu + std * eps) and its log-density (Normal density with the tanh Jacobian).

    ``log(1 - tanh(u)^2)`` is written as ``2 (log 2 - u - softplus(-2u))``, which stays
    finite where tanh saturates. float32 under autocast: for negative u that term cancels
    two terms of size |u|, and the log-densities feed the entropy terms, the temperature loss
    and CQL's importance weights.
    """
    u = mu + log_std.exp() * eps
    log_prob = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    log_prob = log_prob - 2.0 * (_LOG2 - u - nn.functional.softplus(-2.0 * u))
    return torch.tanh(u), log_prob.sum(-1)
