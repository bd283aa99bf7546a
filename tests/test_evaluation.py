import pytest
import torch
from torch import nn

from ooo_lightning.envs.point_mass_wall import GOAL
from ooo_lightning.evaluation import evaluate_policy


class _Waypoints(nn.Module):
    """Goes below the wall's lower end, then to the goal."""

    def __init__(self, waypoints):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.waypoints = torch.tensor(waypoints)

    def act(self, obs, deterministic=True):
        pos = obs[0]
        target = self.waypoints[-1]
        for w in self.waypoints:
            if pos[0] < w[0] - 0.01:
                target = w
                break
        return ((target - pos) / 0.025).clamp(-1, 1).unsqueeze(0)


def test_a_policy_around_the_wall_succeeds():
    result = evaluate_policy(_Waypoints([(0.45, 0.0), (0.55, 0.0), GOAL]), "ooo/PointMassWall-v1", episodes=3)
    assert result.success_rate == 1.0 and result.return_mean == pytest.approx(1.0)
    assert result.eval_steps < 3 * 150


def test_a_policy_into_the_wall_fails_every_episode():
    result = evaluate_policy(_Waypoints([GOAL]), "ooo/PointMassWall-v1", episodes=2, env_steps=7)
    assert result.success_rate == 0.0 and result.return_mean == 0.0 and result.return_std == 0.0
    assert result.eval_steps == 2 * 150 and result.env_steps == 7


def test_unknown_environment_is_named():
    with pytest.raises(ValueError, match="NoSuchEnv"):
        evaluate_policy(_Waypoints([GOAL]), "NoSuchEnv-v0", episodes=1)
