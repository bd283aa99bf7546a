"""The command line: what a run prints (the phase's progress bar, the results table), the
seed that ``--seed_everything`` gives every part of a run, ``--print_config``, and user
errors as one clear message and a non-zero exit."""

import json
from pathlib import Path

import h5py
import numpy as np
import torch
import pytest

from conftest import REPO
from ooo_lightning.cli import RUN_DIR_ENV, OOOLightningCLI, main
from runs import OVERLAY_COMMAND, config_files, run, tiny_job

CONFIG = str(REPO / "configs/point_mass_wall/ooo_iql.yaml")


def _fit(tmp_path, *extra):
    main(["fit", f"--config={CONFIG}", f"--trainer.default_root_dir={tmp_path / 'run'}",
          "--trainer.enable_progress_bar=false", *extra])


def test_missing_dataset_names_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _fit(tmp_path, f"--data.dataset={tmp_path / 'absent.hdf5'}", "--data.generate_missing_dataset=false")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "ooo-lightning: error:" in err and "absent.hdf5" in err and "Traceback" not in err


def test_malformed_dataset_names_the_key_and_the_shape(tmp_path, capsys):
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f["observations"] = np.zeros((10, 3), dtype=np.float32)  # point-mass-wall has 2
        f["actions"] = np.zeros((10, 2), dtype=np.float32)
        f["rewards"] = np.zeros(10, dtype=np.float32)
        f["terminals"] = np.zeros(10, dtype=bool)
        f["timeouts"] = np.zeros(10, dtype=bool)
    with pytest.raises(SystemExit):
        _fit(tmp_path, f"--data.dataset={bad}")
    err = capsys.readouterr().err
    assert "bad.hdf5" in err and "observations" in err and "(10, 3)" in err


def test_nan_loss_names_phase_and_step_and_keeps_the_checkpoint_dir(tmp_path, tiny_dataset, capsys):
    with pytest.raises(SystemExit):
        _fit(tmp_path, f"--data.dataset={tiny_dataset}", "--model.init_args.explorer.init_args.reward_scale=1e38",  # a squared TD error of inf
             "--model.init_args.explorer.init_args.loss.init_args.hidden_dims=[16,16]")
    err = capsys.readouterr().err
    assert "explorer offline: non-finite loss ['qvalue'] at update 0" in err
    assert str(tmp_path / "run" / "explorer" / "checkpoints") in err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--trainer.strategy=ddp_spawn", "--trainer.devices=2"], "use --trainer.strategy ddp"),
        (["--trainer.devices=4096"], "asks for 4096 CPU processes"),
        pytest.param(["--trainer.accelerator=gpu"], "No supported gpu backend found! (this machine has 0 CUDA GPUs",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")),
        (['--model.init_args.exploiter.init_args.loss.init_args.keys={"reward": ["next", "my_reward"]}'],
         "the loss reads reward from ('next', 'my_reward')"),
        (["--model.init_args.explorer.init_args.utd_ratio=3"], "must be a multiple of utd_ratio"),
        (["--checkpoint.every_steps=0"], "every_steps must be >= 1"),
        (["--ckpt_path=last"], "holds no earlier run"),
        (["--model.init_args.explorer.init_args.env_kwargs={goal: [1.0]}"], "goal must be two finite numbers [x, y]"),
        (["--model.init_args.exploiter.init_args.env_kwargs={goal_radius: 0.01}"], "must share the task's env_kwargs"),
        (["--model.init_args.explorer=null"], "points at a setting that is null or absent"),
        (["--model.init_args.explorer.init_args.seeds=[1,2]"], "give the exploiter the same seeds"),
        (["--model.init_args.explorer.init_args.env=ooo/PointMassWal-v1"], "Did you mean: `PointMassWall`?"),
    ],
)
def test_impossible_configs_fail_at_start_up_before_any_data(tmp_path, capsys, args, expected):
    with pytest.raises(SystemExit) as exit_info:
        _fit(tmp_path, f"--data.dataset={tmp_path / 'data.hdf5'}", *args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "ooo-lightning: error:" in err and expected in err and "Traceback" not in err
    # Nothing was generated, collected or written.
    assert not (tmp_path / "data.hdf5").exists() and not (tmp_path / "run").exists()


def test_a_dataset_generated_for_another_layout_is_refused(tmp_path, capsys):
    from ooo_lightning.datasets import generate_for_env
    from ooo_lightning.envs import POINT_MASS_WALL_ID

    data = tmp_path / "pmw.hdf5"
    generate_for_env(POINT_MASS_WALL_ID, data, episodes=1)  # the default layout
    with pytest.raises(SystemExit) as exit_info:
        _fit(tmp_path, f"--data.dataset={data}", "--model.init_args.explorer.init_args.env_kwargs={goal_radius: 0.01}")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "was generated for other env_kwargs (goal_radius)" in err and "Traceback" not in err


def test_a_run_shows_each_phase_in_its_progress_bar_and_prints_the_results_table(tmp_path, tiny_dataset):
    done = run(tiny_job(tmp_path / "run", tiny_dataset, "--trainer.enable_progress_bar=true", online_steps=160))
    bars = done.stdout.replace("\r", "\n")  # Lightning's bars write to stdout
    # The description is the module's phase, not "Epoch 0"; the explorer's bar changes it
    # from offline to online on the way.
    assert "explorer offline: " in bars and "explorer online: 100%" in bars and "exploiter: 100%" in bars
    assert "Epoch 0" not in bars and "Training" not in bars and "updates_per_s=" in bars
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    table = done.stdout[done.stdout.index("policy"):].splitlines()
    assert table[0].split() == ["policy", "success", "return", "episodes", "env_steps"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:] if line.strip()}
    assert list(rows) == ["explorer", "exploiter"]
    for name, cells in rows.items():
        r = results[name]
        assert cells == [f"{r['success_rate']:.2f}", f"{r['return_mean']:.2f}", "+-", f"{r['return_std']:.2f}",
                         "3", "160"], name


