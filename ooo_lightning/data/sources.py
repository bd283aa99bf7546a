"""Where offline data comes from: a D4RL HDF5 file, an npz file, or a local Minari dataset.

``data.dataset`` in a config is one string, resolved by :func:`resolve_source`:

* a path ending in ``.hdf5`` / ``.h5``: D4RL's layout (:mod:`ooo_lightning.data.d4rl`);
* a path ending in ``.npz``: the same keys, written with ``numpy.savez``;
* ``minari:<id>``, or any other string that is not an existing file: a Minari dataset id
  (``D4RL/pointmaze/medium-v2``), read from ``MINARI_DATASETS_PATH`` or ``~/.minari``.
  Nothing is downloaded.

Every reader returns the same validated dict (float32 arrays, bool flags, derived
``next_observations`` where a file lacks them) through
:func:`ooo_lightning.data.schema.validate_transitions`, so the checks and error messages are
the same whatever the format.

A task with a ``TaskLayout`` (:mod:`ooo_lightning.data.task_layout`: the paper's antmaze,
kitchen and binary adroit tasks) has its datasets read into its environment's layout: Minari's
dict observations flattened as the environment flattens them, and, with ``relabel_rewards``,
rewards and terminals recomputed with the task's own rule, whatever the format.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ooo_lightning.data.d4rl import load_d4rl_hdf5
from ooo_lightning.data.schema import OPTIONAL_KEYS, REQUIRED_KEYS, DatasetError, validate_transitions
from ooo_lightning.data.task_layout import TaskLayout, relabel

HDF5_SUFFIXES = (".hdf5", ".h5")
NPZ_SUFFIXES = (".npz",)
MINARI_PREFIX = "minari:"


@dataclass(frozen=True)
class DatasetSource:
    kind: str  # "hdf5" | "npz" | "minari"
    location: str  # file path or Minari id

    @property
    def name(self) -> str:
        """What the data is called (file stem or Minari id), for reference scores and logs."""
        return Path(self.location).stem if self.kind != "minari" else self.location


def resolve_source(spec: str) -> DatasetSource:
    if spec.startswith(MINARI_PREFIX):
        return DatasetSource("minari", spec[len(MINARI_PREFIX):])
    suffix = Path(spec).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return DatasetSource("hdf5", spec)
    if suffix in NPZ_SUFFIXES:
        return DatasetSource("npz", spec)
    if Path(spec).is_file():
        raise DatasetError(
            f"Invalid offline dataset {spec}: unknown file type {suffix!r}. Use a D4RL HDF5 file "
            f"({', '.join(HDF5_SUFFIXES)}), an npz file with the same keys (.npz), or a Minari id."
        )
    return DatasetSource("minari", spec)


def load_offline_dataset(
    spec: str,
    obs_dim: int | None = None,
    act_dim: int | None = None,
    observation_key: str | None = None,
    layout: TaskLayout | None = None,
    relabel_rewards: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Loads ``spec`` (see the module doc) and returns ``(arrays, metadata)``.

    ``metadata`` holds ``name`` and, for Minari datasets that declare them,
    ``ref_min_score`` / ``ref_max_score``. ``observation_key`` picks the entry of a
    dict-observation Minari dataset (default: the ``layout``'s flattening, else ``observation``).
    ``layout``: the task's reading of its data; ``relabel_rewards``: recompute rewards and
    terminals with its rule (False keeps the file's).
    """
    source = resolve_source(spec)
    meta: dict[str, Any] = {"name": source.name, "kind": source.kind}
    if source.kind == "minari":
        arrays, minari_meta = load_minari(source.location, obs_dim, act_dim, observation_key, layout, relabel_rewards)
        meta.update(minari_meta)
        return arrays, meta
    read = load_d4rl_hdf5 if source.kind == "hdf5" else load_npz
    arrays = read(source.location, obs_dim, act_dim)
    if layout is not None and relabel_rewards:  # flat files: the observations are the task's already
        arrays = _relabel(source.location, arrays, layout, {})
    return arrays, meta


