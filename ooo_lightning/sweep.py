"""``ooo-lightning sweep``: configs x seeds x variants, each an ``ooo-lightning fit`` run, as
Ray tasks (a local Ray, or a cluster with ``--address``), or one after another without Ray.

    ooo-lightning sweep --config configs/point_mass_wall/ooo_iql.yaml \\
        --config configs/point_mass_wall/ooo_iql.yaml,configs/point_mass_wall/ooo_iql_counts.yaml \\
        --seeds 0 1 2 3 4 --baseline --out runs/sweep -- --trainer.max_epochs=1

A ``--config`` is one job: a config file, or a base and its overlays joined by commas (the
files ``ooo-lightning fit`` would take as repeated ``--config``). Each run is a subprocess
``python -m ooo_lightning.cli fit`` in ``<out>/<task>/<variant>/seed_<k>`` (``members`` with
``--members``), its output in ``<run dir>.log`` beside it; the layout is the one
``ooo_lightning.results`` reads. A run that ended well (``<run dir>.done``) is skipped; one
that started (its config.yaml is there) is resumed from each phase's ``last.ckpt``. At the end the sweep
writes ``<out>/results.md`` and ``results.csv`` (per task and method: mean ± std over seeds,
the exploiter's gain over the explorer, normalized score where known) and the comparison
figures. docs/design.md#sweeps says why runs are subprocesses.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The bonus-free fine-tuning baseline of the paper (the same explorer, bonus_scale 0, no phase 3):
#: the ``no_bonus`` variant that ``ooo_lightning.results`` names "fine-tuned, no bonus".
NO_BONUS = ("--model.init_args.explorer.init_args.bonus_scale=0", "--model.init_args.exploiter=null")
EXPLORER_SEEDS = "--model.init_args.explorer.init_args.seeds"
EXPLOITER_SEEDS = "--model.init_args.exploiter.init_args.seeds"
INSTALL_RAY = "pip install 'ooo-lightning[sweep]' (or pip install ray)"


@dataclass(frozen=True)
class SweepRun:
    """One ``ooo-lightning fit`` of a sweep."""

    task: str
    variant: str
    seeds: tuple[int, ...]  # one seed, or the members of a --members run
    configs: tuple[str, ...]
    overrides: tuple[str, ...]
    run_dir: Path

    @property
    def name(self) -> str:
        return f"{self.task}/{self.variant}/{self.run_dir.name}"

    @property
    def log(self) -> Path:
        return self.run_dir.parent / f"{self.run_dir.name}.log"

    @property
    def done_file(self) -> Path:
        """Written when the run's process ends well. Not results.json: a run writes it after
        each phase, so a run killed in phase 3 has one."""
        return self.run_dir.parent / f"{self.run_dir.name}.done"

    @property
    def state(self) -> str:
        """``done``, ``started`` (killed or failed after it began: resume it) or ``new``."""
        if self.done_file.is_file() and (self.run_dir / "results.json").is_file():
            return "done"
        return "started" if (self.run_dir / "config.yaml").is_file() else "new"

    def command(self) -> list[str]:
        seed_args = [f"--seed_everything={self.seeds[0]}"]
        if len(self.seeds) > 1:
            listed = "[" + ",".join(map(str, self.seeds)) + "]"
            seed_args += [f"{EXPLORER_SEEDS}={listed}"]
            # The baseline has no exploiter (its seeds would name a null).
            seed_args += [] if set(NO_BONUS) <= set(self.overrides) else [f"{EXPLOITER_SEEDS}={listed}"]
        resume = ["--ckpt_path=last"] if self.state == "started" else []
        return [sys.executable, "-m", "ooo_lightning.cli", "fit", *(f"--config={c}" for c in self.configs), *seed_args,
                f"--trainer.default_root_dir={self.run_dir}", "--trainer.enable_progress_bar=false",
                *self.overrides, *resume]


def task_name(configs: Sequence[str]) -> str:
    """A job's folder: the last config's folder below ``configs``, then the config's stem, or
    with overlays the overlays' stems joined by ``+`` (``configs/antmaze/ooo_iql.yaml`` ->
    ``antmaze/ooo_iql``; with ``ooo_calql.yaml`` and ``large_diverse.yaml`` after it ->
    ``antmaze/ooo_calql+large_diverse``, which IQL's ``antmaze/large_diverse`` does not share)."""
    path = Path(configs[-1])
    stems = [Path(c).stem for c in (configs[1:] or configs)]
    folders = path.parent.parts
    if "configs" in folders:
        folders = folders[len(folders) - folders[::-1].index("configs"):]
    else:
        folders = ()
    return "/".join([*folders, "+".join(stems)])


