"""Smoke runs of the whole pipeline and of phase 3 alone, through the CLI, with tiny steps."""

import json

import pytest
import torch

from conftest import REPO
from ooo_lightning.cli import OOOLightningCLI
from ooo_lightning.pipeline import format_results_table
from runs import config_args, resolved_config

TINY_PIPELINE = [
    "--model.init_args.explorer.init_args.offline_updates=32",
    "--model.init_args.explorer.init_args.online_steps=48",
    "--model.init_args.explorer.init_args.eval_every=3",
    "--model.init_args.explorer.init_args.eval_episodes=1",
    "--model.init_args.explorer.init_args.loss.init_args.hidden_dims=[32,32]",
    "--model.init_args.explorer.init_args.bonus.init_args.hidden_dims=[32]",
    "--model.init_args.exploiter.init_args.updates=32",
    "--model.init_args.exploiter.init_args.eval_every=2",
    "--model.init_args.exploiter.init_args.eval_episodes=1",
    "--model.init_args.exploiter.init_args.loss.init_args.hidden_dims=[32,32]",
    "--model.init_args.final_eval_episodes=2",
    "--trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_dataset):
    work = tmp_path_factory.mktemp("run")
    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/point_mass_wall/ooo_iql.yaml'}", f"--data.dataset={tiny_dataset}",
              f"--trainer.default_root_dir={work / 'ooo'}", *TINY_PIPELINE]
    )
    return cli.run_dir


def test_pipeline_writes_the_whole_run_directory(pipeline_run):
    results = json.loads((pipeline_run / "results.json").read_text())
    assert set(results) == {"explorer", "exploiter"}
    for entry in results.values():
        assert set(entry) >= {"return_mean", "return_std", "success_rate", "episodes", "env_steps"}
        assert entry["episodes"] == 2 and 0.0 <= entry["success_rate"] <= 1.0
    assert results["explorer"]["env_steps"] == 48 and results["exploiter"]["env_steps"] == 48
    for path in ("config.yaml", "buffer/ooo_buffer.json", "explorer/metrics.csv", "exploiter/metrics.csv",
                 "explorer/checkpoints/last.ckpt", "exploiter/checkpoints/last.ckpt",
                 "plots/learning_curves.png", "plots/visited_states.png"):
        assert (pipeline_run / path).is_file(), path
    assert "seed_everything: 0" in (pipeline_run / "config.yaml").read_text()
    assert any(f.name.startswith("events.out.tfevents") for f in (pipeline_run / "explorer").iterdir())


def _phase_three(buffer, root, *extra: str) -> OOOLightningCLI:
    """``exploiter_iql.yaml`` alone on a saved buffer, shrunk to 16 updates of 32-unit networks."""
    return OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/point_mass_wall/exploiter_iql.yaml'}", f"--data.buffer={buffer}",
              f"--trainer.default_root_dir={root}", "--model.init_args.updates=16",
              "--model.init_args.loss.init_args.hidden_dims=[32,32]", "--model.init_args.eval_every=0",
              "--trainer.enable_progress_bar=false", *extra]
    )


def test_phase_three_reruns_from_the_saved_buffer(pipeline_run, tmp_path):
    cli = _phase_three(pipeline_run / "buffer", tmp_path / "p3", "--model.init_args.online_steps_limit=20")
    results = json.loads((cli.run_dir / "results.json").read_text())
    assert set(results) == {"exploiter"} and results["exploiter"]["env_steps"] == 20


def test_phase_three_with_seeds_reports_every_member_and_their_mean(pipeline_run, tmp_path):
    cli = _phase_three(pipeline_run / "buffer", tmp_path / "p3", "--model.init_args.seeds=[4,9]")
    exploiter = json.loads((cli.run_dir / "results.json").read_text())["exploiter"]
    assert [m["seed"] for m in exploiter["members"]] == [4, 9]
    returns = [m["return_mean"] for m in exploiter["members"]]
    assert exploiter["return_mean"] == pytest.approx(sum(returns) / 2)
    assert all(m["episodes"] == exploiter["episodes"] for m in exploiter["members"])


