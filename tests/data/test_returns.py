"""Monte-Carlo returns-to-go on hand-worked trajectories."""

import math

import pytest
import torch

from ooo_lightning.data.returns import PENDING, episode_ends, monte_carlo_returns, trajectory_return_to_go


def test_discounted_return_to_go_of_a_success():
    # r = [0, 0, 1], gamma 0.5: G2 = 1, G1 = 0 + 0.5, G0 = 0 + 0.5 * 0.5
    assert trajectory_return_to_go([0.0, 0.0, 1.0], 0.5).tolist() == [0.25, 0.5, 1.0]


def test_sparse_failure_gets_the_infinite_horizon_value():
    out = trajectory_return_to_go([-1.0, -1.0, -1.0], 0.9, failure_reward=-1.0)
    assert out.tolist() == pytest.approx([-10.0] * 3)
    # One success step makes it an ordinary discounted sum.
    out = trajectory_return_to_go([-1.0, 0.0], 0.9, failure_reward=-1.0)
    assert out.tolist() == pytest.approx([-1.0, 0.0])


def test_time_limit_truncation_stops_the_sum_and_episodes_stay_apart():
    # Episode 1: two steps, truncated by a time limit. Episode 2: three steps, terminated.
    rewards = torch.tensor([[1.0], [1.0], [2.0], [0.0], [4.0]])
    done = torch.tensor([[False], [True], [False], [False], [True]])
    g = monte_carlo_returns(rewards, done, gamma=0.5)
    assert g.shape == rewards.shape
    assert g.reshape(-1).tolist() == pytest.approx([1.5, 1.0, 2.0 + 0.5 * 0.0 + 0.25 * 4.0, 2.0, 4.0])


def test_failure_rule_applies_per_trajectory():
    rewards = torch.tensor([-1.0, -1.0, -1.0, 0.0])
    done = torch.tensor([False, True, False, True])
    g = monte_carlo_returns(rewards, done, gamma=0.9, failure_reward=-1.0)
    assert g.tolist() == pytest.approx([-10.0, -10.0, -1.0, 0.0])


def test_open_episode_at_the_end_is_pending_online_and_truncated_offline():
    rewards = torch.tensor([1.0, 1.0, 1.0])
    done = torch.tensor([True, False, False])
    online = monte_carlo_returns(rewards, done, gamma=0.5, open_end_pending=True)
    assert online[0] == 1.0 and math.isinf(online[1]) and online[1] < 0 and online[2] == PENDING
    offline = monte_carlo_returns(rewards, done, gamma=0.5)
    assert offline.tolist() == [1.0, 1.5, 1.0]


def test_episode_ends():
    assert episode_ends(torch.tensor([False, True, True, False])) == [(0, 2), (2, 3), (3, 4)]
    assert episode_ends(torch.tensor([False, False])) == [(0, 2)]