def check_job(configs: Sequence[str]) -> None:
    """Each file exists; an overlay comes after its base: its first line,
    ``# ooo-lightning fit --config <base> --config <overlay>``, names the files it runs after."""
    for config in configs:
        if not Path(config).is_file():
            raise SystemExit(f"sweep: no such config file: {config}")
    first_line = Path(configs[0]).read_text().partition("\n")[0]
    needed = re.findall(r"--config (\S+)", first_line) if first_line.startswith("# ooo-lightning fit --config") else []
    if len(needed) > 1:
        raise SystemExit(f"sweep: {configs[0]} is an overlay: give its base first, as its first line runs it: "
                         f"--config {','.join(needed)}")


def plan(jobs: Sequence[Sequence[str]], seeds: Sequence[int], out: str | Path,
         variants: dict[str, Sequence[str]] | None = None, overrides: Sequence[str] = (),
         members: bool = False) -> list[SweepRun]:
    """Every run of configs x variants x seeds (with ``members``, one run per job and variant
    holding all the seeds as members)."""
    variants = variants or {"ooo": ()}
    if not seeds:
        raise SystemExit("sweep: give at least one seed")
    runs, tasks = [], {}
    for configs in jobs:
        check_job(configs)
        task = task_name(configs)
        if task in tasks:
            raise SystemExit(f"sweep: two jobs would share the folder {task}: {','.join(tasks[task])} and "
                             f"{','.join(configs)} (the folder is named after a job's overlays)")
        tasks[task] = tuple(configs)
        for variant, extra in variants.items():
            groups = [tuple(seeds)] if members else [(s,) for s in seeds]
            for group in groups:
                folder = "members" if members else f"seed_{group[0]}"
                runs.append(SweepRun(task, variant, group, tuple(configs), (*overrides, *extra),
                                     Path(out) / task / variant / folder))
    return runs


# --- running ----------------------------------------------------------------------------
def run_subprocess(command: list[str], log: str, threads: int | None, sweep_pid: int | None = None,
                   sweep_host: str | None = None) -> int:
    """Runs one ``ooo-lightning fit`` to its end, its output in ``log`` (``<run dir>.log``),
    ``<run dir>.done`` written if it ends well; its exit code. Where
    it runs on the sweep's own machine, it is killed as soon as the sweep process is gone (a
    killed sweep leaves no run going on behind the next one's back). ``<log>.pid`` names the
    process while it runs."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    watch = sweep_pid if sweep_host == socket.gethostname() else None
    pid_file = Path(f"{log}.pid")
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        pid_file.write_text(f"{socket.gethostname()} {proc.pid}\n")
        started = time.perf_counter()
        try:
            while True:
                try:
                    code = proc.wait(timeout=1.0)
                    if code == 0:  # its wall time, for tables that give it
                        Path(log).with_suffix(".done").write_text(f"{time.perf_counter() - started:.1f}\n")
                    return code
                except subprocess.TimeoutExpired:
                    if watch is not None and not _alive(watch):
                        proc.kill()
        finally:
            if proc.poll() is None:
                proc.kill()
            pid_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:
    # A Ray worker killed with its sweep takes its run down too (Linux: PR_SET_PDEATHSIG = 1).
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def wait_for_leftovers(runs: Sequence[SweepRun], printer: Callable[[str], None], timeout: float = 120.0) -> None:
    """A run of an earlier sweep still going on this machine (its ``.pid`` file names a live
    process) is waited for before its folder is touched again."""
    host = socket.gethostname()
    for run in runs:
        pid_file = Path(f"{run.log}.pid")
        if not pid_file.is_file():
            continue
        owner, _, pid = pid_file.read_text().strip().partition(" ")
        if owner != host or not pid.isdigit() or not _alive(int(pid)):
            pid_file.unlink(missing_ok=True)  # left by a process that is gone
            continue
        printer(f"sweep: {run.name} is still running from an earlier sweep (pid {pid}): waiting for it")
        deadline = time.monotonic() + timeout
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _alive(int(pid)):
            raise SystemExit(f"sweep: {run.name} is still running (pid {pid}): stop it, or wait for it, then run again")
        pid_file.unlink(missing_ok=True)


@dataclass
class Progress:
    """One line per change: done, running, waiting and failed runs, elapsed and estimated time left."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: list[str] = field(default_factory=list)
    running: int = 0
    started_at: float = field(default_factory=time.perf_counter)
    printer: Callable[[str], None] = print

    def report(self, event: str) -> None:
        elapsed = time.perf_counter() - self.started_at
        finished = self.done + len(self.failed)
        left = self.total - self.skipped - finished
        # At the rate runs have finished so far (parallel runs included).
        eta = f", about {_minutes(elapsed / finished * left)} left" if finished and left else ""
        self.printer(f"sweep [{self.skipped + self.done}/{self.total} done, {self.running} running, "
                     f"{left - self.running} waiting, {len(self.failed)} failed; {_minutes(elapsed)}{eta}] {event}")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def execute(runs: Sequence[SweepRun], *, use_ray: bool | None = None, address: str | None = None,
            cpus_per_run: float = 1, gpus_per_run: float = 0, workers: int | None = None,
            printer: Callable[[str], None] = print) -> Progress:
    """Runs what is not done yet; a failed run is reported, the others go on. ``use_ray``:
    None uses Ray when it is installed."""
    wait_for_leftovers(runs, printer)
    todo = [r for r in runs if r.state != "done"]
    progress = Progress(total=len(runs), skipped=len(runs) - len(todo), printer=printer)
    progress.report(f"{progress.skipped} done before, {sum(r.state == 'started' for r in todo)} to resume")
    if not todo:
        return progress
    if use_ray is None or use_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            if use_ray:
                raise SystemExit(f"sweep: --ray needs Ray: {INSTALL_RAY}") from None
            printer(f"sweep: Ray is not installed, so the runs go one after another; for several at once: {INSTALL_RAY}")
            use_ray = False
        else:
            use_ray = True
    if use_ray:
        _execute_on_ray(todo, progress, address, cpus_per_run, gpus_per_run, workers)
    else:
        for run in todo:
            progress.running = 1
            progress.report(f"start {run.name}" + (" (resumed)" if run.state == "started" else ""))
            code = run_subprocess(run.command(), str(run.log), None)
            progress.running = 0
            _finished(progress, run, code)
    return progress


