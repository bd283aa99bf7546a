"""Collecting results.json files across runs, summarising them over seeds and plotting them."""

import json
import math
import warnings
from pathlib import Path

import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from conftest import write_results_tree
from ooo_lightning.results import (
    EXPLORER_WITH_BONUS,
    FINE_TUNED_NO_BONUS,
    OOO_EXPLOITER,
    collect_results,
    default_metric,
    exploiter_explorer_pairs,
    plot_exploiter_vs_explorer,
    plot_success_against_T,
    plot_task_bars,
    read_reported_scores,
    results_table,
    results_table_markdown,
    summarise,
    t_sweep,
    to_markdown,
    write_results_table_csv,
)

POINT_MASS, HOPPER = "ooo_effect/point_mass", "d4rl/hopper"


@pytest.fixture
def records(tmp_path):
    write_results_tree(tmp_path)
    with pytest.warns(UserWarning, match=r"broken[/\\]seed_0[/\\]results\.json"):
        return collect_results(tmp_path)


def _dots(fig) -> int:
    """Scatter points over all panels of a figure."""
    return sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection))


def test_records_per_run_and_policy(records, tmp_path):
    # 3 seeds x (explorer, exploiter, exploiter_T5000, baseline explorer) + 3 x (explorer,
    # exploiter, baseline explorer); the malformed file adds nothing.
    assert len(records) == 21
    assert {r["task"] for r in records} == {POINT_MASS, HOPPER}
    assert {r["seed"] for r in records} == {0, 1, 2}
    assert {r["method"] for r in records if r["task"] == POINT_MASS} == {
        OOO_EXPLOITER, EXPLORER_WITH_BONUS, FINE_TUNED_NO_BONUS, "exploiter_T5000"}
    # Both baseline layouts (no_bonus/seed_k and baseline_seed_k) are recognised.
    baseline = sorted((r for r in records if r["method"] == FINE_TUNED_NO_BONUS),
                      key=lambda r: (r["task"], r["seed"]))
    assert [r["run_dir"].relative_to(tmp_path).as_posix() for r in baseline] == [
        "d4rl/hopper/baseline_seed_0", "d4rl/hopper/baseline_seed_1", "d4rl/hopper/baseline_seed_2",
        "ooo_effect/point_mass/no_bonus/seed_0", "ooo_effect/point_mass/no_bonus/seed_1",
        "ooo_effect/point_mass/no_bonus/seed_2"]
    one = next(r for r in records if r["task"] == HOPPER and r["seed"] == 1 and r["method"] == OOO_EXPLOITER)
    assert one["policy"] == "exploiter"
    assert one["success_rate"] == 0.9 and one["return_mean"] == 9.0 and one["env_steps"] == 25000
    assert one["normalized_score"] == pytest.approx(90.0)
    assert all(r["normalized_score"] is None for r in records if r["task"] == POINT_MASS)
    sweep = [r for r in records if r["method"] == "exploiter_T5000"]
    assert [r["env_steps"] for r in sweep] == [5000] * 3


def test_task_of_overrides_the_path_rule(tmp_path):
    write_results_tree(tmp_path)
    with pytest.warns(UserWarning):
        records = collect_results(tmp_path, task_of=lambda run_dir: "all")
    assert {r["task"] for r in records} == {"all"}


def test_root_inside_an_experiment_names_the_task_by_its_folder(tmp_path):
    write_results_tree(tmp_path)
    records = collect_results(tmp_path / "ooo_effect" / "point_mass" / "ooo")
    assert {r["task"] for r in records} == {"point_mass"}


def test_a_members_run_gives_one_record_per_member_seed(tmp_path):
    """A run of seeds as members (``ooo_effect.py --members``, ``seeds_5.yaml``) reads as the
    runs of its seeds apart would: one record per member with its seed, in the same task."""
    def member(seed, success):
        return {"seed": seed, "success_rate": success, "return_mean": -success, "env_steps": 9}

    run_dir = tmp_path / "ooo_effect" / "point_mass" / "ooo" / "members"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({
        "explorer": {"success_rate": 0.25, "return_mean": -0.25, "env_steps": 9, "members": [member(0, 0.0), member(1, 0.5)]},
        "exploiter": {"success_rate": 1.0, "return_mean": -1.0, "env_steps": 9, "members": [member(0, 1.0), member(1, 1.0)]},
    }))
    records = collect_results(tmp_path)
    assert [(r["task"], r["method"], r["seed"], r["success_rate"]) for r in records] == [
        ("ooo_effect/point_mass", EXPLORER_WITH_BONUS, 0, 0.0), ("ooo_effect/point_mass", EXPLORER_WITH_BONUS, 1, 0.5),
        ("ooo_effect/point_mass", OOO_EXPLOITER, 0, 1.0), ("ooo_effect/point_mass", OOO_EXPLOITER, 1, 1.0)]
    rows = {r["method"]: r for r in summarise(records)}
    assert rows[EXPLORER_WITH_BONUS]["n"] == 2 and rows[EXPLORER_WITH_BONUS]["mean"] == pytest.approx(0.25)


