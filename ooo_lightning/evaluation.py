"""Rollouts of a policy's mean action: mean return, its spread, and success rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import ooo_lightning.envs  # noqa: F401  (registers the project's environments)


@dataclass
class EvalResult:
    return_mean: float
    return_std: float
    success_rate: float
    episodes: int
    #: Online environment steps behind the evaluated policy (its data budget), set by the caller.
    env_steps: int = 0
    #: Environment steps spent by this evaluation itself.
    eval_steps: int = 0
    #: Mean of ``info["episode_score"]`` at the episodes' last steps, for a task whose score is
    #: not its return (kitchen: D4RL's count of subtasks completed; binary adroit: whether the
    #: episode succeeded); None where none is given.
    score_mean: float | None = None

    @property
    def scored_return(self) -> float:
        """What a normalized score is computed from: ``score_mean`` where given, else the return."""
        return self.return_mean if self.score_mean is None else self.score_mean

    def to_dict(self) -> dict[str, Any]:
        entry = asdict(self)
        if self.score_mean is None:
            del entry["score_mean"]
        return entry


def mean_result(results: list[EvalResult]) -> EvalResult:
    """Several agents' results on the same episodes as one: the means of their returns and
    success rates; ``return_std`` is the spread of the agents' mean returns."""
    returns = [r.return_mean for r in results]
    mean = sum(returns) / len(returns)
    spread = (sum((x - mean) ** 2 for x in returns) / max(1, len(returns) - 1)) ** 0.5
    return EvalResult(
        return_mean=mean,
        return_std=spread,
        success_rate=sum(r.success_rate for r in results) / len(results),
        episodes=results[0].episodes,
        env_steps=results[0].env_steps,
        eval_steps=sum(r.eval_steps for r in results),
        score_mean=None if any(r.score_mean is None for r in results) else sum(r.score_mean for r in results) / len(results),
    )


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    try:
        return gym.make(env_id, **(env_kwargs or {}))
    except gym.error.Error as err:
        raise ValueError(
            f"cannot make environment {env_id!r}: {err}. Project environments are "
            f"{sorted(k for k in gym.registry if k.startswith('ooo/'))}; others must be registered "
            "gymnasium ids."
        ) from err


@torch.no_grad()
def evaluate_policy(
    policy: nn.Module,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    env_steps: int = 0,
) -> EvalResult:
    """Runs ``episodes`` episodes with ``policy.act(obs, deterministic=True)``.

    Success is the environment's ``info["success"]`` (or ``info["is_success"]``) at any step.
    An environment that reports ``info["episode_score"]`` has it averaged from each episode's
    last step into ``score_mean``.
    """
    env = make_env(env_id, env_kwargs)
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    returns, successes, scores, steps = [], [], [], 0
    try:
        for episode in range(episodes):
            obs, info = env.reset(seed=seed + episode)
            total, success, done = 0.0, False, False
            while not done:
                obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device).unsqueeze(0)
                # float(): under bf16 autocast (evaluations inside a bf16-mixed fit) the action is bf16.
                action = policy.act(obs_t, deterministic=True).squeeze(0).float().cpu().numpy()
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                success = success or bool(info.get("success", info.get("is_success", False)))
                done = terminated or truncated
                steps += 1
            returns.append(total)
            successes.append(success)
            if "episode_score" in info:
                scores.append(float(info["episode_score"]))
    finally:
        env.close()
        policy.train(was_training)
    return EvalResult(
        return_mean=float(np.mean(returns)),
        return_std=float(np.std(returns)),
        success_rate=float(np.mean(successes)),
        episodes=episodes,
        env_steps=env_steps,
        eval_steps=steps,
        score_mean=float(np.mean(scores)) if len(scores) == episodes else None,
    )
