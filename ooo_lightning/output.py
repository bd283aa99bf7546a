"""Writing the run's files: atomically (a crash never leaves half a file that a later run
would read), and figures. Imports nothing of the package, so every layer may use it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file name beside ``path`` (same suffix, so writers that add one keep it),
    renamed over ``path`` when the block ends and removed if it raises. The rename is atomic
    on one filesystem: readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110, close: bool = True, **savefig: Any) -> Path:
    """Lays out ``fig``, writes it (creating the folder) and, unless ``close=False`` (a notebook
    still shows it), closes it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path