def test_seed_everything_reaches_the_run_directory_and_every_module_seed(tmp_path, monkeypatch):
    """Every multi-seed command relies on it: the config's ``${seed_everything}`` is resolved
    after the command line, in the run directory and in both agents' seeds."""
    monkeypatch.chdir(tmp_path)
    cli = OOOLightningCLI(args=[f"--config={CONFIG}", "--seed_everything=3"], run=False)
    assert Path(cli.trainer.default_root_dir) == Path("runs/point_mass_wall/ooo_iql/seed_3")
    assert cli.model.explorer.seed == 3 and cli.model.exploiter.seed == 3
    assert torch.initial_seed() == 3  # Lightning seeded the process with it


def test_print_config_shows_the_resolved_config_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--config={CONFIG}", "--seed_everything=3", "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "seed_everything: 3" in out and "default_root_dir: runs/point_mass_wall/ooo_iql/seed_3" in out
    assert out.count("seed: 3") == 2  # explorer and exploiter
    assert "${" not in out  # every interpolation resolved
    assert not any(tmp_path.iterdir())  # no data generated, no run directory


#: The configs that run after a base: all but the default job of point-mass-wall's OOOPipeline jobs.
OVERLAYS = sorted(p for p in (REPO / "configs").glob("*/*.yaml") if len(config_files(p)) > 1)
_ABSENT = object()


def test_the_point_mass_wall_pipeline_variants_are_overlays_on_the_default_job():
    overlays = [p for p in OVERLAYS if p.parent.name == "point_mass_wall"]  # (the paper's tasks have their own)
    assert [p.name for p in overlays] == ["exploiter_curve_iql.yaml", "ooo_calql.yaml", "ooo_iql_counts.yaml",
                                          "ooo_sac_online.yaml", "seeds_5.yaml"]
    assert {tuple(config_files(p)[:-1]) for p in overlays} == {(REPO / "configs/point_mass_wall/ooo_iql.yaml",)}


def _settings(config: dict, path: tuple = ()) -> list[tuple[tuple, object]]:
    """(key path, value) of every setting a config file holds: its tables are walked, anything
    else (a list, null, an empty table) is a value."""
    found = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            found += _settings(value, (*path, key))
        else:
            found.append(((*path, key), value))
    return found


def _lookup(config: dict, path: tuple):
    for key in path:
        if not isinstance(config, dict) or key not in config:
            return _ABSENT
        config = config[key]
    return config


def _without(config: dict, path: tuple) -> dict:
    """A copy of ``config`` without the setting at ``path``, nor the tables that leaves empty."""
    head, *rest = path
    inner = _without(config[head], tuple(rest)) if rest else None
    return {k: (inner if k == head else v) for k, v in config.items() if k != head or inner}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_an_overlay_composes_with_its_base_and_says_only_what_it_changes(overlay, tmp_path, monkeypatch):
    """An overlay runs after its standalone base, as its first line's command says; the CLI
    accepts the two (every class built), each setting of the overlay takes effect, and each is a
    change: it differs from the base's resolved value, or the composition without it differs
    (e.g. a literal env where the base refers to the explorer that the overlay removes)."""
    import yaml

    monkeypatch.chdir(tmp_path)
    *bases, _ = files = config_files(overlay)
    command = OVERLAY_COMMAND + " --config ".join(str(f.relative_to(REPO)) for f in files)
    assert overlay.read_text().partition("\n")[0] == command
    assert all(config_files(base) == [base] for base in bases)

    cli = OOOLightningCLI(args=[f"--config={f}" for f in files], run=False)

    def resolved(*config: Path) -> dict:
        parsed = cli.parser.parse_args([f"--config={f}" for f in config])
        return yaml.safe_load(cli.parser.dump(parsed, skip_unset=False))

    composed, base = yaml.safe_load(cli.parser.dump(cli.config, skip_unset=False)), resolved(*bases)
    settings = yaml.safe_load(overlay.read_text())
    redundant = []
    for path, value in _settings(settings):
        if not (isinstance(value, str) and "${" in value):
            assert _lookup(composed, path) == value, f"{'.'.join(path)}: the overlay's {value!r} was not applied"
        if _lookup(base, path) != value:
            continue
        (tmp_path / "without.yaml").write_text(yaml.safe_dump(_without(settings, path), sort_keys=False))
        try:
            needed = resolved(*bases, tmp_path / "without.yaml") != composed
        except (SystemExit, Exception):  # the composition fails without it (e.g. a ${...} to nothing)
            needed = True
        if not needed:
            redundant.append(".".join(path))
    assert not redundant, f"{overlay.name} repeats its base's value of {redundant}"


