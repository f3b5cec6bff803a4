"""Papers cited by reference, one id per paper, and no path outside the repository.

Every paper has one id (``01_kandi``, ...): its notebook's file name starts with it and its
metadata ``repro.paper`` equals it, ``claims/<id>.yaml`` holds its complete reference, the
notebook's first cell cites that reference and names the id, and the module with its model code
in ``src/common`` names the id in its docstring. No tracked text file may point at the paper
texts' folder beside the repository or at an absolute path of the machine it was built on.
"""

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

from common import claims
from common.paths import read_yaml

REPO = Path(__file__).resolve().parents[1]

#: paper id -> the module in src/common with that paper's model code
PAPER_MODULES = {
    "01_kandi": "microarray_models",
    "02_alhammadi": "cae",
    "03_vinurajan": "acrnn",
    "04_patel_aml": "stacking",
    "05_patel_all": "ensemble",
}

# Built from pieces so that this file does not contain what it forbids.
SIBLING_FOLDER = ".." + "/shared"
OUTSIDE = re.compile(re.escape(SIBLING_FOLDER) + r"|(?<![\w.~-])/" + "work/")


def outside_paths(text: str) -> list[int]:
    """Line numbers (1-based) of ``text`` that name the sibling folder or an absolute path under
    the build machine's work folder."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if OUTSIDE.search(line)]


def tracked_text_files() -> list[Path]:
    """The repository's tracked files that are text (no NUL byte), from ``git ls-files``."""
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [REPO / n.decode() for n in names if n]
    return [p for p in files if p.is_file() and b"\0" not in p.read_bytes()]


def paper_notebooks() -> dict[str, Path]:
    """Paper id (the notebook's metadata ``repro.paper``) -> notebook."""
    out = {}
    for path in sorted((REPO / "notebooks").glob("0[1-5]*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        out[nb["metadata"]["repro"]["paper"]] = path
    return out


def flat(text: str) -> str:
    """``text`` with every run of whitespace made one space (markdown wraps lines anywhere)."""
    return " ".join(text.split())


def test_the_pattern_finds_outside_paths_and_only_those():
    sibling = SIBLING_FOLDER + "/papers/01_kandi_microarray_hybrid.txt"
    absolute = "/" + "work/main/data/cache"
    text = f"ok line\nsee {sibling}\n{{'root': '{absolute}'}}\n"
    assert outside_paths(text) == [2, 3]
    harmless = "network/ homework/ data/cache ../data /kaggle/working/cache /content/cache"
    assert outside_paths(harmless) == []


def test_no_tracked_text_file_points_outside_the_repository():
    files = tracked_text_files()
    assert len(files) > 50, "git ls-files should list the repository's files"
    hits = [
        f"{path.relative_to(REPO)}:{n}"
        for path in files
        for n in outside_paths(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not hits, "paths outside the repository (cite the paper, use relative paths): " + (
        ", ".join(hits)
    )


def test_every_paper_notebook_has_an_id_with_model_code():
    assert sorted(paper_notebooks()) == sorted(PAPER_MODULES)


@pytest.mark.parametrize("paper", sorted(PAPER_MODULES))
def test_one_id_per_paper_across_notebook_claims_and_module(paper):
    notebook = paper_notebooks()[paper]
    assert notebook.name.startswith(paper + "_"), notebook.name
    claims_file = REPO / "claims" / f"{paper}.yaml"
    assert claims_file.is_file()
    ref = claims.load_reference(paper)  # raises, naming the key, when the reference is incomplete
    doc = read_yaml(claims_file, "")
    assert doc.get("id") == paper, f"{claims_file.name}: id {doc.get('id')!r}"

    source = (REPO / "src" / "common" / f"{PAPER_MODULES[paper]}.py").read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source)) or ""
    head = "\n".join(docstring.splitlines()[:8])
    assert f"``{paper}``" in head, f"{PAPER_MODULES[paper]}.py: docstring's first lines lack the id"
    assert flat(ref["title"]) in flat(docstring), f"{PAPER_MODULES[paper]}.py: no title"

    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    assert cells[0]["cell_type"] == "markdown"
    first = flat("".join(cells[0]["source"]))
    assert f"Paper id `{paper}`" in first
    assert f"`results/{paper}/`" in first and f"`claims/{paper}.yaml`" in first
    assert flat(ref["title"]) in first, f"{notebook.name}: first cell does not cite the title"
    if ref["doi"] == claims.NO_DOI:
        assert claims.NO_DOI in first
    else:
        assert f"]({ref['doi']})" in first, f"{notebook.name}: DOI is not a link"
    if isinstance(ref["year"], int):
        assert str(ref["year"]) in first
