"""The notebooks run top to bottom, offline, and are committed without outputs.

Each notebook asserts its hand-built piece against gptlab's implementation, so executing them is
the check. They run in order in a scratch copy of the folder (06 and 07 load the model 05
trains), with the repository's data/samples beside it as in a checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_per_stage_and_none_carries_outputs():
    import nbformat  # the dev extra installs nbformat, nbclient and ipykernel

    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 9)]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code, path.name
        for cell in code:
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip outputs"
        # The lesson is in the text: every notebook explains itself between its code cells.
        assert sum(cell.cell_type == "markdown" for cell in notebook.cells) >= 4, path.name


# About 6 minutes on 2 busy CPU cores (05 trains for 60 s); each notebook stays under 3.
@pytest.mark.slow
def test_the_notebooks_run_in_order(tmp_path):
    import nbclient
    import nbformat

    work = tmp_path / "notebooks"
    work.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "samples").symlink_to(ROOT / "data" / "samples")
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(work)}},
        )
        client.execute()  # a failing assert raises CellExecutionError naming the cell
    assert (work / "runs" / "shakespeare" / "config.toml").is_file()
