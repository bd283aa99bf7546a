"""Gather the ``results.json`` files of many runs into one table and a few comparison figures.

Every run writes ``<run_dir>/results.json``: policy name -> {return_mean, return_std,
success_rate, episodes, env_steps, eval_steps[, normalized_score]}. This module flattens a tree
of such runs into one record per (run, policy) and compares methods across seeds and tasks.
It is what ``notebooks/results.ipynb`` shows; the logic lives here so that it is tested.

How a record's task, seed and method come from its path
-------------------------------------------------------
``benchmarks/ooo_effect.py`` lays its runs out as ``<out>/<config stem>/<variant>/seed_<k>/``
with the variant ``ooo`` (full OOO job), ``no_bonus`` (same explorer, ``bonus_scale 0``, no
exploiter) or ``exploiter_no_layer_norm``. Single runs are ``<name>/seed_<k>/`` or just
``<name>/``. The rule, applied to the directory that holds ``results.json`` (the run dir):

* seed: the run dir named ``seed_<k>`` or ``<variant>_seed_<k>`` (e.g. ``baseline_seed_2``)
  gives seed ``k``; any other name gives seed ``None``. A run of several seeds as members
  (``seeds: [...]``, its entries list ``members``) gives one record per member, with the
  member's seed, and its run dir counts as a seed folder whatever its name.
* variant: the ``<variant>_`` prefix of the seed folder if there is one, else the seed folder's
  parent when its name is one of :data:`VARIANT_DIRS`, else none.
* task: the experiment dir (the run dir without its seed folder and variant folder) as a path
  relative to ``root``, e.g. ``ooo_effect/ooo_iql`` for
  ``root/ooo_effect/ooo_iql/no_bonus/seed_0``. The full relative path, not just the last
  folder, keeps ``ooo_effect/ooo_iql`` and ``ooo_effect_50k/ooo_iql`` apart. When the
  experiment dir is ``root`` itself or above it, its own folder name is used. ``task_of``
  replaces the rule.
* method: ``explorer`` -> ``explorer (with bonus)``, ``exploiter`` -> ``OOO exploiter``, and for
  the ``no_bonus``/``baseline`` variant ``explorer`` -> ``fine-tuned, no bonus``. Other policy
  names (``exploiter_T5000``, ...) are their own method. Other variants add a suffix so that
  they are never averaged with the plain OOO job.
"""

from __future__ import annotations

import json
import re
import statistics
import textwrap
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ooo_lightning.output import save_figure

OOO_EXPLOITER = "OOO exploiter"
EXPLORER_WITH_BONUS = "explorer (with bonus)"
FINE_TUNED_NO_BONUS = "fine-tuned, no bonus"

# Folder names (and seed-folder prefixes) that name a variant of one experiment rather than a
# task, mapped to the canonical variant. ``baseline`` is accepted as a synonym of ``no_bonus``.
VARIANT_DIRS = {
    "ooo": "ooo",
    "no_bonus": "no_bonus",
    "baseline": "no_bonus",
    "exploiter_no_layer_norm": "exploiter_no_layer_norm",
}
# Suffix given to the methods of a variant, so its numbers stay a separate bar.
_VARIANT_SUFFIX = {"exploiter_no_layer_norm": ", no LayerNorm"}

_SEED_DIR = re.compile(r"^(?:(?P<variant>.+)_)?seed_(?P<seed>\d+)$")
_T_SWEEP = re.compile(r"^exploiter_T(?P<T>\d+)$")
_REQUIRED = ("success_rate", "return_mean", "env_steps")


def _parse_run_dir(run_dir: Path, root: Path, members: bool = False) -> tuple[str, int | None, str | None]:
    """(task, seed, variant) of one run directory; see the module docstring for the rule.
    ``members``: the run holds several seeds as members (a seed folder, its seeds inside)."""
    match = _SEED_DIR.match(run_dir.name)
    seed, variant, experiment = None, None, run_dir
    if match or members:
        seed = int(match["seed"]) if match else None
        experiment = run_dir.parent
        if match and match["variant"] is not None:
            variant = VARIANT_DIRS.get(match["variant"], match["variant"])
        elif experiment.name in VARIANT_DIRS:
            variant = VARIANT_DIRS[experiment.name]
            experiment = experiment.parent
    try:
        task = experiment.relative_to(root).as_posix()
    except ValueError:  # experiment dir above root: root points inside one experiment
        task = ""
    return (task if task not in ("", ".") else experiment.name), seed, variant


