"""Random Network Distillation (Burda et al., 2018) as a per-batch exploration bonus."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from tensordict import TensorDictBase
from torch import nn

from ooo_lightning.config_checks import ConfigError, check_ranges
from ooo_lightning.networks import full_precision, mlp


class RunningMeanStd(nn.Module):
    """Running mean/variance, kept in buffers so it checkpoints.

    With ``momentum=None`` every sample counts equally (parallel Welford update); with a
    momentum the statistics are exponential moving averages of the batch statistics, which
    forget: the spread then follows the current errors instead of the large early ones.
    """

    def __init__(self, shape: Sequence[int] = (), epsilon: float = 1e-4, momentum: float | None = None) -> None:
        super().__init__()
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ConfigError(f"momentum must be in (0, 1] or None, got {momentum}")
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        # Starts at epsilon (not 0) so the first update is a well-defined weighted average.
        self.register_buffer("count", torch.tensor(epsilon))

    @torch.no_grad()
    @full_precision
    def update(self, x: torch.Tensor) -> None:
        # float32 under autocast: the statistics accumulate over the whole run, and bf16's 3
        # digits would stall them (a mean of 1000 no longer moves by samples of 1001).
        x = x.reshape(-1, *self.mean.shape).to(self.mean.dtype)
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        if self.momentum is not None:
            # The first batch replaces the initial (0, 1) instead of being averaged with it (a
            # tensor, not a Python branch: the statistics of stacked members run under vmap).
            m = torch.where(self.count < 1, 1.0, self.momentum)
            self.var.lerp_(batch_var + (batch_mean - self.mean).pow(2) * (1 - m), m)
            self.mean.lerp_(batch_mean, m)
            self.count.add_(n)
            return
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean.add_(delta * (n / total))
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return self.var.clamp_min(1e-8).sqrt()


class ExplorationBonus(nn.Module):
    """Interface of a bonus: ``compute(batch)`` -> (per-sample bonus [B], training loss or None).

    ``observe(transitions)`` is called with every transition that enters the replay buffer
    (the offline data once, then each collected batch), for bonuses that count visits.
    A bonus with trainable parameters is given one Adam optimiser at ``learning_rate``.
    """

    learning_rate: float = 1e-4

    def observe(self, transitions: TensorDictBase) -> None:
        """Record transitions added to the buffer (nothing to do for RND)."""

    def compute(
        self, batch: TensorDictBase, update: bool = True, noise: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``noise``: the draws of ``draw_noise``, given from outside (a ``MemberBonus``'s
        members draw theirs from their own generators); None: drawn here."""
        raise NotImplementedError

    def draw_noise(
        self, batch_size: int, reference: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Every random draw of an updating ``compute`` on ``batch_size`` rows (none here)."""
        return {}


class RNDBonus(ExplorationBonus):
    """Prediction error of a trained predictor against a frozen random target network.

    The bonus is recomputed for every sampled batch (it falls as the predictor learns), on the
    next observation normalised by running statistics (updated after the bonus is computed)
    and clipped. The per-sample error is then divided by a running std:

    * ``normalisation: error_std`` (default): the cumulative std of the raw error. The large
      errors of the untrained predictor keep it high, so once the data is learnt a known
      state's bonus is below 0.001 and a never-seen one's 3-5 (docs/rnd_bonus.md); ``clip``
      bounds the latter (the default job: 1, at ``bonus_scale: 1``).
    * ``normalisation: bonus_std`` (the paper's code): the std of the *normalised bonus
      itself*, a cumulative Welford estimate updated with each batch's bonus. Its fixed point
      is about sqrt(std of the raw error), so the bonus shrinks with the error instead of
      being rescaled to order one: a never-seen state's bonus is about 0.5-0.9 here.

    Args:
        observation_dim: size of the observation.
        hidden_dims: hidden layers of predictor and target.
        embedding_dim: output size of predictor and target.
        learning_rate: Adam learning rate of the predictor.
        update_fraction: share of each batch the predictor trains on, a random subset of the
            rows (keeps the bonus from collapsing too fast on the states of one batch).
        observation_clip: clip of the normalised observation.
        error_reduction: per-sample error over features, ``max`` (the paper's code) or ``mean``.
        normalisation: ``error_std`` or ``bonus_std`` (above).
        error_std_momentum: with ``error_std``: None divides by the std of every error seen so
            far; a value (e.g. 0.01) by an exponential moving std, which forgets the large
            errors of the untrained predictor.
        clip: an upper bound on the normalised bonus (null: none). With ``bonus_scale * clip``
            at most the task's per-step penalty (``|reward_bias|``), reward + bonus stays
            <= 0, so ending the episode at the goal stays worth more than wandering on.
        orthogonal_init_gain: orthogonal initialisation of both networks with this gain and
            zero biases (the paper's code: sqrt 2); null (default) keeps PyTorch's. Measured on
            point-mass-wall, the orthogonal networks let the predictor generalise to states it
            never saw: after 16000 updates their bonus is 30x a known state's and near 0, against
            19000x with PyTorch's initialisation (docs/rnd_bonus.md).
        observation_key: which batch entry is the state to score.
    """

    def __init__(
        self,
        observation_dim: int,
        *,
        hidden_dims: Sequence[int] = (512,),
        embedding_dim: int = 512,
        learning_rate: float = 1e-4,
        update_fraction: float = 0.25,
        observation_clip: float = 5.0,
        error_reduction: Literal["max", "mean"] = "max",
        normalisation: Literal["bonus_std", "error_std"] = "error_std",
        error_std_momentum: float | None = None,
        clip: float | None = None,
        orthogonal_init_gain: float | None = None,
        observation_key: str | tuple[str, ...] = ("next", "observation"),
    ) -> None:
        super().__init__()
        check_ranges(
            "RNDBonus", hidden_dims=(tuple(hidden_dims), ">= 1"), embedding_dim=(embedding_dim, ">= 1"),
            learning_rate=(learning_rate, "> 0"), update_fraction=(update_fraction, "(0, 1]"),
            observation_clip=(observation_clip, "> 0"), error_std_momentum=(error_std_momentum, "(0, 1]"),
            clip=(clip, "> 0"), orthogonal_init_gain=(orthogonal_init_gain, "> 0"),
        )
        if normalisation not in ("bonus_std", "error_std"):
            raise ConfigError(f"RNDBonus: normalisation must be 'bonus_std' or 'error_std', got {normalisation!r}")
        if error_std_momentum is not None and normalisation != "error_std":
            raise ConfigError("RNDBonus: error_std_momentum applies to normalisation: error_std only")
        self.predictor = mlp(observation_dim, embedding_dim, hidden_dims)
        self.target = mlp(observation_dim, embedding_dim, hidden_dims).requires_grad_(False)
        if orthogonal_init_gain is not None:
            for layer in (*self.predictor, *self.target):
                if isinstance(layer, nn.Linear):
                    nn.init.orthogonal_(layer.weight, gain=orthogonal_init_gain)
                    nn.init.zeros_(layer.bias)
        self.observation_stats = RunningMeanStd((observation_dim,))
        #: The divisor's statistics: of the normalised bonus (bonus_std) or of the raw error.
        self.normaliser_stats = RunningMeanStd((), momentum=error_std_momentum)
        self.learning_rate = learning_rate
        self.update_fraction = update_fraction
        self.observation_clip = observation_clip
        self.error_reduction = error_reduction
        self.normalisation = normalisation
        self.clip = clip
        self.observation_key = tuple(observation_key) if isinstance(observation_key, list) else observation_key

    def _normalise(self, obs: torch.Tensor) -> torch.Tensor:
        z = (obs - self.observation_stats.mean) / self.observation_stats.std
        return z.clamp(-self.observation_clip, self.observation_clip)

    @full_precision
    def _error(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample squared error, reduced over features. float32 under autocast: the bonus
        is the small difference of two embeddings, once the predictor has learnt a state."""
        sq_err = (prediction - target).pow(2)
        return sq_err.amax(-1) if self.error_reduction == "max" else sq_err.mean(-1)

    def raw_error(self, obs: torch.Tensor) -> torch.Tensor:
        """Unnormalised per-sample prediction error (for plots and tests)."""
        with torch.no_grad():
            z = self._normalise(obs)
            return self._error(self.predictor(z), self.target(z))

    def draw_noise(
        self, batch_size: int, reference: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The rows the predictor trains on: a random ``update_fraction`` of the batch. A
        random subset: with up-sampled rewards or offline/online mixing the first rows of a
        batch are not a uniform sample."""
        n = max(1, int(round(batch_size * self.update_fraction)))
        return {"rows": torch.randperm(batch_size, device=reference.device, generator=generator)[:n]}

    def compute(
        self, batch: TensorDictBase, update: bool = True, noise: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        obs = batch.get(self.observation_key)
        z = self._normalise(obs)
        with torch.no_grad():
            target = self.target(z)
            error = self._error(self.predictor(z), target)
            # Both float32 (_error, the buffers): a bf16 error would keep a bf16 bonus here,
            # since a 0-dim float32 std does not promote it.
            if update and self.normalisation == "error_std":
                self.normaliser_stats.update(error)
            bonus = error / self.normaliser_stats.std
            if update and self.normalisation == "bonus_std":  # the paper's order: normalise, then update with the output
                self.normaliser_stats.update(bonus)
            if self.clip is not None:
                bonus = bonus.clamp(max=self.clip)
        if not update:
            return bonus, None
        self.observation_stats.update(obs)  # after the bonus, as in the paper's code
        rows = (noise or self.draw_noise(obs.shape[0], obs))["rows"]
        loss = _mse(self.predictor(z[rows]), target[rows])
        return bonus, loss


@full_precision
def _mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The predictor's loss; float32 under autocast, like the error it is the mean of."""
    return (prediction - target).pow(2).mean()
