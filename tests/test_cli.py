"""User errors reach the command line as one clear message and a non-zero exit."""

import h5py
import numpy as np
import torch
import pytest

from conftest import REPO
from ooo_lightning.cli import main

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
        _fit(tmp_path, f"--data.dataset={tiny_dataset}", "--model.init_args.explorer.init_args.reward_scale=.nan",
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
    from ooo_lightning.data.generate import generate_for_env
    from ooo_lightning.envs import POINT_MASS_WALL_ID

    data = tmp_path / "pmw.hdf5"
    generate_for_env(POINT_MASS_WALL_ID, data, episodes=1)  # the default layout
    with pytest.raises(SystemExit) as exit_info:
        _fit(tmp_path, f"--data.dataset={data}", "--model.init_args.explorer.init_args.env_kwargs={goal_radius: 0.01}")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "was generated for other env_kwargs (goal_radius)" in err and "Traceback" not in err
