"""``ooo-lightning-data``: the project's own offline datasets, written as D4RL HDF5, npz or Minari.

Nothing can be downloaded here, so the datasets that the tasks need are generated:

    # point-mass-wall: a noisy controller that never gets past the wall
    ooo-lightning-data point-mass-wall --out data/point_mass_wall_v1.hdf5
    # PointMaze (gymnasium-robotics) from a waypoint controller visiting random cells, the
    # way D4RL's maze2d data was made; --missing-goal-radius removes the goal region
    ooo-lightning-data pointmaze --size medium --steps 100000 --missing-goal-radius 1.0 \\
        --out data/pointmaze_medium_missing_goal.hdf5
    # the same as a local Minari dataset (under MINARI_DATASETS_PATH or ~/.minari)
    ooo-lightning-data pointmaze --size medium --format minari --out ooo/pointmaze-medium/missing-goal-v0

Each command also writes a picture of the data's coverage next to the file
(``<out>.coverage.png``; for Minari inside the dataset folder). Which tasks have a generator
and a picture is registered with the environments (``ooo_lightning.envs.task_tools``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ooo_lightning import envs
from ooo_lightning.data.d4rl import write_d4rl_hdf5
from ooo_lightning.data.sources import HDF5_SUFFIXES, NPZ_SUFFIXES, minari_root
from ooo_lightning.data.writers import check_minari_target, write_minari, write_npz

FORMATS = ("hdf5", "npz", "minari")


def coverage_path(out: str | Path, fmt: str) -> Path:
    if fmt == "minari":
        return minari_root() / str(out) / "coverage.png"
    return Path(f"{out}.coverage.png")


def generate_for_env(
    env_id: str,
    out: str | Path,
    *,
    fmt: str | None = None,
    episodes: int = 100,
    steps: int = 100_000,
    seed: int = 0,
    noise: float = 0.5,
    missing_goal_radius: float | None = None,
    overwrite: bool = True,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Generates the dataset of ``env_id`` (made with ``env_kwargs``, e.g. a point-mass-wall
    layout) and writes it to ``out`` in ``fmt`` (by default from the suffix: ``.npz`` is
    npz, anything else HDF5)."""
    if env_id not in envs.dataset_env_ids():
        raise ValueError(f"no dataset generator for {env_id!r}; known: {envs.dataset_env_ids()}")
    fmt = fmt or ("npz" if str(out).endswith(".npz") else "hdf5")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    suffixes = {"hdf5": HDF5_SUFFIXES, "npz": NPZ_SUFFIXES}.get(fmt, ())
    if suffixes and Path(out).suffix.lower() not in suffixes:
        # data.dataset tells the formats apart by suffix; a bare name would be read as a Minari id
        raise ValueError(f"--out {out} must end in {' or '.join(suffixes)} for the {fmt} format "
                         "(or use --format minari with a dataset id)")
    if fmt == "minari":
        check_minari_target(str(out), overwrite)
    tools = envs.task_tools(env_id)
    env_kwargs = dict(env_kwargs or {})
    data = tools.call("generate_dataset", episodes=episodes, steps=steps, seed=seed, noise=noise,
                      missing_goal_radius=missing_goal_radius, env_kwargs=env_kwargs)
    if fmt == "hdf5":
        write_d4rl_hdf5(out, data)
    elif fmt == "npz":
        write_npz(out, data)
    else:
        write_minari(str(out), data, env_id, overwrite=overwrite)
    if tools.plot_dataset:
        tools.call("plot_dataset", data, coverage_path(out, fmt), missing_goal_radius=missing_goal_radius, env_kwargs=env_kwargs)
    if fmt != "minari":
        write_generation_record(out, env_id, env_kwargs)
    return data


def generation_record_path(out: str | Path) -> Path:
    return Path(f"{out}.generated.json")


def _environment_record(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"env": env_id, "env_kwargs": envs.task_tools(env_id).record(env_kwargs)}


def write_generation_record(out: str | Path, env_id: str, env_kwargs: dict[str, Any]) -> Path:
    """``<out>.generated.json``: the environment the data was generated for."""
    path = generation_record_path(out)
    path.write_text(json.dumps(_environment_record(env_id, env_kwargs), indent=2))
    return path


