"""A task's own reading of its datasets: observation layout and reward rule.

A Minari dataset of a gymnasium-robotics task holds what the library's environment returned
(dict observations, the library's reward), and a D4RL file what D4RL's did; the project's
environment for the task (``ooo/AntMazeUMaze-v0``, ...) returns a flat observation and its own
reward. A ``TaskLayout``, made by the environment's module with the functions its wrapper uses
(``ooo_lightning.envs.dataset_layout``), maps a dataset onto that, so the offline transitions
and the ones collected online are one observation and one reward. The module that trains asks
for it in its ``DataRequest``; the readers of :mod:`ooo_lightning.data.sources` apply it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np


class TaskLayout(Protocol):
    #: What the task is, for messages.
    name: str
    #: The step infos its reward rule reads when a dataset records them (Minari's ``infos``).
    info_keys: tuple[str, ...]

    def observations(self, observations: Any) -> np.ndarray:
        """A dataset's observations (one per step: an array, or Minari's dict of arrays) in the
        environment's flat layout."""

    def task_rewards(self, data: Mapping[str, np.ndarray], infos: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``rewards`` and ``terminals`` of the transitions ``data`` (D4RL's keys, with
        ``next_observations``) under the task's rule; ``infos`` holds each transition's recorded
        ``info_keys`` when the dataset has them. Raises ValueError for data of another task."""


def relabel(data: dict[str, np.ndarray], layout: TaskLayout, infos: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``data`` with the task's rewards and terminals. The episode boundaries stay: an episode
    end the rule no longer calls terminal becomes a time-out."""
    labels = layout.task_rewards(data, infos)
    terminals = np.asarray(labels["terminals"], dtype=bool)
    ends = np.asarray(data["terminals"], dtype=bool) | np.asarray(data["timeouts"], dtype=bool)
    return {**data, "rewards": np.asarray(labels["rewards"], dtype=np.float32), "terminals": terminals,
            "timeouts": ends & ~terminals}
