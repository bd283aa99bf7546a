"""``ooo-lightning sweep``: the runs it plans, what it skips and resumes, the runner without
Ray, and a real sweep on a local Ray of 2 workers, killed and started again."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from ooo_lightning import sweep
from runs import EXPLOITER, EXPLORER

BASE = "configs/point_mass_wall/ooo_iql.yaml"
COUNTS = "configs/point_mass_wall/ooo_iql_counts.yaml"
CALQL = "configs/point_mass_wall/ooo_calql.yaml"


def test_the_plan_lays_runs_out_as_the_results_reader_expects(tmp_path):
    runs = sweep.plan([(BASE,), (BASE, COUNTS)], [3, 4], tmp_path, {"ooo": [], "no_bonus": list(sweep.NO_BONUS)},
                      overrides=["--a=1"])
    assert len(runs) == 2 * 2 * 2
    assert {r.run_dir.relative_to(tmp_path).as_posix() for r in runs} >= {
        "point_mass_wall/ooo_iql/ooo/seed_3", "point_mass_wall/ooo_iql_counts/no_bonus/seed_4"}
    run = next(r for r in runs if r.task == "point_mass_wall/ooo_iql_counts" and r.variant == "no_bonus")
    command = run.command()
    assert command[1:4] == ["-m", "ooo_lightning.cli", "fit"]
    assert [c for c in command if c.startswith("--config=")] == [f"--config={BASE}", f"--config={COUNTS}"]
    assert f"--seed_everything={run.seeds[0]}" in command and f"--trainer.default_root_dir={run.run_dir}" in command
    assert command.index("--a=1") < command.index(sweep.NO_BONUS[0])  # the variant's overrides last
    assert run.log == run.run_dir.parent / f"{run.run_dir.name}.log"


def test_iql_and_calql_jobs_of_one_task_get_folders_of_their_own(tmp_path):
    """The paper's table: IQL and Cal-QL over the same task overlay are two jobs."""
    iql, calql = "configs/antmaze/ooo_iql.yaml", "configs/antmaze/ooo_calql.yaml"
    large = "configs/antmaze/large_diverse.yaml"
    runs = sweep.plan([(iql,), (iql, large), (iql, calql), (iql, calql, large)], [0], tmp_path)
    assert [r.task for r in runs] == ["antmaze/ooo_iql", "antmaze/large_diverse", "antmaze/ooo_calql",
                                      "antmaze/ooo_calql+large_diverse"]


def test_members_runs_hold_the_seeds_and_the_baseline_has_no_exploiter_seeds(tmp_path):
    runs = sweep.plan([(BASE,)], [0, 1, 2], tmp_path, {"ooo": [], "no_bonus": list(sweep.NO_BONUS)}, members=True)
    ooo, no_bonus = runs
    assert ooo.run_dir == tmp_path / "point_mass_wall/ooo_iql/ooo/members"
    assert f"{EXPLORER}.seeds=[0,1,2]" in ooo.command() and f"{EXPLOITER}.seeds=[0,1,2]" in ooo.command()
    assert f"{EXPLORER}.seeds=[0,1,2]" in no_bonus.command()
    assert not any(c.startswith(f"{EXPLOITER}.seeds") for c in no_bonus.command())


def test_a_finished_run_is_skipped_and_a_started_one_resumed(tmp_path):
    run = sweep.plan([(BASE,)], [0], tmp_path)[0]
    assert run.state == "new" and "--ckpt_path=last" not in run.command()
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "config.yaml").write_text("{}")
    assert run.state == "started" and run.command()[-1] == "--ckpt_path=last"
    (run.run_dir / "results.json").write_text("{}")  # written after each phase: not the end
    assert run.state == "started"
    run.done_file.write_text("")
    assert run.state == "done"


