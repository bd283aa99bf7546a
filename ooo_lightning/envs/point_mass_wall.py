"""Point-mass-wall: a 2-D navigation task where the obvious path is blocked.

The point starts left of a vertical wall and the goal sits right of it, just above the
wall's lower end.  A policy that heads straight for the goal gets stuck on the wall; the
only way through is the gap below the wall (y < 0.1), which has to be found by
exploration.  This mirrors the didactic point-mass environment of the OOO paper
(arXiv 2310.08558), except for the goal radius (see ``GOAL_RADIUS``).

Geometry and constants are module-level so plotting code can draw the same scene.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

Point = tuple[float, float]

#: Displacement per unit of (clipped) action along each axis; a diagonal step moves ~0.0354.
STEP_SIZE: float = 0.025
X_BOUNDS: tuple[float, float] = (-0.25, 1.25)
Y_BOUNDS: tuple[float, float] = (-0.25, 1.45)
#: Vertical wall segment at x=0.5 from y=0.1 to y=1.2 (endpoints included).
WALL: tuple[Point, Point] = ((0.5, 0.1), (0.5, 1.2))
START: Point = (0.0, 0.5)
#: Reset adds uniform noise in [-START_NOISE, START_NOISE] to each coordinate of START.
START_NOISE: float = 0.02
GOAL: Point = (1.0, 0.15)
#: The paper uses 0.01; with continuous actions of size <= 0.0354 per step such a small
#: disc is very hard to hit, so we use 0.05 to keep the task about *exploration* rather
#: than precision.
GOAL_RADIUS: float = 0.05
MAX_EPISODE_STEPS: int = 150

_EPS = 1e-12


def _orientation(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> int:
    """Sign of the cross product (b - a) x (c - a): 1 ccw, -1 cw, 0 collinear."""
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    if abs(cross) <= _EPS:
        return 0
    return 1 if cross > 0 else -1


def _on_segment(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> bool:
    """Whether p (known to be collinear with a-b) lies within the bounding box of a-b."""
    return bool(
        min(a[0], b[0]) - _EPS <= p[0] <= max(a[0], b[0]) + _EPS
        and min(a[1], b[1]) - _EPS <= p[1] <= max(a[1], b[1]) + _EPS
    )


def segments_intersect(p0: Any, p1: Any, q0: Any, q1: Any) -> bool:
    """Closed-segment intersection test: touching (an endpoint on the other segment) counts."""
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (p0, p1, q0, q1))
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if o1 != o2 and o3 != o4:
        return True
    # Collinear / touching cases.
    return bool(
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


def crosses_wall(p0: Any, p1: Any) -> bool:
    """Whether the move p0 -> p1 crosses or touches the wall segment ``WALL``."""
    return segments_intersect(p0, p1, WALL[0], WALL[1])


class PointMassWallEnv(gym.Env[np.ndarray, np.ndarray]):
    """2-D point mass that must get around a wall to reach a small goal disc.

    * observation: float32 ``(x, y)`` within ``X_BOUNDS`` x ``Y_BOUNDS``.
    * action: float32 in ``[-1, 1]^2``; clipped, scaled by ``STEP_SIZE`` and added to the
      position, which is then clipped to the bounds.  A move that would cross or touch the
      wall is rejected (the point stays put), so the wall cannot be tunnelled through.
    * reward: 1.0 on reaching the goal disc (which also terminates), else 0.0.
    * info: ``{"success": bool}`` on every reset/step.

    Truncation after ``MAX_EPISODE_STEPS`` is done by gymnasium's ``TimeLimit`` wrapper
    added at registration (``ooo/PointMassWall-v0``), not by this class.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode is not None:
            raise ValueError(f"PointMassWallEnv does not render; got render_mode={render_mode!r}")
        self.render_mode = render_mode
        low = np.array([X_BOUNDS[0], Y_BOUNDS[0]], dtype=np.float64)
        high = np.array([X_BOUNDS[1], Y_BOUNDS[1]], dtype=np.float64)
        self._low, self._high = low, high
        self.observation_space = spaces.Box(
            low=low.astype(np.float32), high=high.astype(np.float32), dtype=np.float32
        )
        self.action_space = spaces.Box(low=-1.0, high=1.0, shape=(2,), dtype=np.float32)
        self._goal = np.asarray(GOAL, dtype=np.float64)
        # Internal state is float64 so long episodes do not accumulate float32 rounding.
        self._pos = np.asarray(START, dtype=np.float64).copy()

    @property
    def position(self) -> np.ndarray:
        """Current position as a float64 copy (for tests/plots)."""
        return self._pos.copy()

    def set_position(self, pos: Any) -> None:
        """Teleport the point (tests and scripted analyses); not used during training."""
        self._pos = np.clip(np.asarray(pos, dtype=np.float64).reshape(2), self._low, self._high)

    def _obs(self) -> np.ndarray:
        return self._pos.astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        noise = self.np_random.uniform(-START_NOISE, START_NOISE, size=2)
        self._pos = np.asarray(START, dtype=np.float64) + noise
        return self._obs(), {"success": False}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        act = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        proposed = np.clip(self._pos + act * STEP_SIZE, self._low, self._high)
        if not crosses_wall(self._pos, proposed):
            self._pos = proposed
        success = bool(np.linalg.norm(self._pos - self._goal) <= GOAL_RADIUS)
        reward = 1.0 if success else 0.0
        return self._obs(), reward, success, False, {"success": success}
