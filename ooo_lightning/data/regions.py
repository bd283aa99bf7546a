"""Removing a region of the state space from any offline dataset: the paper's goal-missing data
(antmaze-large-diverse without the surroundings of its evaluation goal) from whatever file or
Minari dataset ``data.dataset`` names.

``data.remove_region: {center: [x, y], radius: r, dims: [0, 1]}`` removes every transition
whose observation OR next observation lies within ``r`` (Euclidean distance, boundary
included) of ``center`` in the observation entries ``dims`` (default: the first
``len(center)``). This is the rule of the PointMaze generator's ``missing_goal_radius``: no
kept transition starts or ends in the region, so the data never shows a state inside it, not
even as a successor to bootstrap from.

Removing rows from the middle of an episode leaves a gap: the kept transition just before a
removed one (when it did not end its episode already) is marked as a time-out, so that
trajectories, and the Monte-Carlo returns summed along them (``data/returns.py`` ends a sum
at every ``done``), stop there instead of running across the gap.

``plot_region_cut`` draws the coverage before and after, with the circle; under ``ooo-lightning
fit`` the data module writes it to ``<run_dir>/plots/removed_region.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from ooo_lightning.config_checks import ConfigError, check_ranges
from ooo_lightning.output import save_figure

OPTION = "data.remove_region"
KEYS = ("center", "radius", "dims")
SYNTAX = "{center: [x, y], radius: r, dims: [0, 1]}"
#: Points of the removed transitions drawn over the "before" picture (a sample beyond this).
MAX_DRAWN_POINTS = 5000


@dataclass(frozen=True)
class Region:
    """A closed ball: the points within ``radius`` of ``center`` in observation entries ``dims``."""

    center: tuple[float, ...]
    radius: float
    dims: tuple[int, ...]

    @classmethod
    def parse(cls, spec: Region | Mapping[str, Any]) -> Region:
        """A Region from the config's mapping; raises ConfigError with what to fix."""
        if isinstance(spec, Region):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{OPTION} must be a mapping {SYNTAX}, got {spec!r}")
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise ConfigError(f"{OPTION}: unknown key(s) {unknown}; it takes center, radius and (optional) dims: {SYNTAX}")
        missing = [key for key in ("center", "radius") if key not in spec]
        if missing:
            raise ConfigError(f"{OPTION}: {' and '.join(missing)} missing; give {SYNTAX}")
        center = _center(spec["center"])
        radius = spec["radius"]
        radius = float(radius) if isinstance(radius, Real) and not isinstance(radius, (bool, np.bool_)) else radius
        check_ranges(OPTION, radius=(radius, "> 0"))
        dims = _dims(spec.get("dims"), len(center))
        return cls(center, radius, dims)

    def describe(self) -> str:
        return f"within {self.radius:g} of {list(self.center)} in observation entries {list(self.dims)}"

    def check_width(self, observation_dim: int, source: str) -> None:
        """The entries ``dims`` exist in observations of ``observation_dim`` entries."""
        if max(self.dims) >= observation_dim:
            raise ConfigError(
                f"{OPTION}: dims {list(self.dims)} name observation entry {max(self.dims)}, but the observations of "
                f"{source} have {observation_dim} entries (0 to {observation_dim - 1}); set dims to the position's entries"
            )

    def positions(self, observations: np.ndarray) -> np.ndarray:
        """The entries ``dims`` of each observation, float64 (distances are compared in float64)."""
        return np.asarray(observations, dtype=np.float64)[:, list(self.dims)]

    def distances(self, observations: np.ndarray) -> np.ndarray:
        return np.linalg.norm(self.positions(observations) - np.asarray(self.center), axis=1)

    def contains(self, observations: np.ndarray) -> np.ndarray:
        """Per row, whether the observation lies in the ball (its boundary included)."""
        return self.distances(observations) <= self.radius

    def record(self) -> dict[str, Any]:
        """The region as the buffer and results.json record it."""
        return {"center": list(self.center), "radius": self.radius, "dims": list(self.dims)}