def _finished(progress: Progress, run: SweepRun, code: int) -> None:
    if code == 0 and run.state == "done":
        progress.done += 1
        progress.report(f"done {run.name}")
    else:
        progress.failed.append(run.name)
        progress.report(f"FAILED {run.name} (exit {code}): see {run.log}")


def _execute_on_ray(todo: Sequence[SweepRun], progress: Progress, address: str | None, cpus_per_run: float,
                    gpus_per_run: float, workers: int | None) -> None:
    import ray

    if address is None:  # a local Ray of `workers` runs at a time (default: one per core)
        slots = (workers or os.cpu_count() or 1) * cpus_per_run
        ray.init(num_cpus=slots, num_gpus=None if gpus_per_run else 0, include_dashboard=False,
                 object_store_memory=100 * 2**20, log_to_driver=False, configure_logging=False)
    else:  # a cluster: the out folder must be on a filesystem every node shares
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(run_subprocess)
        threads = max(1, int(cpus_per_run))
        pending = {}
        for run in todo:
            pending[remote.remote(run.command(), str(run.log), threads, os.getpid(), socket.gethostname())] = run
            progress.report(f"queued {run.name}" + (" (resumed)" if run.state == "started" else ""))
        while pending:
            progress.running = min(len(pending), _running_slots(ray, cpus_per_run, gpus_per_run, len(pending)))
            ready, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ready[0])
            try:
                code = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the worker died (node lost, out of memory)
                progress.printer(f"sweep: {run.name}: {type(err).__name__}: {err}")
                code = -1
            progress.running = min(len(pending), progress.running)
            _finished(progress, run, code)
    finally:
        ray.shutdown()


