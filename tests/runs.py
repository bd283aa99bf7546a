"""A tiny OOO job as a command line, for the tests that need a real process (DDP, SIGKILL), and
the configs as the command line reads them: an overlay after its base (repeated ``--config``)."""

import copy
import functools
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from conftest import REPO

EXPLORER = "--model.init_args.explorer.init_args"
EXPLOITER = "--model.init_args.exploiter.init_args"
POINT_MASS_WALL = REPO / "configs/point_mass_wall"
#: An overlay's first line: the command that runs it after its base, paths from the repository.
OVERLAY_COMMAND = "# ooo-lightning fit --config "


def config_files(config: str | Path) -> list[Path]:
    """The files to give as ``--config``, in order, for a config (a path, or one relative to the
    repository): the file itself, or for an overlay the files of its first line, which runs it
    after its base (``# ooo-lightning fit --config <base> --config <overlay>``)."""
    path = Path(config) if Path(config).is_absolute() else REPO / config
    first_line = path.read_text().partition("\n")[0]
    if not first_line.startswith(OVERLAY_COMMAND):
        return [path]
    files = [REPO / f for f in re.findall(r"--config (\S+)", first_line)]
    assert files[-1] == path, f"{path}'s first line runs {files[-1]}, not the file itself"
    return files


def config_args(config: str | Path) -> list[str]:
    """``--config=...`` for each of ``config_files(config)``."""
    return [f"--config={f}" for f in config_files(config)]


def resolved_config(config: str | Path) -> dict:
    """The config as the command line resolves it (an overlay on its base, interpolations
    resolved, every class's defaults filled in), as a dict; nothing is instantiated."""
    return copy.deepcopy(_resolved(config))


@functools.cache
def _resolved(config: str | Path) -> dict:
    from ooo_lightning.cli import resolved_config as resolve

    return resolve(config_args(config))


def tiny_job(root: Path, dataset: Path, *extra: str, online_steps: int = 400,
             config: str | Sequence[str] = "ooo_iql.yaml") -> list[str]:
    """``ooo-lightning fit`` of a point-mass-wall config (the default job unless ``config``
    names another: an overlay runs after its base; or, as a sequence, the files to give as
    ``--config`` in order, e.g. ``("ooo_iql.yaml", "ooo_iql_counts.yaml")``), shrunk to
    seconds: 10 offline training steps, ``online_steps / 8`` online ones, 20 exploiter steps,
    32-unit networks."""
    if isinstance(config, str):
        files = config_files(POINT_MASS_WALL / config)
    else:
        files = [POINT_MASS_WALL / c for c in config]
    # The explorer's bonus is the last one the files name (an overlay may swap the base's).
    bonus = (re.findall(r"ooo_lightning\.exploration\.(\w+)", "\n".join(f.read_text() for f in files)) or [None])[-1]
    rnd = ["--model.init_args.explorer.init_args.bonus.init_args.hidden_dims=[32]",
           "--model.init_args.explorer.init_args.bonus.init_args.embedding_dim=32"] if bonus == "RNDBonus" else []
    return [
        sys.executable, "-m", "ooo_lightning.cli", "fit",
        *(f"--config={f}" for f in files),
        f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
        f"--data.dataset={dataset}",
        f"{EXPLORER}.loss.init_args.hidden_dims=[32,32]", *rnd, f"{EXPLORER}.batch_size=64",
        f"{EXPLORER}.offline_updates=80", f"{EXPLORER}.online_steps={online_steps}", f"{EXPLORER}.eval_every=0",
        f"{EXPLOITER}.loss.init_args.hidden_dims=[32,32]", f"{EXPLOITER}.batch_size=64",
        f"{EXPLOITER}.updates=160", f"{EXPLOITER}.eval_every=0",
        "--model.init_args.final_eval_episodes=3",
        *extra,
    ]


def _env() -> dict[str, str]:
    # One thread: the byte-equality tests hold only then. tests/ on the path: the callbacks in
    # resume_probe.py are named on the command line.
    path = os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def run(args: list[str], timeout: float = 300, returncode: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO)
    assert done.returncode == returncode, done.stderr[-3000:]
    return done


def start(args: list[str]) -> subprocess.Popen:
    """The job in the background, in a process group of its own (DDP's other ranks included),
    so that ``os.killpg`` stops all of it."""
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=REPO,
                            start_new_session=True)


def wait_for_checkpoint(path: Path, proc: subprocess.Popen, after_step: int, timeout: float = 120.0) -> dict:
    """Polls until ``path`` holds a checkpoint of a training step past ``after_step``; returns it."""
    import time

    import torch

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed: make it longer"
        if path.is_file():
            ckpt = torch.load(path, weights_only=True)
            if ckpt["ooo_steps_done"] > after_step:
                return ckpt
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint past step {after_step} at {path}")
