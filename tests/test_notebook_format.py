"""The workbook's conventions, checked on every chapter: stripped, python3 kernel, one typed parameters cell."""

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_workbook_has_its_chapters():
    assert len(NOTEBOOKS) >= 8, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_conventions(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    assert "jupytext" not in nb.metadata, "strip metadata.jupytext (it overrides jupytext.toml)"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                "outputs must be stripped before commit"
            )
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "first cell: a title"
    assert "CPU" in first.source and "GPU" in first.source, "first cell: expected runtime on CPU and GPU"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and nb.cells[1] is tagged[0], "second cell: the only cell tagged 'parameters'"
    tree = ast.parse(tagged[0].source)
    assignments = [n for n in tree.body if isinstance(n, ast.AnnAssign | ast.Assign)]
    assert assignments and all(isinstance(n, ast.AnnAssign) for n in assignments), "parameters must be typed"
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "assert " in sources, "numbers that matter are checked with assert"
    assert "Exercise" in "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"), (
        "exercises at the end"
    )
