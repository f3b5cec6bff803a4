"""The cell-order rules of :mod:`common.notebook_structure` on every notebook in notebooks/.

Rules (the module docstring has them in full):

- ``opening``: cell 0 is Markdown naming the paper id (metadata ``repro.paper``) and a
  ``**Steps.**`` line followed by a numbered list (two items or more) or a one-line paragraph;
- ``parameters``: exactly one cell tagged ``parameters``;
- ``markdown_before_code``: a Markdown cell right before every code cell (the opening Markdown
  is the one before the install cell, so the install cell needs no exception);
- ``cell_length``: no code cell over 30 lines (the install cell: 40);
- ``defs``: no ``def`` with a body longer than one single-line return/expression;
- ``imports``: imports only in the install cell and the imports cell (the first two code
  cells other than the ``parameters`` cell).

Each rule is one test parametrized over the notebooks; the failure lists every violation as
``<notebook> cell [i]: <check>: <what is wrong>; <the fix>``. The synthetic-notebook tests
below show that each check fails when its rule is broken.
"""

from pathlib import Path

import nbformat
import pytest

from common import notebook_structure as S

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.structure
@pytest.mark.parametrize("check", list(S.CHECKS))
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem[:2] for p in NOTEBOOKS])
def test_notebook_follows_rule(notebook, check):
    found = S.check_notebook(notebook, checks=[check])
    assert not found, "\n" + "\n".join(str(v) for v in found)


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 5, f"expected the five paper notebooks, found {NOTEBOOKS}"


# ---- the checks themselves, on a synthetic notebook -------------------------------------------

OPENING = "# 01 · Demo (`01_demo`)\n\nWhat it does.\n\n**Steps.**\n1. load the data\n2. fit\n"
INSTALL = "import os\n\nprint(os.getcwd())\n"
IMPORTS = "import numpy as np\n\nx = np.zeros(3)\n"


def good_notebook() -> nbformat.NotebookNode:
    """A notebook that follows every rule (install, parameters, imports, one step)."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    params = code("profile = None\n", metadata={"tags": ["parameters"]})
    nb = nbformat.v4.new_notebook(
        cells=[
            md(OPENING),
            code(INSTALL),
            md("Parameters."),
            params,
            md("Imports."),
            code(IMPORTS),
            md("One step."),
            code("def double(v):\n    return 2 * v\n\n\ny = double(x)\n%time y.sum()\n"),
        ]
    )
    nb.metadata["repro"] = {"paper": "01_demo", "figures": []}
    return nb


def checked(nb: nbformat.NotebookNode, tmp_path: Path, check: str) -> list[S.Violation]:
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return S.check_notebook(path, checks=[check])


def only_cells(found: list[S.Violation]) -> list[int | None]:
    return [v.cell for v in found]


@pytest.mark.parametrize("check", list(S.CHECKS))
def test_good_notebook_passes(tmp_path, check):
    assert checked(good_notebook(), tmp_path, check) == []


def test_opening_must_be_markdown(tmp_path):
    nb = good_notebook()
    nb.cells.insert(0, nbformat.v4.new_code_cell("x = 1\n"))
    assert only_cells(checked(nb, tmp_path, "opening")) == [0]


@pytest.mark.parametrize(
    "text",
    [
        OPENING.replace("`01_demo`", "results/01_demo/"),  # inside a path only
        OPENING.replace("`01_demo`", "`01_demo_notebook.txt`"),  # inside a file name only
        OPENING.replace("**Steps.**", "Steps:"),  # no marker
        OPENING.replace("2. fit\n", ""),  # a list of one item
        OPENING.replace("**Steps.**\n1. load the data\n2. fit\n", "**Steps.** see below\n"),
    ],
)
def test_opening_needs_paper_id_and_steps(tmp_path, text):
    nb = good_notebook()
    nb.cells[0].source = text
    found = checked(nb, tmp_path, "opening")
    assert only_cells(found) == [0] and "opening" in str(found[0])


def test_opening_accepts_a_steps_paragraph(tmp_path):
    nb = good_notebook()
    nb.cells[0].source = "# `01_demo`\n\n**Steps.** load the data, fit the model, score it.\n"
    assert checked(nb, tmp_path, "opening") == []


@pytest.mark.parametrize("tags", [[], [["parameters"], ["parameters"]]])
def test_parameters_exactly_one(tmp_path, tags):
    nb = good_notebook()
    nb.cells[3].metadata["tags"] = []
    for i, tag in zip([3, 5], tags):
        nb.cells[i].metadata["tags"] = tag
    found = checked(nb, tmp_path, "parameters")
    assert len(found) == 1 and "parameters" in found[0].message


def test_markdown_before_code(tmp_path):
    nb = good_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("z = 1\n"))
    found = checked(nb, tmp_path, "markdown_before_code")
    assert only_cells(found) == [8] and "code cell [7]" in found[0].message


def test_cell_length(tmp_path):
    nb = good_notebook()
    nb.cells[7].source = "".join(f"a{i} = {i}\n" for i in range(S.MAX_CODE_LINES + 1))
    nb.cells[1].source = "".join(f"b{i} = {i}\n" for i in range(S.MAX_INSTALL_LINES))
    found = checked(nb, tmp_path, "cell_length")
    assert only_cells(found) == [7] and f"{S.MAX_CODE_LINES + 1} lines" in found[0].message
    nb.cells[1].source += "c = 0\n"  # the install cell one line over its own limit
    assert only_cells(checked(nb, tmp_path, "cell_length")) == [1, 7]


@pytest.mark.parametrize(
    "body",
    [
        "def f(v):\n    w = v + 1\n    return w\n",
        "def f(v):\n    return (\n        v\n    )\n",  # one statement over three lines
        "def f(v):\n    if v:\n        return 1\n",
        "class C:\n    def m(self):\n        a = 1\n        return a\n",  # a method counts
    ],
)
def test_defs(tmp_path, body):
    nb = good_notebook()
    nb.cells[7].source = body
    found = checked(nb, tmp_path, "defs")
    assert only_cells(found) == [7] and "src/common" in found[0].message


@pytest.mark.parametrize("line", ["import json\n", "if True:\n    from os import path\n"])
def test_imports(tmp_path, line):
    nb = good_notebook()
    nb.cells[7].source = line + nb.cells[7].source
    found = checked(nb, tmp_path, "imports")
    assert only_cells(found) == [7] and "imports cell [5]" in found[0].message


def test_imports_in_the_parameters_cell_count(tmp_path):
    nb = good_notebook()
    nb.cells[3].source = "import os\nprofile = None\n"
    assert only_cells(checked(nb, tmp_path, "imports")) == [3]


def test_unparsable_cell_is_reported(tmp_path):
    nb = good_notebook()
    nb.cells[7].source = "x = (\n"
    assert only_cells(checked(nb, tmp_path, "defs")) == [7]


def test_cli_prints_violations(tmp_path, capsys):
    nb = good_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import json\n"))
    nbformat.write(nb, tmp_path / "x.ipynb")
    assert S.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "x.ipynb cell [8]: markdown_before_code" in out
    assert "x.ipynb cell [8]: imports" in out
    nbformat.write(good_notebook(), tmp_path / "x.ipynb")
    assert S.main([str(tmp_path)]) == 0
