"""Shared fixtures: tiny configurations so that whole phases run in seconds."""

from pathlib import Path

import pytest

from ooo_lightning.envs.scripted import generate_point_mass_wall_dataset
from ooo_lightning.data.d4rl import write_d4rl_hdf5

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plotting functions write, kept for inspection (still written)."""
    from ooo_lightning import plots
    from ooo_lightning.envs import point_mass_pictures

    drawn = []
    write = plots.save_figure

    def keep(fig, path, **kwargs):
        drawn.append(fig)
        return write(fig, path, **kwargs)

    for module in (plots, point_mass_pictures):
        monkeypatch.setattr(module, "save_figure", keep)
    return drawn


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pmw_tiny.hdf5"
    write_d4rl_hdf5(path, generate_point_mass_wall_dataset(num_episodes=4, seed=0))
    return path


# Per seed 0, 1, 2. Two layouts: ``benchmarks/ooo_effect.py``'s (``<stem>/ooo/seed_k`` and
# ``<stem>/no_bonus/seed_k``) for a task scored by success rate, with an exploiter_T sweep, and
# ``<name>/seed_k`` with ``<name>/baseline_seed_k`` for a D4RL-like task that also has
# normalized_score. Values chosen so that means and sample stds are exact by hand.
RESULTS_FIXTURE = {
    "point_mass": {
        "ooo": {"explorer": [0.0, 0.2, 0.4], "exploiter": [0.6, 0.8, 1.0],
                "exploiter_T5000": [0.0, 0.4, 0.2]},
        "no_bonus": {"explorer": [0.1, 0.1, 0.1]},
    },
    "hopper": {  # normalized_score = 100 * success_rate
        "seed": {"explorer": [0.5, 0.6, 0.7], "exploiter": [0.7, 0.9, 0.8]},
        "baseline_seed": {"explorer": [0.4, 0.4, 0.7]},
    },
}


def _results_entry(success: float, env_steps: int, normalized: bool) -> dict:
    entry = {"return_mean": 10 * success, "return_std": 0.0, "success_rate": success, "episodes": 5,
             "env_steps": env_steps, "eval_steps": 500}
    if normalized:
        entry["normalized_score"] = 100 * success
    return entry


def write_results_tree(root: Path) -> Path:
    """Writes RESULTS_FIXTURE as results.json files under ``root`` (plus one malformed file,
    ``root/broken/seed_0/results.json``) and returns ``root``. Shared by test_results.py and
    the results notebook test."""
    import json

    def write(run_dir: Path, policies: dict[str, float], normalized: bool) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        entries = {name: _results_entry(v, int(name.removeprefix("exploiter_T")) if "_T" in name else 25000,
                                        normalized) for name, v in policies.items()}
        (run_dir / "results.json").write_text(json.dumps(entries))

    for seed in range(3):
        for variant, policies in RESULTS_FIXTURE["point_mass"].items():
            write(root / "ooo_effect" / "point_mass" / variant / f"seed_{seed}",
                  {name: values[seed] for name, values in policies.items()}, normalized=False)
        for prefix, policies in RESULTS_FIXTURE["hopper"].items():
            write(root / "d4rl" / "hopper" / f"{prefix}_{seed}",
                  {name: values[seed] for name, values in policies.items()}, normalized=True)
    broken = root / "broken" / "seed_0"
    broken.mkdir(parents=True)
    (broken / "results.json").write_text('{"explorer": {"success_rate": 0.5,')  # cut-off write
    return root