@pytest.fixture(scope="module")
def members_run(tmp_path_factory, tiny_dataset):
    """The default job with two seeds as members (seeds_5.yaml, shrunk to seeds 3 and 5), and
    the exploiter curve apart at T = 16 and the whole buffer."""
    work = tmp_path_factory.mktemp("members")
    cli = OOOLightningCLI(
        args=["fit", *config_args("configs/point_mass_wall/seeds_5.yaml"), f"--data.dataset={tiny_dataset}",
              f"--trainer.default_root_dir={work / 'ooo'}", "--model.init_args.explorer.init_args.seeds=[3,5]",
              "--model.init_args.exploiter_online_steps=[16,48]", *TINY_PIPELINE]
    )
    return cli.run_dir


def test_seeds_as_members_report_each_seed_in_every_phase(members_run):
    results = json.loads((members_run / "results.json").read_text())
    assert set(results) == {"explorer", "exploiter_T16", "exploiter"}
    for name, steps in (("explorer", 48), ("exploiter_T16", 16), ("exploiter", 48)):
        entry = results[name]
        assert [m["seed"] for m in entry["members"]] == [3, 5], name
        assert entry["env_steps"] == steps and all(m["env_steps"] == steps for m in entry["members"]), name
        assert entry["success_rate"] == pytest.approx(sum(m["success_rate"] for m in entry["members"]) / 2)
    info = json.loads((members_run / "buffer" / "ooo_buffer.json").read_text())
    assert (info["member_seeds"], info["online_segments"], info["num_online"]) == ([3, 5], [48, 48], 96)
    table = format_results_table(results).splitlines()
    assert [row.split()[:2] for row in table[2:5]] == [["explorer", f"{results['explorer']['success_rate']:.2f}"],
                                                      ["seed", "3"], ["seed", "5"]]
    header = (members_run / "explorer" / "metrics.csv").read_text().partition("\n")[0]
    assert "eval/member_1/success_rate" in header and "bonus/online_max" in header


def test_phase_three_reruns_on_the_members_buffer_with_their_seeds(members_run, tmp_path):
    cli = _phase_three(members_run / "buffer", tmp_path / "p3", "--model.init_args.seeds=[3,5]",
                       "--model.init_args.online_steps_limit=20")
    exploiter = json.loads((cli.run_dir / "results.json").read_text())["exploiter"]
    assert [(m["seed"], m["env_steps"]) for m in exploiter["members"]] == [(3, 20), (5, 20)]


def test_a_second_run_never_overwrites_the_first(pipeline_run, tiny_dataset):
    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/point_mass_wall/explorer_iql.yaml'}", f"--data.dataset={tiny_dataset}",
              f"--trainer.default_root_dir={pipeline_run}", "--model.init_args.offline_updates=8",
              "--model.init_args.online_steps=8", "--model.init_args.eval_every=0",
              "--model.init_args.bonus.init_args.hidden_dims=[16]",
              "--model.init_args.loss.init_args.hidden_dims=[16,16]", "--trainer.enable_progress_bar=false"]
    )
    assert cli.run_dir.name == pipeline_run.name + "-v1"
    assert json.loads((pipeline_run / "results.json").read_text()).keys() == {"explorer", "exploiter"}


def test_a_wrong_config_key_is_named(capsys):
    with pytest.raises(SystemExit) as exit_info:
        OOOLightningCLI(args=["fit", f"--config={REPO / 'configs/point_mass_wall/ooo_iql.yaml'}",
                              "--model.init_args.explorer.init_args.bonus_scal=3"], run=False)
    assert exit_info.value.code != 0
    assert "bonus_scal" in capsys.readouterr().err


def test_help_lists_the_phase_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        OOOLightningCLI(args=["fit", "--model.help", "ooo_lightning.ExplorerModule"], run=False)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model.bonus_scale" in out and "--model.online_steps" in out


def _tiny(prefix: str, loss_extra: tuple[str, ...] = ()) -> list[str]:
    return [
        f"--model.init_args.{prefix}.init_args.loss.init_args.hidden_dims=[32,32]",
        f"--model.init_args.{prefix}.init_args.eval_every=0",
        *(f"--model.init_args.{prefix}.init_args.loss.init_args.{x}" for x in loss_extra),
    ]