def _center(value: Any) -> tuple[float, ...]:
    # numbers.Real takes numpy scalars too (a notebook's centre may be a row of the data).
    numbers = isinstance(value, (list, tuple, np.ndarray)) and all(
        isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in value
    )
    if not numbers or len(value) == 0 or not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
        raise ConfigError(f"{OPTION}: center must be a non-empty list of finite numbers (the point, e.g. [x, y]), got {value!r}")
    return tuple(float(v) for v in value)


def _dims(value: Any, size: int) -> tuple[int, ...]:
    if value is None:
        return tuple(range(size))
    indices = isinstance(value, (list, tuple, np.ndarray)) and all(
        isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) for v in value
    )
    if not indices or any(v < 0 for v in value) or len(set(value)) != len(value):
        raise ConfigError(f"{OPTION}: dims must be a list of distinct observation entries >= 0 (e.g. [0, 1]), got {value!r}")
    if len(value) != size:
        raise ConfigError(
            f"{OPTION}: center has {size} coordinates but dims names {len(value)} observation entries {list(value)}; "
            "give one entry per coordinate"
        )
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class RegionCut:
    """What ``remove_region`` did to a dataset.

    Attributes:
        region: the ball removed.
        source: the dataset's name, for messages and the picture's title.
        positions: (N, len(dims)) the position of every transition's observation before removal.
        removed: (N,) whether each transition was removed.
        gaps: kept transitions marked as time-outs because their successor was removed.
        rewarding_left: kept transitions with a reward > 0.
    """

    region: Region
    source: str
    positions: np.ndarray
    removed: np.ndarray
    gaps: int
    rewarding_left: int

    @property
    def total(self) -> int:
        return len(self.removed)

    @property
    def num_removed(self) -> int:
        return int(self.removed.sum())

    @property
    def num_kept(self) -> int:
        return self.total - self.num_removed

    def record(self) -> dict[str, Any]:
        """For ``BufferInfo.removed_region`` and results.json: the region and what it removed."""
        return {**self.region.record(), "removed_transitions": self.num_removed, "transitions_before": self.total}

    def summary(self) -> str:
        return (
            f"{OPTION}: removed {self.num_removed} of {self.total} transitions of {self.source} "
            f"({100 * self.num_removed / self.total:.1f}%), those with an observation or next observation "
            f"{self.region.describe()}; {self.gaps} trajectories now end before a gap (time-out); "
            f"{self.rewarding_left} rewarding transitions left"
        )


def remove_region(
    data: Mapping[str, np.ndarray], region: Region | Mapping[str, Any], source: str = "the dataset"
) -> tuple[dict[str, np.ndarray], RegionCut]:
    """``data`` (the validated D4RL-keyed arrays of ``schema.validate_transitions``, with
    ``next_observations``) without the transitions that touch ``region``, and what was done.

    The kept transition before each removed run of rows gets ``timeouts=True`` unless it ended
    its episode already (row i + 1 is row i's successor unless row i ends its episode, the
    layout every reader returns). Raises ConfigError when the region removes every transition
    or none (a centre in the wrong coordinates would otherwise train on the whole data).
    """
    region = Region.parse(region)
    region.check_width(data["observations"].shape[1], source)
    inside = region.contains(data["observations"]) | region.contains(data["next_observations"])
    _check_removes_some(data, region, inside, source)
    ends = np.asarray(data["terminals"], bool) | np.asarray(data["timeouts"], bool)
    gap_after = np.zeros_like(inside)
    gap_after[:-1] = ~inside[:-1] & inside[1:] & ~ends[:-1]
    timeouts = np.asarray(data["timeouts"], bool) | gap_after
    keep = ~inside
    kept = {key: np.asarray(arr)[keep] for key, arr in {**data, "timeouts": timeouts}.items()}
    cut = RegionCut(
        region=region,
        source=source,
        positions=region.positions(data["observations"]).astype(np.float32),
        removed=inside,
        gaps=int(gap_after.sum()),
        rewarding_left=int((kept["rewards"] > 0).sum()),
    )
    return kept, cut