def test_bad_jobs_and_variants_are_refused_with_one_line(tmp_path):
    with pytest.raises(SystemExit, match="no such config file: nope.yaml"):
        sweep.plan([("nope.yaml",)], [0], tmp_path)
    with pytest.raises(SystemExit, match=f"is an overlay: give its base first.*--config {BASE},{COUNTS}"):
        sweep.plan([(COUNTS,)], [0], tmp_path)
    with pytest.raises(SystemExit, match="share the folder point_mass_wall/ooo_iql"):
        sweep.plan([(BASE,), (BASE,)], [0], tmp_path)
    with pytest.raises(SystemExit, match="at least one seed"):
        sweep.plan([(BASE,)], [], tmp_path)
    with pytest.raises(SystemExit):  # argparse: a variant needs NAME=overrides and must not look like a seed folder
        sweep.parser().parse_args(["--config", BASE, "--variant", "seed_3=--a=1"])
    assert sweep.parser().parse_args(["--config", BASE, "--variant", "wide=--x=1 --y=2"]).variant == [("wide", ["--x=1", "--y=2"])]
    # A bad --paper file stops the sweep before any run starts.
    with pytest.raises(SystemExit, match="sweep: --paper: reported scores: no such file: nope.csv"):
        sweep.main(["--config", BASE, "--paper", "nope.csv", "--out", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()


def _fake_fit(fail: set[str]):
    """Stands in for ``ooo-lightning fit``: writes the run's results.json (or fails)."""
    def run_subprocess(command, log, threads):
        run_dir = Path(next(c for c in command if c.startswith("--trainer.default_root_dir=")).split("=", 1)[1])
        if run_dir.name in fail:
            return 3
        run_dir.mkdir(parents=True, exist_ok=True)
        entry = {"return_mean": 0.0, "return_std": 0.0, "success_rate": 0.5, "episodes": 1, "env_steps": 10,
                 "eval_steps": 10}
        (run_dir / "results.json").write_text(json.dumps({"explorer": entry, "exploiter": entry}))
        Path(log).with_suffix(".done").write_text("")
        return 0
    return run_subprocess


def test_without_ray_the_runs_go_one_after_another_and_a_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "run_subprocess", _fake_fit(fail={"seed_1"}))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    lines = []
    runs = sweep.plan([(BASE,)], [0, 1, 2], tmp_path)
    progress = sweep.execute(runs, printer=lines.append)
    assert (progress.done, progress.failed) == (2, ["point_mass_wall/ooo_iql/ooo/seed_1"])
    assert any("Ray is not installed" in line and "pip install" in line for line in lines)
    assert any("FAILED point_mass_wall/ooo_iql/ooo/seed_1 (exit 3): see " in line for line in lines)
    assert "[2/3 done, 0 running, 0 waiting, 1 failed" in lines[-1]
    again = sweep.execute(runs, use_ray=False, printer=lines.append)  # only the failed one runs again
    assert (again.skipped, again.done, again.failed) == (2, 0, ["point_mass_wall/ooo_iql/ooo/seed_1"])
    with pytest.raises(SystemExit, match="--ray needs Ray"):
        sweep.execute(runs, use_ray=True)
    table = sweep.write_summary(tmp_path, printer=lines.append).read_text().splitlines()
    assert len(table) == 2 + 2 and "| point_mass_wall/ooo_iql | OOO exploiter | 2 |" in table[2]
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "plots" / "task_bars.png").is_file()
    sweep.write_summary(tmp_path, printer=lines.append, reported={("point_mass_wall/ooo_iql", "OOO exploiter"): 50.0})
    assert "| 50.0 |" in (tmp_path / "results.md").read_text()
    assert lines[-1] == "--paper: a reported score for 1 of the 2 rows (matched on task and method)"


def _pid_in(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[1])
    except (FileNotFoundError, IndexError, ValueError):  # gone, or half written, as we read it
        return None