def method_name(policy: str, variant: str | None) -> str:
    """The method a (policy, variant) pair stands for in tables and figures."""
    if variant == "no_bonus":
        # The baseline job only has an explorer; anything else it holds is kept apart.
        return FINE_TUNED_NO_BONUS if policy == "explorer" else f"{policy} (no bonus)"
    base = {"explorer": EXPLORER_WITH_BONUS, "exploiter": OOO_EXPLOITER}.get(policy, policy)
    if variant in (None, "ooo"):
        return base
    return base + _VARIANT_SUFFIX.get(variant, f" [{variant}]")


def _read_results(path: Path) -> dict[str, dict[str, Any]] | None:
    """The parsed file, or None (with a warning naming it) when it is not a results.json."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        warnings.warn(f"skipping {path}: not readable JSON ({err})", stacklevel=3)
        return None
    def well_formed(entry: Any) -> bool:
        return isinstance(entry, dict) and all(isinstance(entry.get(key), (int, float)) for key in _REQUIRED)

    if not isinstance(data, dict) or not all(well_formed(entry) for entry in data.values()):
        warnings.warn(f"skipping {path}: expected policy -> {{{', '.join(_REQUIRED)}: number, ...}}",
                      stacklevel=3)
        return None
    return data


def collect_results(root: str | Path, task_of: Callable[[Path], str] | None = None) -> list[dict[str, Any]]:
    """One record per (run, policy) for every ``results.json`` under ``root`` (recursively).

    Record keys: task, method, policy (the raw results.json key), seed (int or None),
    success_rate, return_mean, normalized_score (None when absent), env_steps, run_dir (Path).
    ``task_of(run_dir)`` overrides the task rule of the module docstring. Files that are not
    valid results.json are skipped with a warning naming them, so one broken run does not hide
    all the others. Raises FileNotFoundError when ``root`` is not a directory (a mistyped path
    should not look like "no results").
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such results directory: {root}")
    records = []
    for path in sorted(root.rglob("results.json")):
        data = _read_results(path)
        if data is None:
            continue
        run_dir = path.parent
        members = any("members" in entry for entry in data.values())
        task, seed, variant = _parse_run_dir(run_dir, root, members)
        if task_of is not None:
            task = task_of(run_dir)
        for policy, whole in data.items():
            # A members run: each member's entry, as the run of its seed alone would hold it.
            for member_seed, entry in ([(m["seed"], m) for m in whole["members"]] if "members" in whole
                                       else [(seed, whole)]):
                records.append({
                    "task": task,
                    "method": method_name(policy, variant),
                    "policy": policy,
                    "seed": member_seed,
                    "success_rate": float(entry["success_rate"]),
                    "return_mean": float(entry["return_mean"]),
                    "normalized_score": (None if entry.get("normalized_score") is None
                                         else float(entry["normalized_score"])),
                    "env_steps": int(entry["env_steps"]),
                    "run_dir": run_dir,
                })
    return records


def default_metric(records: Iterable[dict[str, Any]]) -> str:
    """``normalized_score`` when every record has one (D4RL tasks), else ``success_rate``."""
    records = list(records)
    if records and all(r.get("normalized_score") is not None for r in records):
        return "normalized_score"
    return "success_rate"