def _check_removes_some(data: Mapping[str, np.ndarray], region: Region, inside: np.ndarray, source: str) -> None:
    if inside.all():
        raise ConfigError(
            f"{OPTION} removes all {len(inside)} transitions of {source} ({region.describe()}): nothing would be left "
            "to train on; make the radius smaller or move the centre"
        )
    if not inside.any():
        positions = region.positions(data["observations"])
        nearest = float(region.distances(data["observations"]).min())
        spans = " x ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(positions.min(axis=0), positions.max(axis=0)))
        raise ConfigError(
            f"{OPTION} removes no transition of {source}: none lies {region.describe()} (the nearest is {nearest:.3g} "
            f"away; those entries span {spans}); check center, radius and dims against the data's coordinates, "
            "or drop the option"
        )


def plot_region_cut(cut: RegionCut, path: str | Path | None = None, bins: int = 120):
    """The coverage before and after the cut, with the removed circle: on the left every
    transition's position (a log-scale heat map) with the removed ones in red, on the right the
    kept ones. Written to ``path`` (returned), or with no path the matplotlib Figure (a notebook
    shows it). With more than two dims the first two are drawn, a projection of the ball."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    if cut.positions.shape[1] == 1:
        _draw_line_cut(axes, cut, bins)
    else:
        _draw_plane_cut(fig, axes, cut, bins)
    fig.suptitle(f"{cut.source}: {OPTION} {cut.region.describe()}", fontsize=10)
    if path is None:
        return fig
    return save_figure(fig, path, dpi=110)


def _plane_extent(cut: RegionCut) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y ranges that hold every position and the whole circle, with a margin."""
    centre, radius = np.asarray(cut.region.center[:2]), cut.region.radius
    low = np.minimum(cut.positions[:, :2].min(axis=0), centre - radius)
    high = np.maximum(cut.positions[:, :2].max(axis=0), centre + radius)
    margin = 0.03 * np.maximum(high - low, 1e-6)
    return (low[0] - margin[0], high[0] + margin[0]), (low[1] - margin[1], high[1] + margin[1])


def _draw_plane_cut(fig, axes, cut: RegionCut, bins: int) -> None:
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Circle

    x_range, y_range = _plane_extent(cut)
    removed = cut.positions[cut.removed, :2]
    if len(removed) > MAX_DRAWN_POINTS:  # a fixed sample: the same picture every time
        removed = removed[np.random.default_rng(0).choice(len(removed), MAX_DRAWN_POINTS, replace=False)]
    panels = ((axes[0], cut.positions, f"before: {cut.total} transitions"),
              (axes[1], cut.positions[~cut.removed], f"after: {cut.num_kept} kept, {cut.num_removed} removed"))
    for ax, positions, title in panels:
        *_, image = ax.hist2d(positions[:, 0], positions[:, 1], bins=bins, range=(x_range, y_range), norm=LogNorm(),
                              cmin=1, cmap="viridis")
        fig.colorbar(image, ax=ax, label="transitions per bin")
        ax.add_patch(Circle(cut.region.center[:2], cut.region.radius, fill=False, linestyle="--", edgecolor="tab:red",
                            linewidth=1.5, label=f"removed region (r={cut.region.radius:g})"))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"observation[{cut.region.dims[0]}]")
        ax.set_aspect("equal")
    axes[0].scatter(removed[:, 0], removed[:, 1], s=2, color="tab:red", label="removed transitions")
    axes[0].set_ylabel(f"observation[{cut.region.dims[1]}]")
    axes[0].set_xlim(*x_range)
    axes[0].set_ylim(*y_range)
    axes[0].legend(loc="best", fontsize=7, framealpha=0.8)


def _draw_line_cut(axes, cut: RegionCut, bins: int) -> None:
    low, high = cut.region.center[0] - cut.region.radius, cut.region.center[0] + cut.region.radius
    values = cut.positions[:, 0]
    edges = np.histogram_bin_edges(np.r_[values, low, high], bins=bins)
    panels = ((axes[0], values, f"before: {cut.total} transitions"),
              (axes[1], values[~cut.removed], f"after: {cut.num_kept} kept, {cut.num_removed} removed"))
    for ax, shown, title in panels:
        ax.hist(shown, bins=edges, color="tab:blue", log=True)
        ax.axvspan(low, high, color="tab:red", alpha=0.15, label=f"removed region (r={cut.region.radius:g})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"observation[{cut.region.dims[0]}]")
    axes[0].set_ylabel("transitions per bin")
    axes[0].legend(loc="upper right", fontsize=7)
