"""The package's layers: imports only go down, and plotting/widget libraries stay in the workbook layer.

foundation (config, errors, files, labels, metrics) <- model, data <- train <- runs <- workbook <- cli
"""

import ast
import io
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmpiqa"
FOUNDATION = {"config", "errors", "files", "labels", "metrics"}
MAY_IMPORT = {  # layer -> the layers its modules may import (every layer may import itself)
    "foundation": {"foundation"},
    "data": {"foundation"},
    "model": {"foundation"},
    "train": {"foundation", "model", "data"},
    "runs": {"foundation", "model", "data", "train"},
    "workbook": {"foundation", "model", "data", "train", "runs"},
    "cli": {"foundation", "model", "data", "train", "runs", "workbook"},
    "package": {"foundation", "model"},  # mmpiqa/__init__.py: the public API
}
NOTEBOOK_ONLY = {"matplotlib", "seaborn", "ipywidgets", "IPython"}
SAMPLE_DATA = "matplotlib.cbook"  # the embedded benchmark reads a public-domain photo shipped with matplotlib


def layer_of(module: str) -> str:
    """'mmpiqa.train.trainer' -> 'train'; 'mmpiqa.metrics' -> 'foundation'; 'mmpiqa' -> 'package'."""
    parts = module.split(".")
    if parts == ["mmpiqa"]:
        return "package"
    first = "cli" if parts[1] == "__main__" else parts[1]  # `python -m mmpiqa` is the command line too
    if first in FOUNDATION:
        return "foundation"
    if first in MAY_IMPORT:
        return first
    raise AssertionError(f"{module}: not in any layer; add it to tests/test_layers.py's map")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at top level or inside functions: (line, absolute dotted name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; the package uses absolute ones"
            # `from mmpiqa.workbook import plots` imports the module mmpiqa.workbook.plots (trimmed by `resolve`
            # where the name is a function, not a module)
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))


def resolve(name: str) -> str:
    """Trim a `from package import name` target to the module that exists (a function name is not a module)."""
    parts = name.split(".")
    while len(parts) > 1:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return "mmpiqa"


def test_every_module_is_in_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path):
    here = layer_of(module_name(path))
    allowed = MAY_IMPORT[here] | {here}
    for line, name in imports(path):
        if not name.startswith("mmpiqa"):
            continue
        target = layer_of(resolve(name))
        target = "model" if target == "package" else target  # `import mmpiqa` is the model's public API
        assert target in allowed, (
            f"{path.relative_to(PACKAGE.parent)}:{line}: the {here} layer imports {name} ({target})"
        )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_plotting_and_widgets_only_in_the_workbook(path):
    if layer_of(module_name(path)) == "workbook":
        return
    for line, name in imports(path):
        if name == SAMPLE_DATA:
            continue
        assert name.split(".")[0] not in NOTEBOOK_ONLY, (
            f"{path.relative_to(PACKAGE.parent)}:{line}: imports {name}"
        )


def test_the_check_catches_an_upward_import(tmp_path):
    """The walker sees imports inside functions, so a lazy upward import cannot hide."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mmpiqa.workbook import plots\n    import matplotlib.pyplot\n")
    names = [name for _, name in imports(bad)]
    assert names == ["mmpiqa.workbook.plots", "matplotlib.pyplot"]
    assert layer_of(resolve(names[0])) == "workbook"


CORE_BUDGET = 2500  # code lines of model/ + train/ + the foundation (issue 11: "at or below about 2,500")


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring (Python's own tokenizer)."""
    lines: set[int] = set()
    skip = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
    statement_start = True
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in skip:
            statement_start = statement_start or tok.type in (
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
            )
            continue
        if tok.type == tokenize.STRING and statement_start:  # a docstring (a string standing as a statement)
            statement_start = False
            continue
        statement_start = False
        lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines)


def lines_per_layer() -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in SOURCES:
        layer = layer_of(module_name(path))
        counts[layer] = counts.get(layer, 0) + code_lines(path)
    return counts


def test_code_lines_counts_code_only(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Doc."""\n\n# comment\ndef f(x):\n    """Doc\n    on two lines."""\n    return (x +\n            1)  # why\n'
    )
    assert code_lines(sample) == 3  # def, and the two physical lines of the return


def test_the_core_stays_small():
    counts = lines_per_layer()
    core = counts["model"] + counts["train"] + counts["foundation"]
    assert core <= CORE_BUDGET, f"model/ + train/ + foundation = {core} code lines > {CORE_BUDGET}: {counts}"


# `python tests/test_layers.py`: the code lines per layer, as the README reports them
if __name__ == "__main__":
    for name, count in sorted(lines_per_layer().items()):
        print(f"{name:12s} {count:6d}")
