"""The notebooks run top to bottom."""

import nbformat
from nbclient import NotebookClient

from conftest import REPO, write_results_tree


def execute_notebook(name: str) -> list[dict]:
    """Runs notebooks/<name> from notebooks/ (as Jupyter would) and returns its code outputs,
    after checking that no cell raised."""
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    # A generous kernel start-up: under a loaded CPU the default 60 s ran out.
    NotebookClient(nb, timeout=600, startup_timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return outputs


def _stdout(outputs: list[dict]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _images(outputs: list[dict]) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


def test_quickstart_notebook_executes(tmp_path):
    outputs = execute_notebook("quickstart.ipynb")
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "explorer" in text and "exploiter" in text
    assert _images(outputs) == 2


def test_results_notebook_on_fixture_runs(tmp_path, monkeypatch):
    # The kernel inherits this process's environment, so the parameters cell picks it up.
    monkeypatch.setenv("OOO_RESULTS_DIR", str(write_results_tree(tmp_path)))
    outputs = execute_notebook("results.ipynb")
    text = _stdout(outputs)
    assert "21 records from 12 runs" in text
    assert "| d4rl/hopper | OOO exploiter | normalized_score | 80.00 ± 10.00 | 3 |" in text
    assert "| ooo_effect/point_mass | fine-tuned, no bonus | success_rate | 0.10 ± 0.00 | 3 |" in text
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "broken" in stderr  # the malformed file is named, not fatal
    assert _images(outputs) == 3  # bars, exploiter vs explorer, against T


def test_results_notebook_on_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OOO_RESULTS_DIR", str(tmp_path))
    outputs = execute_notebook("results.ipynb")
    assert "No results.json under" in _stdout(outputs)
    assert _images(outputs) == 0


def test_results_notebook_is_committed_without_outputs():
    nb = nbformat.read(REPO / "notebooks" / "results.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