@pytest.mark.parametrize("launcher, env, expected", [
    ("one process", {}, "run-v1"),  # beside the earlier run, never over it
    ("Lightning's DDP launcher, a child", {RUN_DIR_ENV: "{tmp}/run-v1"}, "run-v1"),  # the parent's choice
    ("torchrun, rank 0", {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "run"),
    ("torchrun, rank 1", {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, "run"),
    ("srun, task 0", {"SLURM_NTASKS": "2", "SLURM_PROCID": "0"}, "run"),
    ("srun, task 1", {"SLURM_NTASKS": "2", "SLURM_PROCID": "1"}, "run"),
])
def test_every_process_of_a_launch_picks_the_same_run_directory(tmp_path, monkeypatch, launcher, env, expected):
    """Processes started separately (torchrun, srun) cannot agree on a "-v1" suffix: all of
    them use trainer.default_root_dir itself, though an earlier run is there."""
    import types

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("an earlier run")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", RUN_DIR_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)  # restored (removed) after the test, as it may get exported
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    cli = types.SimpleNamespace(trainer=types.SimpleNamespace(default_root_dir=str(tmp_path / "run")))
    assert OOOLightningCLI._new_run_dir(cli) == tmp_path / expected, launcher


SEED_KEYS = ("seed_everything", "seed", "eval_seed", "generated_seed")  # any integer is a seed


def _numeric_settings(config: dict, path: tuple = ()) -> list[tuple[str, object]]:
    """(dotted key, value) of every number, or list of numbers, under ``config``."""
    found = []
    for key, value in config.items():
        here = (*path, key)
        if isinstance(value, dict):
            found += _numeric_settings(value, here)
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            found.append((".".join(here), value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in SEED_KEYS:
            found.append((".".join(here), value))
    return found


def _bad(value):
    """NaN for a float, -1 for a count; a [low, high] pair of floats swapped (jsonargparse itself
    refuses a NaN nested in a list, with its own multi-line message); in another list, its
    first entry."""
    if isinstance(value, list):
        if len(value) == 2 and all(isinstance(v, float) for v in value):
            return value[::-1]
        return [_bad(value[0]), *value[1:]]
    return float("nan") if isinstance(value, float) else -1


def test_every_numeric_setting_of_the_default_config_is_range_checked_at_start_up(tmp_path, capsys):
    """Each number the default job's config holds (the resolved config: the classes' defaults
    too; the trainer's flags are Lightning's own) set to NaN, or a count to -1: the command
    stops with one line naming the setting, no traceback, and nothing on disk."""
    import yaml

    cli = OOOLightningCLI(args=[f"--config={CONFIG}"], run=False)
    resolved = yaml.safe_load(cli.parser.dump(cli.config, skip_unset=False))
    settings = [(k, v) for k, v in _numeric_settings(resolved) if not k.startswith("trainer.")]
    assert len(settings) >= 50 and any(k.endswith("bonus_scale") for k, _ in settings)
    capsys.readouterr()
    unchecked = []
    for key, value in settings:
        bad = json.dumps(_bad(value)).replace("NaN", ".nan")
        with pytest.raises(SystemExit) as exit_info:
            _fit(tmp_path, f"--data.dataset={tmp_path / 'data.hdf5'}", f"--{key}={bad}")
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("ooo-lightning: error:")]
        name = key.split(".")[-1]
        if exit_info.value.code != 1 or len(lines) != 1 or name not in lines[0] or "Traceback" in err:
            unchecked.append(f"{key}={bad}: exit {exit_info.value.code}, {err.strip().splitlines()[-1:]}")
    assert not unchecked, "\n".join(unchecked)
    assert not any(tmp_path.iterdir())  # no data generated, no run directory
