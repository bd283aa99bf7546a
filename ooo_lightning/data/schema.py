"""The offline transition schema every reader returns: D4RL's keys, validated.

Flat arrays, one row per transition, episodes concatenated:

* ``observations`` (N, obs_dim) float
* ``actions`` (N, act_dim) float
* ``rewards`` (N,) float (``(N, 1)`` is accepted and flattened)
* ``terminals`` (N,) bool/0-1 float: the transition ended the episode in a true terminal state
* ``timeouts`` (N,) bool/0-1 float: the episode was cut by a time limit after this transition
* ``next_observations`` (N, obs_dim) float, optional (derived when absent)

All problems are reported as :class:`DatasetError` naming the source, the key, what was
expected, what was found and what to do, because a bad dataset otherwise surfaces as an
obscure shape error deep inside training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

REQUIRED_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL_KEYS: tuple[str, ...] = ("next_observations",)

GENERATE_HINT = (
    "For the point-mass-wall and PointMaze tasks, `ooo-lightning-data point-mass-wall --out PATH` (or `pointmaze`) "
    "generates it; for D4RL tasks download the dataset's .hdf5 file and pass its path."
)


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or does not match the D4RL layout."""


def invalid_dataset(path: Path | str, key: str | None, problem: str, fix: str) -> DatasetError:
    where = f"{path}" if key is None else f"{path} [key '{key}']"
    return DatasetError(f"Invalid offline dataset {where}: {problem} {fix}")


def _check_matrix(path: Path, key: str, arr: np.ndarray, dim: int | None, what: str) -> None:
    expected = f"(N, {dim if dim is not None else f'{what}_dim'})"
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        reason = (
            f" to match the environment's {'observation' if what == 'obs' else 'action'} space"
            if dim is not None
            else ""
        )
        raise invalid_dataset(
            path,
            key,
            f"{key} has shape {tuple(arr.shape)}, expected {expected}{reason}.",
            "Check that the dataset was collected in the same environment you are training on.",
        )


def _check_vector(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:  # some writers store (N, 1)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise invalid_dataset(
            path,
            key,
            f"{key} has shape {tuple(arr.shape)}, expected (N,) or (N, 1).",
            "Store one scalar per transition.",
        )
    return arr


def _check_flags(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    arr = _check_vector(path, key, arr)
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        problem = f"{key} has dtype {arr.dtype}, expected bool or 0/1 numbers."
        raise invalid_dataset(path, key, problem, "Rewrite the flags as booleans.")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise invalid_dataset(
            path,
            key,
            f"{key} must contain only 0/1 (or bool), found {arr[first]!r} at row {first}.",
            "Rewrite the flags as booleans.",
        )
    return arr.astype(bool)


def _check_finite(path: Path, key: str, arr: np.ndarray) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.reshape(len(arr), -1).all(axis=1))
        raise invalid_dataset(
            path,
            key,
            f"{key} contains {int((~finite).sum())} non-finite values (NaN/inf), "
            f"first at row {int(bad_rows[0])}; expected only finite numbers.",
            "Drop or repair those transitions before training.",
        )


