"""Monte-Carlo returns-to-go, the lower bound that Cal-QL calibrates its Q values with.

For every transition t of a trajectory, ``G_t = r_t + gamma * G_{t+1}``, summed to the end of
the trajectory. A trajectory ends at a termination (nothing follows) or at a truncation
(time limit, or the end of the data): the sum stops there, as in the Cal-QL reference code.
In sparse-reward tasks a trajectory that never succeeds gets ``r_fail / (1 - gamma)`` at
every step (its value if it went on failing forever), the reference's rule for failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

#: Where returns live in the buffer: a top-level column next to "observation".
MC_RETURN_KEY = "mc_return"
#: The value of rows whose episode has not ended yet: max(Q, -inf) leaves Q uncalibrated.
PENDING = float("-inf")


@dataclass(frozen=True)
class RewardShaping:
    """The task-reward shaping both agents train with: r <- (r + bias) * scale."""

    bias: float = 0.0
    scale: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self.bias == 0.0 and self.scale == 1.0

    def __call__(self, reward):
        if self.is_identity:
            return reward
        return (reward + self.bias) * self.scale


@dataclass(frozen=True)
class ReturnSpec:
    """The Monte-Carlo returns a loss reads: its discount, the reward shaping they are
    summed under, and the shaped reward of a failed step in a sparse task (None: dense)."""

    gamma: float
    shaping: RewardShaping = field(default_factory=RewardShaping)
    failure_reward: float | None = None


def trajectory_return_to_go(
    rewards: np.ndarray, gamma: float, failure_reward: float | None = None
) -> np.ndarray:
    """Returns-to-go of one trajectory (float64). ``failure_reward``: the shaped reward of a
    failed step in a sparse task; a trajectory made of such steps only counts as a failure."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if failure_reward is not None and rewards.size and np.all(rewards == failure_reward):
        return np.full(rewards.shape, failure_reward / (1.0 - gamma))
    out = np.empty_like(rewards)
    running = 0.0
    for t in range(rewards.size - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def episode_ends(done: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) row ranges of the trajectories in rows ordered by time; ``done`` marks the
    last row of each episode (terminated or truncated). Rows after the last ``done`` form a
    trajectory of their own (cut off by the end of the data)."""
    done = done.reshape(-1).bool()
    ends = (torch.nonzero(done).reshape(-1) + 1).tolist()
    if not ends or ends[-1] != done.numel():
        ends.append(done.numel())
    starts = [0, *ends[:-1]]
    return [(s, e) for s, e in zip(starts, ends) if e > s]


def monte_carlo_returns(
    rewards: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    failure_reward: float | None = None,
    open_end_pending: bool = False,
) -> torch.Tensor:
    """Returns-to-go of every row of consecutive trajectories, shaped like ``rewards``.

    Args:
        rewards: shaped task rewards ``[N]`` or ``[N, 1]``, rows in time order.
        done: episode ends (terminated or truncated), same shape.
        gamma: discount.
        failure_reward: see ``trajectory_return_to_go``; None for dense tasks.
        open_end_pending: the rows after the last ``done`` belong to an episode that is
            still running (online data): mark them ``PENDING`` instead of truncating them.
    """
    flat = rewards.reshape(-1).double().cpu().numpy()
    out = np.empty_like(flat)
    done_flat = done.reshape(-1)
    for start, end in episode_ends(done_flat):
        if open_end_pending and end == flat.size and not bool(done_flat[end - 1]):
            out[start:end] = PENDING
        else:
            out[start:end] = trajectory_return_to_go(flat[start:end], gamma, failure_reward)
    return torch.from_numpy(out).to(rewards.dtype).reshape(rewards.shape)
