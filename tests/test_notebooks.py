"""The ``examples/`` notebooks: committed without outputs, run from a clean checkout with nbclient, plots shown.

Each notebook runs in a temporary working directory (they write files) on a kernel of this interpreter, with its
parameter cell (tagged ``parameters``) overridden by the tiny sizes below; the test asserts that no cell fails, that
the plots appear (``image/png`` outputs) and that the numbers the notebook ends with (the cell tagged ``results``
prints them as JSON) are finite. The README's notebook snippet is the start of ``01-quickstart`` and runs with it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL_NAME = "caloml-tests"

#: Notebook -> the parameter values of the test run (python source, one assignment a line): a few showers, one
#: training step, the smallest models that still run every stage (flows of one coupling layer, a narrow GAN input),
#: so that all four run in the default test run (about 75 s of single-core CPU time together, kernels included).
TINY: dict[str, str] = {
    "01-quickstart": "EPOCHS = 1\nSTEPS_PER_EPOCH = 1\nBATCH_SIZE = 2\nLATENT_SIZE = 32\nN_GENERATED = 4",
    "02-reconstruction": "N_PER_PARTICLE = 60\nEPOCHS = 2\nBATCH_SIZE = 32",
    "03-pointflow-and-pyramid": "\n".join(
        [
            "TRAIN_EVENTS = 32",
            "VALIDATION_EVENTS = 8",
            "EPOCHS = 1",
            "STEPS_PER_EPOCH = 1",
            "N_GENERATED = 8",
            "POINTFLOW_MODEL = {'n_latent_layers': 1, 'n_point_layers': 1, 'hidden_units': 16}",
            "PYRAMID_MODEL = {'n_flow_layers': 1, 'n_energy_layers': 1, 'hidden_units': 16}",
        ]
    ),
    "04-evaluate-a-generator": "N_EVENTS = 40\nCLASSIFIER = False",
}


def _code_cells(book: Any) -> list[Any]:
    return [cell for cell in book.cells if cell.cell_type == "code"]


def test_the_four_notebooks_exist_and_carry_no_outputs() -> None:
    assert [path.stem for path in NOTEBOOKS] == list(TINY)
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        cells = _code_cells(book)
        assert "parameters" in cells[0].metadata.get("tags", []), f"{path.name}: the first code cell sets parameters"
        assert any("results" in cell.metadata.get("tags", []) for cell in cells), path.name
        for cell in cells:
            assert cell.outputs == [], f"{path.name}: committed outputs"
            assert cell.execution_count is None, f"{path.name}: committed execution counts"


def test_the_readme_snippet_is_the_start_of_the_quickstart() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## In a notebook", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet is not None
    quickstart = nbformat.read(EXAMPLES / "01-quickstart.ipynb", as_version=4)
    assert _code_cells(quickstart)[1].source.strip() == snippet.group(1).strip()


def _finite_numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [number for item in value.values() for number in _finite_numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in _finite_numbers(item)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    assert math.isfinite(float(value)), value
    return [float(value)]


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec running this interpreter (the venv's, in CI), whatever kernels the machine has installed."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "caloml", "language": "python"}))
    return root


def _execute(book: Any, workdir: Path, kernel_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run ``book`` in ``workdir`` on this interpreter's kernel; returns every output (CellExecutionError on a
    failing cell)."""
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    client = nbclient.NotebookClient(
        book, kernel_name=KERNEL_NAME, timeout=900, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return [output for cell in _code_cells(book) for output in cell.outputs]


def test_the_readme_snippet_runs_as_the_start_of_the_quickstart(
    kernel_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = nbformat.read(EXAMPLES / "01-quickstart.ipynb", as_version=4)
    snippet = _code_cells(book)[1]
    book.cells = book.cells[: book.cells.index(snippet) + 1]
    _execute(book, tmp_path, kernel_path, monkeypatch)
    text = "".join(output.get("text", "") for output in snippet.outputs if output.output_type == "stream")
    assert "(16, 51, 51, 25)" in text
    assert (tmp_path / "tf_records" / "electrons" / "metadata.json").is_file()


@pytest.mark.parametrize("name", list(TINY))
def test_the_notebook_runs_and_shows_its_plots(
    name: str, kernel_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    position = next(i for i, cell in enumerate(book.cells) if "parameters" in cell.metadata.get("tags", []))
    book.cells.insert(position + 1, nbformat.v4.new_code_cell(TINY[name]))
    outputs = _execute(book, tmp_path, kernel_path, monkeypatch)
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs), "no plot appeared"
    (results,) = [cell for cell in book.cells if "results" in cell.metadata.get("tags", [])]
    text = "".join(output.get("text", "") for output in results.outputs if output.output_type == "stream")
    assert _finite_numbers(json.loads(text[text.index("{") :])), "the notebook ended without numbers"