def _tasks(records: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({r["task"] for r in records})


def metric_per_task(records: Sequence[dict[str, Any]], metric: str | None) -> dict[str, str]:
    """The metric each task is shown in: ``metric``, or with None each task's default_metric
    (so one D4RL task in normalized score does not force success rate on all of them)."""
    return {task: metric or default_metric(r for r in records if r["task"] == task) for task in _tasks(records)}


def _method_order(methods: Iterable[str]) -> list[str]:
    """The three methods of the OOO comparison first, then the T sweep by T, then the rest."""
    def key(method: str) -> tuple[int, int, str]:
        fixed = [OOO_EXPLOITER, EXPLORER_WITH_BONUS, FINE_TUNED_NO_BONUS]
        if method in fixed:
            return (0, fixed.index(method), "")
        t_match = _T_SWEEP.match(method)
        return (1, int(t_match["T"]), "") if t_match else (2, 0, method)
    return sorted(set(methods), key=key)


def _seed_key(seed: int | None) -> tuple[bool, int]:
    return (seed is None, -1 if seed is None else seed)


def _spread(values: Sequence[float]) -> float:
    """Sample standard deviation over seeds; 0 for a single seed."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: Sequence[dict[str, Any]], metric: str | None = "success_rate") -> list[dict[str, Any]]:
    """Mean, sample std and number of seeds of ``metric`` per (task, method).

    ``metric=None`` picks each task's :func:`default_metric`. Rows: task, method, metric, mean,
    std, n, seeds, values (values in seed order). Records without the metric are left out; a
    (task, method) with none left gets no row.
    """
    metrics = metric_per_task(records, metric)
    rows = []
    for task in _tasks(records):
        in_task = [r for r in records if r["task"] == task]
        for method in _method_order(r["method"] for r in in_task):
            group = sorted((r for r in in_task if r["method"] == method and r.get(metrics[task]) is not None),
                           key=lambda r: _seed_key(r["seed"]))
            if not group:
                continue
            values = [r[metrics[task]] for r in group]
            rows.append({"task": task, "method": method, "metric": metrics[task],
                         "mean": statistics.mean(values), "std": _spread(values), "n": len(values),
                         "seeds": [r["seed"] for r in group], "values": values})
    return rows


def to_markdown(rows: Sequence[dict[str, Any]], digits: int = 2) -> str:
    """A Markdown table of :func:`summarise` rows."""
    lines = ["| task | method | metric | mean ± std | seeds | per seed |", "|---|---|---|---|---|---|"]
    for row in rows:
        per_seed = " / ".join(f"{v:.{digits}f}" for v in row["values"])
        lines.append(f"| {row['task']} | {row['method']} | {row['metric']} | "
                     f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f} | {row['n']} | {per_seed} |")
    return "\n".join(lines)


#: The columns of :func:`results_table`, in order: per (task, method), each metric's mean and
#: sample std over seeds (None where no seed has it), the seeds and the success rate per seed.
TABLE_METRICS = ("success_rate", "normalized_score", "return_mean")


def gain_percent(exploiter: float, explorer: float) -> float | None:
    """The exploiter's gain over the explorer in percent of the explorer's value, as the paper
    reports it (+26% IQL, +14% Cal-QL); None when the explorer's value is 0 (undefined)."""
    return None if explorer == 0 else 100.0 * (exploiter - explorer) / abs(explorer)


def read_reported_scores(path: str | Path) -> dict[tuple[str, str], float]:
    """Scores reported elsewhere (a paper's table) to print beside the measured ones: a CSV with
    the columns ``task`` and ``method`` in this project's names (a sweep's task folder, e.g.
    ``antmaze/large_diverse``; ``OOO exploiter``, ``fine-tuned, no bonus``), ``score`` (the
    normalized score; blank where not known) and any others (the paper's names, the source).
    Raises ValueError with one line on a missing file, column or a score that is no number."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reported scores: no such file: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"task", "method", "score"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"reported scores: {path} lacks the column(s) {', '.join(sorted(missing))} "
                             "(it needs task, method and score)")
        scores = {}
        for line, row in enumerate(reader, start=2):
            text = (row["score"] or "").strip()
            if not text:
                continue
            try:
                scores[(row["task"].strip(), row["method"].strip())] = float(text)
            except ValueError:
                raise ValueError(f"reported scores: {path} line {line}: score {text!r} is not a number") from None
    return scores


def results_table(records: Sequence[dict[str, Any]],
                  reported: dict[tuple[str, str], float] | None = None) -> list[dict[str, Any]]:
    """One row per (task, method): n, seeds, ``<metric>_mean`` and ``<metric>_std`` for each of
    :data:`TABLE_METRICS` (None when no seed has it, e.g. a task without D4RL reference
    returns), ``success_per_seed``, and on the OOO exploiter's row ``gain_percent``: its gain
    over the explorer (with bonus) in the task's default metric (normalized score where every
    run has one, else success rate), None when undefined or either is missing. With
    ``reported`` (:func:`read_reported_scores`), ``reported_score``: the score reported for the
    (task, method), None where none is."""
    rows = []
    for task in _tasks(records):
        in_task = [r for r in records if r["task"] == task]
        means = {}
        for method in _method_order(r["method"] for r in in_task):
            group = sorted((r for r in in_task if r["method"] == method), key=lambda r: _seed_key(r["seed"]))
            row: dict[str, Any] = {"task": task, "method": method, "n": len(group), "seeds": [r["seed"] for r in group]}
            for metric in TABLE_METRICS:
                values = [r[metric] for r in group if r.get(metric) is not None]
                row[f"{metric}_mean"] = statistics.mean(values) if values else None
                row[f"{metric}_std"] = _spread(values) if values else None
            row["success_per_seed"] = [r["success_rate"] for r in group]
            row["gain_percent"] = None
            if reported is not None:
                row["reported_score"] = reported.get((task, method))
            means[method] = row
            rows.append(row)
        metric = default_metric(in_task)
        exploiter, explorer = means.get(OOO_EXPLOITER), means.get(EXPLORER_WITH_BONUS)
        if exploiter and explorer and exploiter[f"{metric}_mean"] is not None and explorer[f"{metric}_mean"] is not None:
            exploiter["gain_percent"] = gain_percent(exploiter[f"{metric}_mean"], explorer[f"{metric}_mean"])
    return rows


def _mean_std(row: dict[str, Any], metric: str, digits: int) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`results_table` as Markdown: success rate, normalized score and return, mean ±
    sample std over the seeds, the exploiter's gain over the explorer, success per seed; the
    reported normalized score beside the measured one when the rows carry one."""
    reported = any("reported_score" in row for row in rows)
    head = ["task", "method", "seeds", "success rate", "normalized score", *(["reported"] if reported else []),
            "return", "gain over explorer", "success per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        gain = "" if row["gain_percent"] is None else f"{row['gain_percent']:+.0f}%"
        if row["method"] == OOO_EXPLOITER and row["gain_percent"] is None:
            gain = "n/a"  # the explorer scored 0 (or one of them is missing): a percentage is undefined
        per_seed = " / ".join(f"{v:.2f}" for v in row["success_per_seed"])
        cells = [row["task"], row["method"], str(row["n"]), _mean_std(row, "success_rate", 2),
                 _mean_std(row, "normalized_score", 1)]
        if reported:
            cells.append("-" if row.get("reported_score") is None else f"{row['reported_score']:.1f}")
        cells += [_mean_std(row, "return_mean", 2), gain, per_seed]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results_table_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """:func:`results_table` as CSV, one column per field (seeds and per-seed values joined
    with spaces), for a spreadsheet or pandas."""
    import csv

    fields = ["task", "method", "n", "seeds", *(f"{m}_{s}" for m in TABLE_METRICS for s in ("mean", "std")),
              "gain_percent", "success_per_seed"]
    if any("reported_score" in row for row in rows):
        fields.insert(fields.index("gain_percent"), "reported_score")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**{k: row.get(k) for k in fields}, "seeds": " ".join(map(str, row["seeds"])),
                             "success_per_seed": " ".join(f"{v:g}" for v in row["success_per_seed"])})
    return path


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    """The figure, also written to ``path`` if given; left open for a notebook to show."""
    if path is None:
        fig.tight_layout()
    else:  # bbox "tight": legends placed outside the axes stay in
        save_figure(fig, path, dpi=120, close=False, bbox_inches="tight")
    return fig


