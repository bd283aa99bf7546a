"""Reading and writing offline datasets in D4RL's HDF5 layout.

D4RL files hold flat, top-level datasets, one row per transition, episodes concatenated:

* ``observations`` (N, obs_dim) float
* ``actions`` (N, act_dim) float
* ``rewards`` (N,) float (``(N, 1)`` is accepted and flattened)
* ``terminals`` (N,) bool/0-1 float: the transition ended the episode in a true terminal state
* ``timeouts`` (N,) bool/0-1 float: the episode was cut by a time limit after this transition
* ``next_observations`` (N, obs_dim) float, optional

Anything else in the file (``infos/*``, ``metadata/*``, ...) is ignored.  All problems are
reported as :class:`DatasetError` naming the file, the key, what was expected, what was
found and what to do, because a bad dataset otherwise surfaces as an obscure shape error
deep inside training.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping

import h5py
import numpy as np
import torch
from tensordict import TensorDict

from ooo_lightning.output import atomic_path

REQUIRED_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL_KEYS: tuple[str, ...] = ("next_observations",)

_GENERATE_HINT = (
    "For the point-mass-wall and PointMaze tasks, `ooo-lightning-data point-mass-wall --out PATH` (or `pointmaze`) "
    "generates it; for D4RL tasks download the dataset's .hdf5 file and pass its path."
)


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or does not match the D4RL layout."""


def _fail(path: Path | str, key: str | None, problem: str, fix: str) -> DatasetError:
    where = f"{path}" if key is None else f"{path} [key '{key}']"
    return DatasetError(f"Invalid offline dataset {where}: {problem} {fix}")


def _read_array(f: h5py.File, path: Path, key: str) -> np.ndarray:
    if key not in f:
        present = sorted(f.keys())
        raise _fail(
            path,
            key,
            f"required key '{key}' is missing (top-level keys found: {present}).",
            "D4RL files need observations, actions, rewards, terminals and timeouts; "
            "regenerate or convert the file.",
        )
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise _fail(
            path,
            key,
            f"'{key}' is an HDF5 {type(node).__name__}, expected a dataset (array).",
            "Store each D4RL key as a top-level array.",
        )
    try:
        return np.asarray(node[()])
    except (OSError, TypeError, ValueError) as exc:  # corrupted chunk, unsupported dtype...
        raise _fail(path, key, f"could not read the array ({exc}).", "Regenerate the file.") from exc


def _check_matrix(path: Path, key: str, arr: np.ndarray, dim: int | None, what: str) -> None:
    expected = f"(N, {dim if dim is not None else f'{what}_dim'})"
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        reason = (
            f" to match the environment's {'observation' if what == 'obs' else 'action'} space"
            if dim is not None
            else ""
        )
        raise _fail(
            path,
            key,
            f"{key} has shape {tuple(arr.shape)}, expected {expected}{reason}.",
            "Check that the dataset was collected in the same environment you are training on.",
        )


def _check_vector(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:  # some writers store (N, 1)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise _fail(
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
        raise _fail(path, key, problem, "Rewrite the flags as booleans.")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _fail(
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
        raise _fail(
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


def load_d4rl_hdf5(
    path: str | os.PathLike[str], obs_dim: int | None = None, act_dim: int | None = None
) -> dict[str, np.ndarray]:
    """Load and validate a D4RL-layout HDF5 file.

    Args:
        path: the ``.hdf5`` file.
        obs_dim / act_dim: if given, the observation/action widths must match (use the
            environment's spaces) so a dataset from another task is rejected early.

    Returns:
        ``observations``, ``actions``, ``next_observations`` (float32, (N, dim)),
        ``rewards`` (float32, (N,)), ``terminals`` and ``timeouts`` (bool, (N,)).  If the
        file lacks ``next_observations`` they are derived with
        :func:`derive_next_observations`, which drops timeout-ending transitions, so N can
        be smaller than the number of rows in the file.

    Raises:
        DatasetError: missing/unreadable file, missing key, wrong shape, length mismatch,
            empty dataset or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(
            path,
            None,
            f"file not found (expected an HDF5 file at {path.resolve()}).",
            _GENERATE_HINT,
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:  # h5py raises OSError for non-HDF5 / truncated files
        raise _fail(
            path,
            None,
            f"not a readable HDF5 file ({exc}).",
            "The file may be truncated or in another format; delete it and regenerate or "
            "re-download it. " + _GENERATE_HINT,
        ) from exc
    with f:
        raw = {key: _read_array(f, path, key) for key in REQUIRED_KEYS}
        for key in OPTIONAL_KEYS:
            if key in f:
                raw[key] = _read_array(f, path, key)
    return validate_transitions(path, raw, obs_dim, act_dim)


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
            raise _fail(
                path,
                key,
                f"{key} has {len(arr)} rows but observations has {n}; "
                "all keys must have the same length N.",
                "The file is inconsistent; regenerate it.",
            )
    if n == 0:
        raise _fail(path, "observations", "the dataset is empty (N = 0 transitions).", _GENERATE_HINT)

    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in raw:
            if not np.issubdtype(raw[key].dtype, np.number):
                problem = f"{key} has dtype {raw[key].dtype}, expected a float array."
                raise _fail(path, key, problem, "Regenerate the file.")
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
            raise _fail(
                path,
                "next_observations",
                "the key is absent and no transition has a known successor "
                "(every row ends an episode by timeout or is the last one).",
                "Store next_observations explicitly.",
            )
        out = {key: arr[keep] for key, arr in out.items()}
        out["next_observations"] = next_obs
    return out


def write_d4rl_hdf5(path: str | os.PathLike[str], dataset: Mapping[str, np.ndarray]) -> Path:
    """Write ``dataset`` as top-level HDF5 arrays, atomically.

    Data goes to a temporary file in the destination directory which is then renamed over
    ``path`` (``os.replace`` is atomic on one filesystem), so an interrupted write never
    leaves a half file that a later run would try to load.  No compression: these files are
    small and uncompressed reads are faster.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in dataset.items():
                f.create_dataset(key, data=np.asarray(value))
    return path


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