@pytest.mark.parametrize(
    "config, extra",
    [
        ("ooo_calql.yaml", ("num_sampled_actions=2",)),
        ("ooo_iql_counts.yaml", ()),
        ("ooo_sac_online.yaml", ("num_qvalue_nets=3",)),
    ],
)
def test_every_pipeline_config_runs(config, extra, tmp_path, tiny_dataset):
    data = [] if config == "ooo_sac_online.yaml" else [f"--data.dataset={tiny_dataset}"]
    bonus = [] if config == "ooo_iql_counts.yaml" else ["--model.init_args.explorer.init_args.bonus.init_args.hidden_dims=[32]"]
    # SAC from scratch: the config's 5000-step random warm-up cut to 8 of the 32 online steps
    offline = (["--model.init_args.explorer.init_args.random_steps=8"] if config == "ooo_sac_online.yaml"
               else ["--model.init_args.explorer.init_args.offline_updates=16"])
    cli = OOOLightningCLI(
        args=["fit", *config_args(REPO / "configs/point_mass_wall" / config), *data,
              f"--trainer.default_root_dir={tmp_path / 'run'}", *offline, *bonus,
              "--model.init_args.explorer.init_args.online_steps=32",
              "--model.init_args.exploiter.init_args.updates=16",
              "--model.init_args.final_eval_episodes=1", "--trainer.enable_progress_bar=false",
              *_tiny("explorer", extra), *_tiny("exploiter", extra if config == "ooo_calql.yaml" else ())]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())
    assert set(results) == {"explorer", "exploiter"}
    assert results["explorer"]["env_steps"] == 32 and results["exploiter"]["env_steps"] == 32


def test_exploiter_curve_trains_one_fresh_agent_per_online_step_count(pipeline_run, tmp_path):
    cli = OOOLightningCLI(
        args=["fit", *config_args(REPO / "configs/point_mass_wall/exploiter_curve_iql.yaml"),
              f"--data.buffer={pipeline_run / 'buffer'}", f"--trainer.default_root_dir={tmp_path / 'curve'}",
              "--model.init_args.exploiter_online_steps=[0,20,1000]", "--model.init_args.final_eval_episodes=1",
              "--model.init_args.exploiter.init_args.updates=8", *_tiny("exploiter"),
              "--trainer.enable_progress_bar=false"]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())
    # T=1000 is beyond the 48 collected steps: the whole buffer, reported as "exploiter".
    assert list(results) == ["exploiter_T0", "exploiter_T20", "exploiter"]
    assert [r["env_steps"] for r in results.values()] == [0, 20, 48]
    for phase in results:
        assert (cli.run_dir / phase / "metrics.csv").is_file()
    assert (cli.run_dir / "plots" / "exploiter_vs_online_steps.png").is_file()