def test_a_sweep_on_a_local_ray_killed_and_started_again_finishes_without_redoing_runs(tmp_path, tiny_dataset):
    """2 configs x 2 seeds on 2 Ray workers; killed once a run has finished and another has
    started, the same command finishes the rest: the finished run is not run again, the
    started one resumes from its checkpoints, and the table holds the 4 runs."""
    pytest.importorskip("ray")
    out = tmp_path / "sweep"
    tiny = [f"--data.dataset={tiny_dataset}", f"{EXPLORER}.loss.init_args.hidden_dims=[32,32]", f"{EXPLORER}.batch_size=32",
            f"{EXPLORER}.offline_updates=40", f"{EXPLORER}.online_steps=120", f"{EXPLORER}.eval_every=0",
            f"{EXPLORER}.bonus.init_args.hidden_dims=[32]", f"{EXPLORER}.bonus.init_args.embedding_dim=32",
            f"{EXPLOITER}.loss.init_args.hidden_dims=[32,32]", f"{EXPLOITER}.batch_size=32", f"{EXPLOITER}.updates=480",
            f"{EXPLOITER}.eval_every=0", "--model.init_args.final_eval_episodes=1", "--checkpoint.every_steps=5"]
    command = [sys.executable, "-m", "ooo_lightning.cli", "sweep", "--config", BASE,
               "--config", f"{BASE},{CALQL}",
               "--seeds", "0", "1", "--out", str(out), "--workers", "2", "--", *tiny]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            done = list(out.rglob("*.done"))
            started = [c.parent for c in out.rglob("config.yaml") if not c.parent.with_suffix(".done").exists()]
            # A run still in its explorer phase has its whole exploiter phase ahead: the kill
            # cannot race its end (a run in its last steps could end before the kill reached it).
            if done and any((d / "explorer" / "checkpoints" / "last.ckpt").exists()
                            and not (d / "exploiter" / "checkpoints" / "last.ckpt").exists() for d in started):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError("no run finished while another was under way")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    # The runs go down with the sweep, within the second their watcher takes to notice.
    leftovers = [pid for f in out.rglob("*.log.pid") if (pid := _pid_in(f))]
    deadline = time.monotonic() + 30
    while any(sweep._alive(pid) for pid in leftovers) and time.monotonic() < deadline:
        time.sleep(0.2)
    # What the kill left: the runs finished, and those started but unfinished.
    finished_first = {p.with_suffix(""): p.stat().st_mtime_ns for p in out.rglob("*.done")}
    resumed = {c.parent for c in out.rglob("config.yaml") if c.parent not in finished_first}
    assert finished_first and resumed
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"{len(finished_first)} done before" in again.stdout
    for run_dir, mtime in finished_first.items():  # not run again
        assert run_dir.with_suffix(".done").stat().st_mtime_ns == mtime
        assert (run_dir.parent / f"{run_dir.name}.log").read_text().count("\n$ ") == 0
    for run_dir in resumed:  # on from its checkpoints: the second command of its log resumes
        commands = (run_dir.parent / f"{run_dir.name}.log").read_text().split("\n$ ")
        assert len(commands) == 2 and commands[1].splitlines()[0].endswith("--ckpt_path=last")
        assert (run_dir / "config.resumed.yaml").is_file() and (run_dir / "results.json").is_file()
    table = (out / "results.md").read_text().splitlines()
    assert len(table) == 2 + 4  # 2 tasks x (exploiter, explorer), each over the 2 seeds
    assert all("| 2 |" in line for line in table[2:])


def test_the_papers_table_names_jobs_the_sweep_can_run(tmp_path):
    """docs/paper_scores.csv: every row's task is the folder of a job of existing configs
    (base, optionally Cal-QL, optionally a task overlay), so --paper finds its rows."""
    from ooo_lightning.results import read_reported_scores

    rows = list(csv.DictReader((REPO / "docs" / "paper_scores.csv").open()))
    assert rows and {r["method"] for r in rows} == {"fine-tuned, no bonus", "OOO exploiter"}
    read_reported_scores(REPO / "docs" / "paper_scores.csv")  # well-formed
    for row in rows:
        domain, _, overlays = row["task"].partition("/")
        base = f"configs/{domain}/ooo_iql.yaml"
        job = [base] + [f"configs/{domain}/{stem}.yaml" for stem in overlays.split("+") if stem != "ooo_iql"]
        run = sweep.plan([[str(REPO / c) for c in job]], [0], tmp_path)[0]
        assert run.task == row["task"]
