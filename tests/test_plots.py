"""What the run's pictures show, read back from the figures: the curves' points."""

from ooo_lightning import plots


def test_exploiter_curve_plots_each_T_in_order_beside_the_explorer(tmp_path, figures):
    def entry(steps, success, ret):
        return {"env_steps": steps, "success_rate": success, "return_mean": ret}

    results = {"explorer": entry(100, 0.2, -50.0), "exploiter_T50": entry(50, 0.4, -30.0),
               "exploiter_T0": entry(0, 0.0, -150.0), "exploiter": entry(100, 1.0, -10.0)}
    plots.plot_exploiter_against_online_steps(results, tmp_path / "curve.png")
    (fig,) = figures
    success_ax, return_ax = fig.axes
    curve, explorer = success_ax.lines
    assert list(curve.get_xdata()) == [0, 50, 100] and list(curve.get_ydata()) == [0.0, 0.4, 1.0]
    assert list(explorer.get_ydata()) == [0.2, 0.2]
    assert list(return_ax.lines[0].get_ydata()) == [-150.0, -30.0, -10.0]
    assert list(return_ax.lines[1].get_ydata()) == [-50.0, -50.0]
    assert plots.plot_exploiter_against_online_steps({"explorer": results["explorer"]}, tmp_path / "none.png") is None


def test_learning_curves_plot_the_logged_evaluations_per_phase(tmp_path, figures):
    """From metrics.csv as Lightning's CSV logger writes it: evaluation rows and loss rows
    interleaved, blanks where a row does not log a value."""
    rows = {
        "explorer": "eval/updates,eval/success_rate,eval/return_mean,loss/actor\n"
                    "8,0.0,-150,\n,,,0.5\n16,0.5,-80,\n",
        "exploiter": "eval/updates,eval/success_rate,eval/return_mean\n10,0.25,-100\n20,1.0,-20\n",
    }
    for phase, text in rows.items():
        (tmp_path / phase).mkdir()
        (tmp_path / phase / "metrics.csv").write_text(text)
    assert plots.plot_learning_curves(tmp_path) == tmp_path / "plots" / "learning_curves.png"
    (fig,) = figures
    success_ax, return_ax = fig.axes[:2]
    explorer, exploiter = success_ax.lines
    assert (explorer.get_label(), exploiter.get_label()) == ("explorer", "exploiter")  # explorer first
    assert list(explorer.get_xdata()) == [8, 16] and list(explorer.get_ydata()) == [0.0, 0.5]
    assert list(exploiter.get_xdata()) == [10, 20] and list(exploiter.get_ydata()) == [0.25, 1.0]
    assert list(return_ax.lines[0].get_ydata()) == [-150.0, -80.0]
