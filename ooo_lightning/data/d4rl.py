"""Reading and writing offline datasets in D4RL's HDF5 layout.

D4RL files hold the keys of :mod:`ooo_lightning.data.schema` as flat, top-level HDF5
arrays. Anything else in the file (``infos/*``, ``metadata/*``, ...) is ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping

import h5py
import numpy as np

from ooo_lightning.data.schema import GENERATE_HINT, OPTIONAL_KEYS, REQUIRED_KEYS, invalid_dataset, validate_transitions
from ooo_lightning.output import atomic_path


def _read_array(f: h5py.File, path: Path, key: str) -> np.ndarray:
    if key not in f:
        present = sorted(f.keys())
        raise invalid_dataset(
            path,
            key,
            f"required key '{key}' is missing (top-level keys found: {present}).",
            "D4RL files need observations, actions, rewards, terminals and timeouts; "
            "regenerate or convert the file.",
        )
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise invalid_dataset(
            path,
            key,
            f"'{key}' is an HDF5 {type(node).__name__}, expected a dataset (array).",
            "Store each D4RL key as a top-level array.",
        )
    try:
        return np.asarray(node[()])
    except (OSError, TypeError, ValueError) as exc:  # corrupted chunk, unsupported dtype...
        raise invalid_dataset(path, key, f"could not read the array ({exc}).", "Regenerate the file.") from exc


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
        raise invalid_dataset(
            path,
            None,
            f"file not found (expected an HDF5 file at {path.resolve()}).",
            GENERATE_HINT,
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:  # h5py raises OSError for non-HDF5 / truncated files
        raise invalid_dataset(
            path,
            None,
            f"not a readable HDF5 file ({exc}).",
            "The file may be truncated or in another format; delete it and regenerate or "
            "re-download it. " + GENERATE_HINT,
        ) from exc
    with f:
        raw = {key: _read_array(f, path, key) for key in REQUIRED_KEYS}
        for key in OPTIONAL_KEYS:
            if key in f:
                raw[key] = _read_array(f, path, key)
    return validate_transitions(path, raw, obs_dim, act_dim)


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
