"""Notebooks: clean in git, parameterised, and runnable as-is (pytest --nbval-lax)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import make_home

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_notebook_is_stripped_has_a_parameters_cell_and_no_definitions(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs must be stripped"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and code[0] is params[0]
    for line in params[0].source.splitlines():
        assert ":" in line and "#" in line, f"parameter without type or help: {line}"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for c in code:
        source = "\n".join(l for l in c.source.splitlines() if not l.startswith("%"))
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Try)), f"{path.name}: logic belongs in retrainlib"


STEP_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem[:2] in {"10", "20", "30", "40"}]


@pytest.mark.parametrize("path", STEP_NOTEBOOKS, ids=[p.stem for p in STEP_NOTEBOOKS])
def test_the_step_notebooks_have_no_none_guards_and_pick_no_keys_from_step_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        source = "\n".join(l for l in c.source.splitlines() if not l.startswith("%"))
        for node in ast.walk(ast.parse(source)):
            what = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
            assert not isinstance(node, (ast.If, ast.IfExp)), f"{path.name}: a branch ({what}) belongs in retrainlib"
            assert not (isinstance(node, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops)), \
                f"{path.name}: a None guard ({what})"
            assert not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)), \
                f"{path.name}: key picking ({what}); read the output type's attributes"
            assert not (isinstance(node, ast.Attribute) and node.attr == "get"), f"{path.name}: key picking ({what})"


@pytest.mark.slow
def test_the_notebooks_run_as_is_under_nbval(tmp_path):
    home = make_home(tmp_path / "home")
    env = dict(os.environ, RETRAIN_HOME=str(home))
    steps = [p for p in NOTEBOOKS if p.stem[:2] in {"10", "20", "30", "40"}]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-o", "addopts=", "-q", *map(str, steps)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    cells = sum(c.cell_type == "code" for p in steps for c in nbformat.read(p, as_version=4).cells)
    assert re.search(rf"\b{cells} passed\b", r.stdout) and "failed" not in r.stdout and "error" not in r.stdout.lower(), r.stdout[-4000:]
