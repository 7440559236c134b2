"""The tutorial notebooks are committed clean: no outputs, no execution counts, no saved widget state; every code
cell sits under a markdown sentence; each notebook ends with a "check your understanding" quiz (blank answers,
``check(...)``)."""

from itertools import pairwise
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "01_tokenize_and_patch",
    "02_masking",
    "03_multistream_forward",
    "04_reconstruction",
    "05_contrastive_similarity",
    "05b_what_the_embeddings_know",
    "06_train_small_subset",
    "07_downstream",
    "08_your_own_video_and_official_weights",
    "09_cavmae_sync",
]
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_all_tutorial_notebooks_exist():
    stems = [p.stem for p in PATHS]
    assert [s for s in stems if s in EXPECTED] == EXPECTED, f"missing: {sorted(set(EXPECTED) - set(stems))}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} carries saved widget state in its metadata"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "first cell: a markdown title"
    for prev, cell in pairwise(cells):
        if cell.cell_type == "code":
            assert prev.cell_type == "markdown" and prev.source.strip(), (
                f"{path.name}: code cell without a sentence above it: {cell.source[:80]!r}")
    code = [c for c in cells if c.cell_type == "code"]
    assert "check your understanding" in cells[-2].source.lower()
    quiz = code[-1].source  # blank answers checked by cavmae_lite.tutorial.quiz.check (CI injects the solutions)
    assert "check(" in quiz and "= ..." in quiz, (
        f"{path.name}: the last code cell should leave the answers blank (`...`) and check them with `check(`")
    sources = "\n".join(c.source for c in code)
    assert "torch.set_num_threads" in sources and "manual_seed" in sources
    for line in sources.splitlines():  # notebooks use the package, never the repository's internals
        assert "sys.path" not in line and "tests." not in line.split("#")[0]