def check_generation_record(out: str | Path, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Raises ValueError when ``out`` was generated for another environment or layout than
    the run's (a stale file would silently train on the wrong task)."""
    path = generation_record_path(out)
    if not path.is_file():
        return
    recorded, wanted = json.loads(path.read_text()), _environment_record(env_id, env_kwargs)
    if recorded != wanted:
        differ = sorted(k for k in {*recorded["env_kwargs"], *wanted["env_kwargs"]}
                        if recorded["env_kwargs"].get(k) != wanted["env_kwargs"].get(k))
        what = f"env {recorded['env']!r}" if recorded["env"] != wanted["env"] else f"other env_kwargs ({', '.join(differ)})"
        raise ValueError(
            f"offline dataset {out} was generated for {what} than this run's (see {path}); "
            "set data.dataset to a new file name, or delete the file to regenerate it"
        )


@dataclass(frozen=True)
class TaskDataset:
    """A task's generated dataset, as the data module asks for it (``DataRequest.dataset``):
    check a file against the task, or write it when it is missing."""

    env_id: str
    env_kwargs: dict[str, Any]

    def check(self, path: Path) -> None:
        check_generation_record(path, self.env_id, self.env_kwargs)

    def generate(self, path: Path, **settings: Any) -> None:
        if self.env_id not in envs.dataset_env_ids():
            raise FileNotFoundError(
                f"offline dataset {path} does not exist, and the project can only generate datasets for "
                f"{envs.dataset_env_ids()} (the environment is {self.env_id!r}); give the path of an existing "
                "D4RL HDF5 / npz file or a local Minari id."
            )
        generate_for_env(self.env_id, path, env_kwargs=self.env_kwargs, **settings)


def _summary(data: dict[str, np.ndarray]) -> str:
    n = len(data["observations"])
    episodes = int(np.sum(np.asarray(data["terminals"], bool) | np.asarray(data["timeouts"], bool)))
    rewarding = int(np.sum(np.asarray(data["rewards"]) > 0))
    return f"{n} transitions, {episodes} episode ends, {rewarding} rewarding transitions"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ooo-lightning-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="task", required=True)

    def common(p: argparse.ArgumentParser, noise: float) -> None:
        p.add_argument("--out", required=True, help="file (.hdf5, .h5, .npz) or, with --format minari, a dataset id")
        p.add_argument("--format", choices=FORMATS, default=None, help="default: from the --out suffix (hdf5 unless .npz)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--noise", type=float, default=noise, help="std of the controller's Gaussian action noise")
        p.add_argument("--no-overwrite", action="store_true", help="refuse to replace an existing Minari dataset")

    pmw = sub.add_parser("point-mass-wall", help="the scripted point-mass-wall data (never reaches the goal)")
    common(pmw, 0.5)
    pmw.add_argument("--episodes", type=int, default=100, help="episodes of up to 150 steps")
    pmw.add_argument("--env-kwargs", type=json.loads, default={}, metavar="JSON",
                     help='the layout, as in a config\'s env_kwargs, e.g. \'{"goal": [1.0, 0.3], "walls": [[[0.5, 0.1], [0.5, 1.2]]]}\'')
    maze = sub.add_parser("pointmaze", help="PointMaze data from a waypoint controller visiting random cells")
    common(maze, 0.3)
    maze.add_argument("--size", choices=("medium", "large"), default="medium")
    maze.add_argument("--steps", type=int, default=100_000, help="transitions to collect")
    maze.add_argument("--missing-goal-radius", type=float, default=None,
                      help="remove every transition within this distance of the goal (the paper's missing-goal setting)")
    args = parser.parse_args(argv)

    if args.task == "point-mass-wall":
        env_id, kwargs = envs.POINT_MASS_WALL_ID, {"episodes": args.episodes, "env_kwargs": args.env_kwargs}
    else:
        env_id = envs.POINT_MAZE_MEDIUM_ID if args.size == "medium" else envs.POINT_MAZE_LARGE_ID
        kwargs = {"steps": args.steps, "missing_goal_radius": args.missing_goal_radius}
    fmt = args.format or ("npz" if args.out.endswith(".npz") else "hdf5")
    start = time.perf_counter()
    try:
        data = generate_for_env(env_id, args.out, fmt=fmt, seed=args.seed, noise=args.noise,
                                overwrite=not args.no_overwrite, **kwargs)
    except (FileExistsError, ValueError) as err:
        sys.exit(f"ooo-lightning-data: {err}")
    where = args.out if fmt != "minari" else f"Minari dataset {args.out!r}"
    print(f"wrote {where} ({fmt}) in {time.perf_counter() - start:.1f} s: {_summary(data)}")
    print(f"coverage picture: {coverage_path(args.out, fmt)}")


if __name__ == "__main__":
    main()