def test_run_without_seed_folder_and_bad_schema(tmp_path):
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "results.json").write_text(json.dumps(
        {"exploiter": {"success_rate": 1.0, "return_mean": 1.0, "env_steps": 7}}))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "results.json").write_text(json.dumps([1, 2]))
    (tmp_path / "null").mkdir()  # valid JSON, but a number missing
    (tmp_path / "null" / "results.json").write_text(json.dumps(
        {"explorer": {"success_rate": None, "return_mean": 0.0, "env_steps": 7}}))
    with pytest.warns(UserWarning) as caught:
        records = collect_results(tmp_path)
    assert sorted(Path(str(w.message).split()[1]).parent.name for w in caught) == ["null", "odd"]
    assert [(r["task"], r["seed"], r["method"]) for r in records] == [("single", None, OOO_EXPLOITER)]


def test_empty_and_missing_roots(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert collect_results(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        collect_results(tmp_path / "missing")


def test_default_metric_per_task(records):
    assert default_metric([r for r in records if r["task"] == HOPPER]) == "normalized_score"
    assert default_metric([r for r in records if r["task"] == POINT_MASS]) == "success_rate"
    assert default_metric(records) == "success_rate"  # not every record has normalized_score
    assert default_metric([]) == "success_rate"


def test_summarise_means_and_sample_stds(records):
    rows = {(r["task"], r["method"]): r for r in summarise(records, metric=None)}
    assert len(rows) == 7
    expected = {
        (POINT_MASS, OOO_EXPLOITER): ("success_rate", 0.8, 0.2),
        (POINT_MASS, EXPLORER_WITH_BONUS): ("success_rate", 0.2, 0.2),
        (POINT_MASS, FINE_TUNED_NO_BONUS): ("success_rate", 0.1, 0.0),
        (POINT_MASS, "exploiter_T5000"): ("success_rate", 0.2, 0.2),
        (HOPPER, OOO_EXPLOITER): ("normalized_score", 80.0, 10.0),
        (HOPPER, EXPLORER_WITH_BONUS): ("normalized_score", 60.0, 10.0),
        (HOPPER, FINE_TUNED_NO_BONUS): ("normalized_score", 50.0, math.sqrt(300.0)),
    }
    for key, (metric, mean, std) in expected.items():
        row = rows[key]
        assert (row["metric"], row["n"], row["seeds"]) == (metric, 3, [0, 1, 2]), key
        assert row["mean"] == pytest.approx(mean) and row["std"] == pytest.approx(std), key
    # An explicit metric applies to every task; one seed has std 0.
    assert {r["metric"] for r in summarise(records)} == {"success_rate"}
    single = summarise([r for r in records if r["seed"] == 0])
    assert all(r["std"] == 0.0 and r["n"] == 1 for r in single)


def test_summarise_skips_a_metric_a_task_lacks(records):
    rows = summarise(records, metric="normalized_score")
    assert {r["task"] for r in rows} == {HOPPER}


def test_to_markdown(records):
    table = to_markdown(summarise(records, metric=None))
    lines = table.splitlines()
    assert lines[0].startswith("| task | method |") and len(lines) == 2 + 7
    assert "| d4rl/hopper | OOO exploiter | normalized_score | 80.00 ± 10.00 | 3 | 70.00 / 90.00 / 80.00 |" in lines


def test_results_table_gives_every_metric_and_the_exploiters_gain(records, tmp_path):
    rows = {(r["task"], r["method"]): r for r in results_table(records)}
    assert len(rows) == 7
    hopper = rows[(HOPPER, OOO_EXPLOITER)]
    assert (hopper["n"], hopper["seeds"], hopper["success_per_seed"]) == (3, [0, 1, 2], [0.7, 0.9, 0.8])
    assert hopper["normalized_score_mean"] == pytest.approx(80.0) and hopper["normalized_score_std"] == pytest.approx(10.0)
    assert hopper["success_rate_mean"] == pytest.approx(0.8) and hopper["return_mean_mean"] == pytest.approx(8.0)
    # The gain in the task's default metric: normalized score 80 against 60; success 0.8 against 0.2.
    assert hopper["gain_percent"] == pytest.approx(100 * 20 / 60)
    assert rows[(POINT_MASS, OOO_EXPLOITER)]["gain_percent"] == pytest.approx(300.0)
    assert rows[(POINT_MASS, OOO_EXPLOITER)]["normalized_score_mean"] is None  # no reference returns
    assert rows[(POINT_MASS, EXPLORER_WITH_BONUS)]["gain_percent"] is None  # only on the exploiter's row
    lines = results_table_markdown(list(rows.values())).splitlines()
    assert len(lines) == 2 + 7
    assert "| d4rl/hopper | OOO exploiter | 3 | 0.80 ± 0.10 | 80.0 ± 10.0 | 8.00 ± 1.00 | +33% | 0.70 / 0.90 / 0.80 |" in lines
    text = write_results_table_csv(list(rows.values()), tmp_path / "t.csv").read_text().splitlines()
    assert text[0].startswith("task,method,n,seeds,success_rate_mean") and len(text) == 1 + 7
    # An explorer that scores 0: the percentage is undefined, said as such.
    zero = [dict(r, success_rate=0.0) if r["method"] == EXPLORER_WITH_BONUS else r
            for r in records if r["task"] == POINT_MASS]
    exploiter = next(r for r in results_table(zero) if r["method"] == OOO_EXPLOITER)
    assert exploiter["gain_percent"] is None and "| n/a |" in results_table_markdown([exploiter])


def test_reported_scores_sit_beside_the_measured_ones(records, tmp_path):
    paper = tmp_path / "paper.csv"
    paper.write_text('task,method,score,paper_task,source\n'
                     f'{HOPPER},{OOO_EXPLOITER},91.5,hopper-medium-v2,Table 1\n'
                     f'{HOPPER},"{FINE_TUNED_NO_BONUS}",,hopper-medium-v2,not transcribed\n')
    reported = read_reported_scores(paper)
    assert reported == {(HOPPER, OOO_EXPLOITER): 91.5}  # a blank score is no score
    rows = {(r["task"], r["method"]): r for r in results_table(records, reported)}
    assert rows[(HOPPER, OOO_EXPLOITER)]["reported_score"] == 91.5
    assert rows[(HOPPER, EXPLORER_WITH_BONUS)]["reported_score"] is None
    lines = results_table_markdown(list(rows.values())).splitlines()
    assert "| normalized score | reported | return |" in lines[0]
    assert "| d4rl/hopper | OOO exploiter | 3 | 0.80 ± 0.10 | 80.0 ± 10.0 | 91.5 | 8.00 ± 1.00 |" in "\n".join(lines)
    csv_head = write_results_table_csv(list(rows.values()), tmp_path / "t.csv").read_text().splitlines()[0]
    assert csv_head.endswith(",reported_score,gain_percent,success_per_seed")
    bad = tmp_path / "bad.csv"
    bad.write_text("task,method,score\nx,y,ninety\n")
    with pytest.raises(ValueError, match="line 2: score 'ninety' is not a number"):
        read_reported_scores(bad)
    bad.write_text("task,score\nx,1\n")
    with pytest.raises(ValueError, match="lacks the column\\(s\\) method"):
        read_reported_scores(bad)
    with pytest.raises(ValueError, match="no such file"):
        read_reported_scores(tmp_path / "nope.csv")


def test_plot_task_bars(records, tmp_path):
    path = tmp_path / "figs" / "bars.png"
    fig = plot_task_bars(records, metric=None, path=path)
    # Success rate (0-1) and normalized score (0-100) get a panel each, not one shared axis.
    # Panels in task order: d4rl/hopper first.
    assert [ax.get_ylabel() for ax in fig.axes] == ["normalized_score", "success_rate"]
    heights = [sorted(round(p.get_height(), 6) for p in ax.patches if isinstance(p, Rectangle)) for ax in fig.axes]
    assert heights == [[50.0, 60.0, 80.0], [0.1, 0.2, 0.2, 0.8]]  # one bar per (task, method)
    assert _dots(fig) == len(records)  # every seed's value drawn
    assert path.is_file() and path.stat().st_size > 0
    one_metric = plot_task_bars(records, metric="success_rate")
    assert len(one_metric.axes) == 1 and len(one_metric.axes[0].patches) == 7


def test_plot_exploiter_vs_explorer(records):
    pairs = exploiter_explorer_pairs(records, metric=None)
    assert len(pairs) == 6  # 2 tasks x 3 seeds
    hopper0 = next(p for p in pairs if p["task"] == HOPPER and p["seed"] == 0)
    assert (hopper0["x"], hopper0["y"]) == pytest.approx((50.0, 70.0))
    fig = plot_exploiter_vs_explorer(records, metric=None)
    assert len(fig.axes) == 2 and _dots(fig) == 6
    for ax in fig.axes:  # each panel has its diagonal
        assert any(list(line.get_xdata()) == list(line.get_ydata()) for line in ax.lines)
    baseline = exploiter_explorer_pairs(records, x_method=FINE_TUNED_NO_BONUS)
    assert [p["x"] for p in baseline if p["task"] == POINT_MASS] == [0.1, 0.1, 0.1]


def test_plot_success_against_T(records):
    points = t_sweep(records)
    # T5000 and the final exploiter (T = its env_steps) of each swept run; hopper has no sweep.
    assert [(p["seed"], p["T"], p["value"]) for p in points] == [
        (0, 5000, 0.0), (0, 25000, 0.6), (1, 5000, 0.4), (1, 25000, 0.8), (2, 5000, 0.2), (2, 25000, 1.0)]
    fig = plot_success_against_T(records)
    assert len(fig.axes) == 1 and _dots(fig) == 6
    mean_line = fig.axes[0].lines[0]
    assert list(mean_line.get_xdata()) == [5000, 25000]
    assert list(mean_line.get_ydata()) == pytest.approx([0.2, 0.8])


def test_plots_refuse_empty_input():
    for plot in (plot_task_bars, plot_exploiter_vs_explorer, plot_success_against_T):
        with pytest.raises(ValueError):
            plot([])