def test_exploiter_curve_together_trains_the_prefixes_in_one_fit_with_the_same_entries(pipeline_run, tmp_path):
    cli = OOOLightningCLI(
        args=["fit", *config_args(REPO / "configs/point_mass_wall/exploiter_curve_iql.yaml"),
              f"--data.buffer={pipeline_run / 'buffer'}", f"--trainer.default_root_dir={tmp_path / 'curve'}",
              "--model.init_args.exploiter_online_steps=[0,20,1000]", "--model.init_args.final_eval_episodes=1",
              "--model.init_args.exploiter_curve=together",
              "--model.init_args.exploiter.init_args.updates=8", *_tiny("exploiter"),
              "--trainer.enable_progress_bar=false"]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())
    assert list(results) == ["exploiter_T0", "exploiter_T20", "exploiter"]
    assert [r["env_steps"] for r in results.values()] == [0, 20, 48]
    ckpt = torch.load(cli.run_dir / "exploiter_curve" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ooo_num_updates"] == 8 and ckpt["state_dict"]["loss.stacked.actor.log_std"].shape[0] == 3
    assert (cli.run_dir / "plots" / "exploiter_vs_online_steps.png").is_file()


def test_a_whole_pipeline_with_exploiter_online_steps_retrains_on_each_prefix(tmp_path, tiny_dataset):
    """Phases 1-3 in one command with the curve: the explorer collects 48 steps, then one fresh
    exploiter per T on the offline data plus the first T of them."""
    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/point_mass_wall/ooo_iql.yaml'}", f"--data.dataset={tiny_dataset}",
              f"--trainer.default_root_dir={tmp_path / 'run'}", *TINY_PIPELINE,
              "--model.init_args.exploiter_online_steps=[24,0,48]", "--model.init_args.exploiter.init_args.updates=8"]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())
    assert list(results) == ["explorer", "exploiter_T0", "exploiter_T24", "exploiter"]
    assert [r["env_steps"] for r in results.values()] == [48, 0, 24, 48]
    for phase in ("exploiter_T0", "exploiter_T24", "exploiter"):
        ckpt = torch.load(cli.run_dir / phase / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["ooo_num_updates"] == 8  # each one trained from scratch, not on from the last
    assert (cli.run_dir / "plots" / "exploiter_vs_online_steps.png").is_file()


def test_losses_and_bonuses_swap_per_phase_from_the_command_line():
    from ooo_lightning.exploration import CountBonus
    from ooo_lightning.losses import CalQLLoss, IQLLoss, SACLoss

    explorer = "--model.init_args.explorer.init_args"
    cli = OOOLightningCLI(
        args=[f"--config={REPO / 'configs/point_mass_wall/ooo_iql.yaml'}",
              f"{explorer}.loss.class_path=ooo_lightning.losses.SACLoss", f"{explorer}.loss.init_args.num_qvalue_nets=4",
              f"{explorer}.bonus.class_path=ooo_lightning.exploration.CountBonus",
              "--model.init_args.exploiter.init_args.loss.class_path=ooo_lightning.losses.CalQLLoss",
              "--model.init_args.exploiter.init_args.loss.init_args.calibrate=false"],
        run=False,
    )
    pipeline = cli.model
    assert isinstance(pipeline.explorer.loss, SACLoss) and pipeline.explorer.loss.qvalue.num_nets == 4
    assert isinstance(pipeline.explorer.bonus, CountBonus)
    assert isinstance(pipeline.exploiter.loss, CalQLLoss) and not pipeline.exploiter.loss.calibrate
    assert not isinstance(pipeline.exploiter.loss, IQLLoss)


def test_pointmaze_missing_goal_config_generates_its_data_and_runs(tmp_path):
    dataset = tmp_path / "maze.hdf5"
    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/pointmaze_missing_goal/ooo_iql.yaml'}", f"--data.dataset={dataset}",
              "--data.generated_steps=3000", f"--trainer.default_root_dir={tmp_path / 'run'}",
              "--model.init_args.explorer.init_args.offline_updates=16",
              "--model.init_args.explorer.init_args.online_steps=40",
              "--model.init_args.explorer.init_args.bonus.init_args.hidden_dims=[32]",
              "--model.init_args.exploiter.init_args.updates=16",
              "--model.init_args.final_eval_episodes=1", "--trainer.enable_progress_bar=false",
              *_tiny("explorer"), *_tiny("exploiter")]
    )
    assert dataset.is_file() and (tmp_path / "maze.hdf5.coverage.png").is_file()
    results = json.loads((cli.run_dir / "results.json").read_text())
    assert results["explorer"]["env_steps"] == 40 and results["exploiter"]["episodes"] == 1
    assert (cli.run_dir / "plots" / "visited_states.png").is_file()


