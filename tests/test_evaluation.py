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


class _Still(nn.Module):
    def __init__(self, action_dim):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.action_dim = action_dim

    def act(self, obs, deterministic=True):
        return torch.zeros(1, self.action_dim)


def test_an_environments_episode_score_is_averaged_and_replaces_the_return_in_the_normalized_score():
    from ooo_lightning.evaluation import EvalResult, mean_result

    # The binary adroit tasks report 1 once an episode succeeded; standing still, none does.
    result = evaluate_policy(_Still(28), "ooo/AdroitDoorBinary-v1", episodes=2, env_kwargs={"max_episode_steps": 5})
    assert result.score_mean == 0.0 and result.to_dict()["score_mean"] == 0.0
    plain = EvalResult(return_mean=3.0, return_std=0.0, success_rate=0.0, episodes=1)
    assert plain.scored_return == 3.0 and "score_mean" not in plain.to_dict()  # results.json as before
    scored = EvalResult(return_mean=120.0, return_std=0.0, success_rate=0.0, episodes=1, score_mean=2.0)
    assert scored.scored_return == 2.0
    assert mean_result([scored, EvalResult(1.0, 0.0, 0.0, 1, score_mean=4.0)]).score_mean == 3.0
    assert mean_result([scored, plain]).score_mean is None
