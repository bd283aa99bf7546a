"""The quickstart notebook runs top to bottom."""

import nbformat
from nbclient import NotebookClient

from conftest import REPO


def test_quickstart_notebook_executes(tmp_path):
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "explorer" in text and "exploiter" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