def derive_next_observations(
    observations: np.ndarray, timeouts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Successor observations for files without ``next_observations``.

    Follows D4RL's ``qlearning_dataset``: ``next_obs[i] = obs[i + 1]``.  A transition that
    ends its episode by *timeout* is dropped because row ``i + 1`` starts a new episode and
    its true successor was never recorded; the very last row is dropped for the same
    reason.  Terminal transitions are kept: their successor is never bootstrapped from, so
    the (wrong-episode) ``obs[i + 1]`` is harmless.

    Returns ``(next_observations, keep)`` where ``keep`` is a boolean mask over the N input
    rows and ``next_observations`` holds one row per kept transition.
    """
    n = len(observations)
    keep = ~timeouts.astype(bool)
    if n > 0:
        keep[-1] = False
    idx = np.flatnonzero(keep)
    return observations[idx + 1], keep


def validate_transitions(
    source: Path | str, raw: Mapping[str, np.ndarray], obs_dim: int | None = None, act_dim: int | None = None
) -> dict[str, np.ndarray]:
    """Checks and normalises D4RL-keyed arrays from any reader (HDF5, npz, Minari).

    ``source`` names the file or dataset in the errors. Returns float32 arrays and bool
    flags; ``next_observations`` are derived (dropping rows without a known successor)
    when absent. Raises :class:`DatasetError` on a wrong shape, length, dtype or value.
    """
    path = source
    raw = dict(raw)
    _check_matrix(path, "observations", raw["observations"], obs_dim, "obs")
    _check_matrix(path, "actions", raw["actions"], act_dim, "act")
    raw["rewards"] = _check_vector(path, "rewards", raw["rewards"])
    raw["terminals"] = _check_flags(path, "terminals", raw["terminals"])
    raw["timeouts"] = _check_flags(path, "timeouts", raw["timeouts"])
    if "next_observations" in raw:
        obs_width = raw["observations"].shape[1]
        _check_matrix(path, "next_observations", raw["next_observations"], obs_width, "obs")

    n = len(raw["observations"])
    for key, arr in raw.items():
        if len(arr) != n:
            raise invalid_dataset(
                path,
                key,
                f"{key} has {len(arr)} rows but observations has {n}; "
                "all keys must have the same length N.",
                "The file is inconsistent; regenerate it.",
            )
    if n == 0:
        raise invalid_dataset(path, "observations", "the dataset is empty (N = 0 transitions).", GENERATE_HINT)

    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in raw:
            if not np.issubdtype(raw[key].dtype, np.number):
                problem = f"{key} has dtype {raw[key].dtype}, expected a float array."
                raise invalid_dataset(path, key, problem, "Regenerate the file.")
            _check_finite(path, key, raw[key])

    out = {
        "observations": raw["observations"].astype(np.float32),
        "actions": raw["actions"].astype(np.float32),
        "rewards": raw["rewards"].astype(np.float32),
        "terminals": raw["terminals"],
        "timeouts": raw["timeouts"],
    }
    if "next_observations" in raw:
        out["next_observations"] = raw["next_observations"].astype(np.float32)
    else:
        next_obs, keep = derive_next_observations(out["observations"], out["timeouts"])
        if not keep.any():
            raise invalid_dataset(
                path,
                "next_observations",
                "the key is absent and no transition has a known successor "
                "(every row ends an episode by timeout or is the last one).",
                "Store next_observations explicitly.",
            )
        # The row before a dropped one now ends its episode (cut short: a time-out), else the
        # episode would run on into the next one (Monte-Carlo returns, episode statistics).
        before = np.flatnonzero(~keep) - 1
        before = before[before >= 0]
        before = before[keep[before] & ~out["terminals"][before]]
        out["timeouts"] = out["timeouts"].copy()
        out["timeouts"][before] = True
        out = {key: arr[keep] for key, arr in out.items()}
        out["next_observations"] = next_obs
    return out


def _float_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(arr, dtype=np.float32))


def to_tensordict(dataset: Mapping[str, np.ndarray]) -> TensorDict:
    """Convert a loaded D4RL dict to a TorchRL-style transition TensorDict, batch ``[N]``.

    Keys: ``observation``, ``action``, and under ``next``: ``observation``, ``reward``
    (N, 1), ``terminated``, ``truncated`` (timeout and not terminal) and ``done``
    (terminated or truncated), all flags bool (N, 1).
    """
    missing = [k for k in (*REQUIRED_KEYS, "next_observations") if k not in dataset]
    if missing:
        raise DatasetError(
            f"Invalid offline dataset dict: keys {missing} are missing (found {sorted(dataset)}). "
            "Load files with load_d4rl_hdf5, which validates them and derives next_observations."
        )
    n = len(dataset["observations"])
    terminated = torch.as_tensor(np.asarray(dataset["terminals"], dtype=bool).reshape(n, 1))
    timeouts = torch.as_tensor(np.asarray(dataset["timeouts"], dtype=bool).reshape(n, 1))
    truncated = timeouts & ~terminated
    return TensorDict(
        {
            "observation": _float_tensor(dataset["observations"]),
            "action": _float_tensor(dataset["actions"]),
            "next": {
                "observation": _float_tensor(dataset["next_observations"]),
                "reward": _float_tensor(dataset["rewards"]).reshape(n, 1),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[n],
    )