def _relabel(source: Any, data: dict[str, np.ndarray], layout: TaskLayout,
             infos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        return relabel(data, layout, infos)
    except ValueError as err:
        raise DatasetError(f"Invalid offline dataset {source} for {layout.name}: {err}.") from err


def load_npz(path: str | os.PathLike[str], obs_dim: int | None = None, act_dim: int | None = None) -> dict[str, np.ndarray]:
    """An ``.npz`` file with D4RL's keys (``observations``, ``actions``, ``rewards``,
    ``terminals``, ``timeouts``, optional ``next_observations``)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Invalid offline dataset {path}: file not found (expected an npz file at {path.resolve()}).")
    try:
        with np.load(path, allow_pickle=False) as npz:
            present = set(npz.files)
            missing = [k for k in REQUIRED_KEYS if k not in present]
            if missing:
                raise DatasetError(
                    f"Invalid offline dataset {path} [key '{missing[0]}']: required keys {missing} are missing "
                    f"(keys found: {sorted(present)}). Save observations, actions, rewards, terminals and timeouts."
                )
            raw = {k: npz[k] for k in (*REQUIRED_KEYS, *OPTIONAL_KEYS) if k in present}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"Invalid offline dataset {path}: not a readable npz file ({exc}).") from exc
    return validate_transitions(path, raw, obs_dim, act_dim)


def minari_root() -> Path:
    """Where minari looks for local datasets (its own rule: the environment variable, else ~/.minari)."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def load_minari(
    dataset_id: str,
    obs_dim: int | None = None,
    act_dim: int | None = None,
    observation_key: str | None = None,
    layout: TaskLayout | None = None,
    relabel_rewards: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A local Minari dataset as flat D4RL-keyed arrays.

    Each episode of T steps holds T + 1 observations; transition t goes from observation t
    to t + 1. Terminations become ``terminals``, truncations ``timeouts``; an episode that
    ends with neither (a dataset cut mid-episode) is marked as a timeout, so no return or
    bootstrap runs across the boundary. With a ``layout`` the observations are the task's
    (unless ``observation_key`` picks an entry) and, with ``relabel_rewards``, so are the
    rewards and terminals, computed before the float32 cast; its ``info_keys`` are read from
    the episodes' infos (entry t + 1 belongs to transition t: entry 0 is the reset's).
    """
    source = f"minari dataset '{dataset_id}'"
    try:
        import minari
    except ImportError as exc:  # pragma: no cover - minari is a dependency
        raise DatasetError(f"Invalid offline dataset {source}: the minari package is not installed ({exc}).") from exc
    root = minari_root()
    if not (root / dataset_id / "data").is_dir():
        local = sorted(p.parent.relative_to(root).as_posix() for p in root.glob("**/data") if p.is_dir()) if root.is_dir() else []
        raise DatasetError(
            f"Invalid offline dataset {source}: not found under {root} (MINARI_DATASETS_PATH or ~/.minari; "
            f"local datasets: {local or 'none'}). Nothing is downloaded here: copy the dataset folder there, "
            "or give a file path ending in .hdf5, .h5 or .npz."
        )
    try:
        dataset = minari.load_dataset(dataset_id)
    except Exception as exc:  # minari raises several types for damaged metadata
        raise DatasetError(f"Invalid offline dataset {source}: minari could not open it ({exc}).") from exc

    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*REQUIRED_KEYS, "next_observations")}
    info_parts: dict[str, list[np.ndarray]] = {k: [] for k in (layout.info_keys if layout is not None else ())}
    for episode in dataset.iterate_episodes():
        if layout is not None and observation_key is None:
            obs = _layout_observations(source, episode, layout)
        else:
            obs = _episode_observations(source, episode, observation_key)
        steps = len(episode.rewards)
        if len(obs) != steps + 1:
            raise DatasetError(
                f"Invalid offline dataset {source} [key 'observations']: episode {episode.id} has {len(obs)} "
                f"observations for {steps} steps; Minari episodes hold steps + 1."
            )
        actions = np.asarray(episode.actions)
        if actions.ndim == 1:
            actions = actions[:, None]
        terminals = np.asarray(episode.terminations, dtype=bool).reshape(-1)
        timeouts = np.asarray(episode.truncations, dtype=bool).reshape(-1) & ~terminals
        if steps and not (terminals[-1] or timeouts[-1]):
            timeouts[-1] = True
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(actions)
        parts["rewards"].append(np.asarray(episode.rewards).reshape(-1))
        parts["terminals"].append(terminals)
        parts["timeouts"].append(timeouts)
        _collect_infos(source, episode, steps, info_parts)
    if not parts["observations"]:
        raise DatasetError(f"Invalid offline dataset {source}: it holds no episode.")
    raw = {k: np.concatenate(v) for k, v in parts.items()}
    if layout is not None and relabel_rewards:
        infos = {k: np.concatenate(v) for k, v in info_parts.items() if v is not None}
        raw = _relabel(source, raw, layout, infos)
    meta: dict[str, Any] = {}
    for key in ("ref_min_score", "ref_max_score"):
        value = dataset.storage.metadata.get(key)
        if value is not None:
            meta[key] = float(value)
    return validate_transitions(source, raw, obs_dim, act_dim), meta


def _episode_observations(source: str, episode: Any, observation_key: str | None) -> np.ndarray:
    obs = episode.observations
    if isinstance(obs, dict):
        key = observation_key or "observation"
        if key not in obs:
            raise DatasetError(
                f"Invalid offline dataset {source} [key 'observations']: observations are a dict with keys "
                f"{sorted(obs)} and none is {key!r}. Set data.observation_key to the one the environment returns."
            )
        obs = obs[key]
    elif observation_key is not None:
        raise DatasetError(
            f"Invalid offline dataset {source}: data.observation_key={observation_key!r} was given but the "
            "observations are not a dict; remove the key."
        )
    obs = np.asarray(obs)
    if obs.ndim == 1:
        obs = obs[:, None]
    return obs


# --- task layouts (data/task_layout.py) ---
def _layout_observations(source: str, episode: Any, layout: TaskLayout) -> np.ndarray:
    try:
        obs = np.asarray(layout.observations(episode.observations))
    except (KeyError, ValueError) as err:
        raise DatasetError(f"Invalid offline dataset {source} [key 'observations'] for {layout.name}: {err}.") from err
    return obs[:, None] if obs.ndim == 1 else obs


def _collect_infos(source: str, episode: Any, steps: int, parts: dict[str, list[np.ndarray] | None]) -> None:
    """Each of ``parts``' info keys for the episode's transitions; a key some episode lacks is
    dropped (set to None) for all, and the layout's rule then does without it."""
    infos = episode.infos if isinstance(episode.infos, dict) else {}
    for key, collected in parts.items():
        if collected is None:
            continue
        if key not in infos:
            parts[key] = None
            continue
        values = np.asarray(infos[key])
        if len(values) != steps + 1:
            raise DatasetError(
                f"Invalid offline dataset {source} [key 'infos/{key}']: episode {episode.id} has {len(values)} entries "
                f"for {steps} steps; Minari records the reset's info and then one per step (steps + 1)."
            )
        collected.append(values[1:])
# --- end task layouts ---