def _running_slots(ray, cpus_per_run: float, gpus_per_run: float, pending: int) -> int:
    """How many runs the cluster holds at once (for the progress line)."""
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // cpus_per_run) if cpus_per_run else pending
    if gpus_per_run:
        slots = min(slots, int(resources.get("GPU", 0) // gpus_per_run))
    return max(1, slots)


# --- tables and figures -----------------------------------------------------------------
def write_summary(out: str | Path, printer: Callable[[str], None] = print,
                  reported: dict[tuple[str, str], float] | None = None) -> Path | None:
    """``results.md``, ``results.csv`` and the comparison figures of every run under ``out``;
    with ``reported`` (``results.read_reported_scores``), those scores beside the measured ones."""
    from ooo_lightning.results import (collect_results, plot_exploiter_vs_explorer, plot_task_bars, results_table,
                                       results_table_markdown, write_results_table_csv)

    out = Path(out)
    records = collect_results(out)
    if not records:
        printer(f"sweep: no results.json under {out} yet")
        return None
    rows = results_table(records, reported)
    table = results_table_markdown(rows)
    (out / "results.md").write_text(table + "\n")
    write_results_table_csv(rows, out / "results.csv")
    plot_task_bars(records, metric=None, path=out / "plots" / "task_bars.png")
    try:
        plot_exploiter_vs_explorer(records, metric=None, path=out / "plots" / "exploiter_vs_explorer.png")
    except ValueError:  # no (explorer, exploiter) pair yet, e.g. phase-3-only jobs
        pass
    printer("\n" + table + f"\n\nwritten: {out / 'results.md'}, {out / 'results.csv'}, {out / 'plots'}/")
    if reported is not None:  # a name that matches nothing would otherwise pass unseen
        matched = sum(row["reported_score"] is not None for row in rows)
        printer(f"--paper: a reported score for {matched} of the {len(rows)} rows (matched on task and method)")
    return out / "results.md"


# --- command line -----------------------------------------------------------------------
def _variant(text: str) -> tuple[str, list[str]]:
    name, sep, overrides = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or re.fullmatch(r"(?:.+_)?seed_\d+", name):
        raise argparse.ArgumentTypeError(f"--variant takes NAME='--key=value ...' (a folder name), got {text!r}")
    return name, shlex.split(overrides)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ooo-lightning sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, metavar="FILE[,OVERLAY...]",
                   help="one job: a config, or a base and its overlays joined by commas; repeat for more jobs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds of every job (default 0-4)")
    p.add_argument("--out", default="runs/sweep", help="where the runs and the tables go (default runs/sweep)")
    p.add_argument("--baseline", action="store_true",
                   help="also the paper's baseline: the same explorer without bonus and without phase 3 (variant no_bonus)")
    p.add_argument("--variant", action="append", type=_variant, default=[], metavar="NAME='--key=value ...'",
                   help="a variant of every job with these overrides (repeatable); without any, the job as is ('ooo')")
    p.add_argument("--members", action="store_true", help="each job's seeds as the members of one run (seeds: [...])")
    p.add_argument("--address", default=None, help="a Ray cluster to run on (e.g. auto, ray://head:10001); default: a local Ray")
    p.add_argument("--workers", type=int, default=None, help="local Ray: runs at a time (default: one per CPU core)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="Ray CPUs per run, also its torch threads (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0, help="Ray GPUs per run, e.g. 0.25 (default 0)")
    p.add_argument("--no-ray", action="store_true", help="one run after another in this process, without Ray")
    p.add_argument("--paper", metavar="CSV", help="scores reported elsewhere, printed beside the measured ones: "
                   "docs/paper_scores.csv (the paper's table) or a CSV of yours with task, method, score")
    p.add_argument("--summary-only", action="store_true", help="only write the tables and figures of the runs under --out")
    p.add_argument("overrides", nargs="*", help="after --: ooo-lightning fit overrides for every run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out)
    reported = None
    if args.paper:
        from ooo_lightning.results import read_reported_scores

        try:  # read first: a bad file fails now, not after the runs
            reported = read_reported_scores(args.paper)
        except ValueError as error:
            raise SystemExit(f"sweep: --paper: {error}") from None
    if not args.summary_only:
        variants = dict(args.variant) or {"ooo": []}
        if args.baseline:
            variants.setdefault("no_bonus", list(NO_BONUS))
        jobs = [tuple(c for c in config.split(",") if c) for config in args.config]
        runs = plan(jobs, args.seeds, out, variants, args.overrides, args.members)
        progress = execute(runs, use_ray=False if args.no_ray else None, address=args.address,
                           cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run, workers=args.workers)
    write_summary(out, reported=reported)
    if not args.summary_only and progress.failed:
        print(f"\nsweep: {len(progress.failed)} run(s) failed: {', '.join(progress.failed)}; run the same command "
              "again to retry them (finished runs are kept)")
        return 1
    return 0