def _by_metric(items: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Items grouped by their metric, in first-seen order. Each metric gets its own panel:
    a normalized score (0-100) and a success rate (0-1) on one axis would flatten the latter."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item["metric"], []).append(item)
    return groups


def _panels(fig: Figure, n: int, width_ratios: Sequence[float] | None = None) -> list:
    return list(fig.subplots(1, n, squeeze=False, width_ratios=width_ratios)[0])


def _dot_offsets(n: int, width: float) -> np.ndarray:
    """Fixed horizontal offsets so that equal seed values stay visible as separate dots."""
    return np.linspace(-width / 4, width / 4, n) if n > 1 else np.zeros(n)


def plot_task_bars(records: Sequence[dict[str, Any]], metric: str | None = "success_rate",
                   path: str | Path | None = None) -> Figure:
    """Grouped bars: per task one bar per method at the mean over seeds, the sample std as
    error bar and each seed's value as a dot on its bar. ``metric=None``: each task's default;
    tasks shown in different metrics go to separate panels.

    The figure is built without pyplot (no global figure state to leak from a loop or a test);
    Jupyter shows it with ``display(fig)``. Saved to ``path`` when given.
    """
    rows = summarise(records, metric)
    if not rows:
        raise ValueError("no records with the requested metric to plot")
    colors = {m: f"C{i % 10}" for i, m in enumerate(_method_order(row["method"] for row in rows))}
    panels = _by_metric(rows)
    fig = Figure(figsize=(min(18.0, max(7.0, 2.5 + 0.7 * len(rows))), 4.2))
    labelled = set()
    for ax, (panel_metric, panel_rows) in zip(_panels(fig, len(panels), [len(r) for r in panels.values()]),
                                              panels.items()):
        tasks = list(dict.fromkeys(row["task"] for row in panel_rows))
        per_task = {t: [row for row in panel_rows if row["task"] == t] for t in tasks}
        width = 0.8 / max(len(group) for group in per_task.values())
        for x_task, task in enumerate(tasks):
            group = per_task[task]
            for i, row in enumerate(group):
                x = x_task + (i - (len(group) - 1) / 2) * width
                label = row["method"] if row["method"] not in labelled else None
                labelled.add(row["method"])
                # The edge in the bar's colour keeps a zero mean visible as a line.
                ax.bar(x, row["mean"], width * 0.9, color=colors[row["method"]], alpha=0.7,
                       edgecolor=colors[row["method"]], linewidth=1.5, label=label)
                ax.errorbar(x, row["mean"], yerr=row["std"], fmt="none", ecolor="black", capsize=3)
                ax.scatter(x + _dot_offsets(row["n"], width), row["values"], s=14, color="black", zorder=3)
        ax.set_xticks(range(len(tasks)))
        # Long task names overlap side by side: wrap them to about a group's width.
        ax.set_xticklabels([textwrap.fill(t, 22) for t in tasks], fontsize="small")
        ax.set_ylabel(panel_metric)
    fig.suptitle("mean over seeds (bar), sample std (error bar), one dot per seed")
    # One legend for all panels (each method is labelled once, on the first bar drawn), to the right
    # of the last panel so that it never hides a bar.
    handles, labels = zip(*(hl for ax in fig.axes for hl in zip(*ax.get_legend_handles_labels())))
    fig.axes[-1].legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish(fig, path)


def exploiter_explorer_pairs(records: Sequence[dict[str, Any]], metric: str | None = "success_rate",
                             x_method: str = EXPLORER_WITH_BONUS, y_method: str = OOO_EXPLOITER,
                             ) -> list[dict[str, Any]]:
    """(x, y) values of two methods matched by (task, seed): task, seed, metric, x, y.

    A (task, seed) holding several records of one method (two runs laid out alike) is left
    out with a warning rather than paired at random.
    """
    metrics = metric_per_task(records, metric)
    by_key: dict[tuple[str, int | None], dict[str, list[float]]] = {}
    for r in records:
        value = r.get(metrics[r["task"]])
        if r["method"] in (x_method, y_method) and value is not None:
            by_key.setdefault((r["task"], r["seed"]), {}).setdefault(r["method"], []).append(value)
    pairs = []
    for (task, seed), values in sorted(by_key.items(), key=lambda kv: (kv[0][0], _seed_key(kv[0][1]))):
        xs, ys = values.get(x_method, []), values.get(y_method, [])
        if len(xs) > 1 or len(ys) > 1:
            warnings.warn(f"task {task!r} seed {seed}: several runs of one method, left out of the pairs",
                          stacklevel=2)
        elif xs and ys:
            pairs.append({"task": task, "seed": seed, "metric": metrics[task], "x": xs[0], "y": ys[0]})
    return pairs


def plot_exploiter_vs_explorer(records: Sequence[dict[str, Any]], metric: str | None = "success_rate",
                               path: str | Path | None = None, x_method: str = EXPLORER_WITH_BONUS,
                               y_method: str = OOO_EXPLOITER) -> Figure:
    """One point per (task, seed): the explorer's value on x, the exploiter's on y, with the
    diagonal y = x. Points above the diagonal are seeds where the exploiter trained from scratch
    on the explorer's data beats the explorer itself (OOO's gain). ``x_method`` may be
    ``FINE_TUNED_NO_BONUS`` to compare against the bonus-free baseline instead. One panel per
    metric when tasks are shown in different metrics.
    """
    pairs = exploiter_explorer_pairs(records, metric, x_method, y_method)
    if not pairs:
        raise ValueError(f"no (task, seed) with both {x_method!r} and {y_method!r}")
    panels = _by_metric(pairs)
    fig = Figure(figsize=(5.0 * len(panels), 6.2))
    tasks = list(dict.fromkeys(p["task"] for p in pairs))
    colors = {t: f"C{i % 10}" for i, t in enumerate(tasks)}
    # Hollow markers of different shapes and sizes: seeds of several tasks often land on the
    # same point (0 or 1 success), and must all stay visible there.
    markers = {t: ("o", "s", "^", "D", "v", "P")[i % 6] for i, t in enumerate(tasks)}
    sizes = {t: 30 + 25 * (i % 4) for i, t in enumerate(tasks)}
    for ax, (panel_metric, panel_pairs) in zip(_panels(fig, len(panels)), panels.items()):
        for task in dict.fromkeys(p["task"] for p in panel_pairs):
            points = [p for p in panel_pairs if p["task"] == task]
            ax.scatter([p["x"] for p in points], [p["y"] for p in points], s=sizes[task], marker=markers[task],
                       facecolors="none", edgecolors=colors[task], linewidths=1.5, label=task, zorder=3)
        values = [v for p in panel_pairs for v in (p["x"], p["y"])]
        low, high = min(0.0, *values), max(values)
        # Pad so that points on the range's edge (success 0 or 1) are not cut in half.
        pad = 0.05 * (high - low if high > low else 1.0)
        ends = [low - pad, high + pad]
        ax.plot(ends, ends, color="gray", linestyle="--", label="y = x")
        ax.set_xlim(*ends)
        ax.set_ylim(*ends)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{x_method}: {panel_metric}")
        ax.set_ylabel(f"{y_method}: {panel_metric}")
        # Below the axes: inside, it hid points in the lower right corner.
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.suptitle("one point per (task, seed); above y = x: the exploiter wins")
    return _finish(fig, path)


def t_sweep(records: Sequence[dict[str, Any]], metric: str | None = "success_rate") -> list[dict[str, Any]]:
    """Exploiter values against T, the online steps its data came from: every ``exploiter_T<T>``
    entry, plus the final ``exploiter`` (at its env_steps) of the runs that have such entries.
    Rows: task, seed, metric, T, value, sorted by task, seed and T."""
    metrics = metric_per_task(records, metric)
    swept_runs = {r["run_dir"] for r in records if _T_SWEEP.match(r["policy"])}
    points = []
    for r in records:
        t_match = _T_SWEEP.match(r["policy"])
        if r["run_dir"] not in swept_runs or not (t_match or r["policy"] == "exploiter"):
            continue
        value = r.get(metrics[r["task"]])
        if value is not None:
            points.append({"task": r["task"], "seed": r["seed"], "metric": metrics[r["task"]],
                           "T": int(t_match["T"]) if t_match else r["env_steps"], "value": value})
    return sorted(points, key=lambda p: (p["task"], _seed_key(p["seed"]), p["T"]))


def plot_success_against_T(records: Sequence[dict[str, Any]], metric: str | None = "success_rate",
                           path: str | Path | None = None) -> Figure:
    """Per task, the exploiter's value against T (mean over seeds as a line, each seed a dot):
    how much online data the exploiter needs before it solves the task. One panel per metric."""
    points = t_sweep(records, metric)
    if not points:
        raise ValueError("no exploiter_T<T> entries to plot")
    panels = _by_metric(points)
    fig = Figure(figsize=(6.0 * len(panels), 4.0))
    colors = {t: f"C{i % 10}" for i, t in enumerate(dict.fromkeys(p["task"] for p in points))}
    for ax, (panel_metric, panel_points) in zip(_panels(fig, len(panels)), panels.items()):
        for task in dict.fromkeys(p["task"] for p in panel_points):
            in_task = [p for p in panel_points if p["task"] == task]
            ts = sorted({p["T"] for p in in_task})
            means = [statistics.mean(p["value"] for p in in_task if p["T"] == t) for t in ts]
            ax.plot(ts, means, marker="o", color=colors[task], label=f"{task} (mean)")
            ax.scatter([p["T"] for p in in_task], [p["value"] for p in in_task], s=12, color=colors[task],
                       alpha=0.5, zorder=3)
        ax.set_xlabel("T: online env steps in the exploiter's data")
        ax.set_ylabel(panel_metric)
        ax.legend(fontsize="small")
    fig.suptitle("exploiter trained on the first T online steps")
    return _finish(fig, path)


__all__ = [
    "EXPLORER_WITH_BONUS", "FINE_TUNED_NO_BONUS", "OOO_EXPLOITER", "VARIANT_DIRS", "collect_results",
    "default_metric", "exploiter_explorer_pairs", "method_name", "metric_per_task", "plot_exploiter_vs_explorer",
    "plot_success_against_T", "plot_task_bars", "summarise", "t_sweep", "to_markdown",
]