def test_sparse_halfcheetah_config_runs_online_from_scratch(tmp_path):
    import csv
    import math

    # float64 MuJoCo observations reach the float32 networks and buffer through DoubleToFloat
    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/halfcheetah_sparse/ooo_sac.yaml'}",
              f"--trainer.default_root_dir={tmp_path / 'run'}",
              "--model.init_args.explorer.init_args.online_steps=40",
              "--model.init_args.explorer.init_args.bonus.init_args.hidden_dims=[32]",
              "--model.init_args.exploiter.init_args.updates=16",
              "--model.init_args.final_eval_episodes=1", "--trainer.enable_progress_bar=false",
              *_tiny("explorer"), *_tiny("exploiter")]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())
    assert results["explorer"]["env_steps"] == 40 and results["exploiter"]["eval_steps"] == 1000
    # the config follows the torso's progress before any reward: the running episode's best so far
    with open(cli.run_dir / "explorer" / "metrics.csv") as f:
        progress = [float(r["online/x_progress_max"]) for r in csv.DictReader(f) if r.get("online/x_progress_max")]
    assert progress and all(math.isfinite(v) for v in progress)
    assert progress == sorted(progress) and progress[-1] != 0.0  # one episode: its max can only grow


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])  # 16-mixed: Lightning's GradScaler, on the CPU too
def test_a_mixed_precision_run_completes_with_finite_losses(tmp_path, tiny_dataset, precision):
    import csv
    import math

    cli = OOOLightningCLI(
        args=["fit", f"--config={REPO / 'configs/point_mass_wall/ooo_iql.yaml'}", f"--data.dataset={tiny_dataset}",
              f"--trainer.default_root_dir={tmp_path / 'run'}", f"--trainer.precision={precision}", *TINY_PIPELINE]
    )
    results = json.loads((cli.run_dir / "results.json").read_text())
    assert {"explorer", "exploiter"} <= set(results)
    for phase in ("explorer", "exploiter"):
        with open(cli.run_dir / phase / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        losses = [float(r[k]) for r in rows for k in r if k.startswith("loss/") and r[k] != ""]
        assert len(losses) >= 3 and all(math.isfinite(v) for v in losses), phase


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs/point_mass_wall").glob("*.yaml")))
def test_point_mass_wall_exploiters_bound_q_by_the_data_return_range(config):
    """The paper's retraining clips Q and its targets to the data's return range: from failing
    forever, (0 + bias) * scale / (1 - gamma), to the goal's reward, (1 + bias) * scale, which
    ends the episode. Without it the default exploiter's V reached +15 behind the wall, where
    every return is <= 0 (docs/default_job.md). The Cal-QL exploiter got them together with
    LayerNorm and 30000 updates: 1.00 on a buffer where it had scored 0.30 (docs/explorers.md)."""
    model = resolved_config(REPO / "configs/point_mass_wall" / config)["model"]  # an overlay on its base
    args = model["init_args"]
    exploiter = args if model["class_path"].endswith("ExploiterModule") else (args.get("exploiter") or {}).get("init_args")
    if exploiter is None:
        pytest.skip("no exploiter in this config")
    loss = exploiter["loss"]["init_args"]
    bias, scale = float(exploiter.get("reward_bias", 0.0)), float(exploiter.get("reward_scale", 1.0))
    expected = [bias * scale / (1.0 - loss["gamma"]), (1.0 + bias) * scale]
    assert loss["q_bounds"] == pytest.approx(expected)


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").glob("*/*.yaml")))
def test_clipped_rnd_bonus_never_outweighs_the_step_penalty(config):
    """Where an explorer clips its RND bonus, bonus_scale x clip is the shaped per-step penalty,
    |reward_bias| x reward_scale: reward + bonus <= 0 everywhere, so ending an episode at the
    goal is never worth less than wandering on (docs/rnd_bonus.md)."""
    model = resolved_config(REPO / "configs" / config)["model"]  # an overlay on its base
    explorer = (model["init_args"].get("explorer") or {}).get("init_args") if model["class_path"].endswith("OOOPipeline") else None
    bonus = (explorer or {}).get("bonus") or {}
    clip = (bonus.get("init_args") or {}).get("clip")
    if clip is None:
        pytest.skip("no clipped bonus in this config")
    penalty = abs(float(explorer.get("reward_bias", 0.0))) * float(explorer.get("reward_scale", 1.0))
    assert float(explorer["bonus_scale"]) * float(clip) == pytest.approx(penalty)


def test_the_readme_python_example_runs_on_a_run_directory(pipeline_run, capsys):
    """The README's "From Python" code, on this module's run directory, with fewer updates."""
    readme = (REPO / "README.md").read_text()
    code = readme.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('run = "runs/point_mass_wall/ooo_iql/seed_0"', f'run = "{pipeline_run}"')
    code = code.replace("updates=800", "updates=16")
    assert str(pipeline_run) in code and "updates=16" in code  # the README still says what is replaced
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    offline = json.loads((pipeline_run / "buffer" / "ooo_buffer.json").read_text())["num_offline"]
    assert f"{offline} 48 torch.Size([48, 2])" in printed
    assert "EvalResult(return_mean=" in printed and "env_steps=48" in printed
