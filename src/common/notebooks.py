"""Running notebooks with papermill and checking what they wrote.

Each notebook declares in its metadata (``metadata.repro``)::

    {"paper": "01_kandi", "figures": ["roc.png", "confusion_matrix.png"]}

``paper`` is the results folder name (``results/<paper>/<run>/``) and ``figures``
the PNG files every run must produce. ``make reproduce`` and the notebook tests
both use these functions, so what CI checks is what users run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.paths import RESULTS_ENV, notebooks_dir

KERNEL_NAME = "python3"


def discover(*, directory: Path | None = None) -> list[Path]:
    """Notebooks in ``directory`` (default ``notebooks/``), sorted by name."""
    directory = Path(directory or notebooks_dir())
    return sorted(p for p in directory.glob("*.ipynb") if not p.name.startswith("."))


def notebook_meta(path: Path) -> dict[str, Any]:
    """The ``repro`` metadata of a notebook: ``paper``, the ``figures`` every run must write, and
    ``key_figures``, the ones committed under ``figures/`` (optional; default: all of
    ``figures``)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    meta = nb.get("metadata", {}).get("repro")
    if not isinstance(meta, dict) or not meta.get("paper"):
        raise ValueError(
            f"{path} lacks metadata.repro.paper; add {{'paper': '<id>', 'figures': [...]}} "
            "to its metadata"
        )
    figures = meta.get("figures", [])
    if not isinstance(figures, list):
        raise ValueError(f"{path}: metadata.repro.figures must be a list of PNG names")
    key = meta.get("key_figures", figures)
    if not isinstance(key, list) or set(key) - set(figures):
        raise ValueError(
            f"{path}: metadata.repro.key_figures must list names from metadata.repro.figures; "
            f"not there: {sorted(set(key) - set(figures)) if isinstance(key, list) else key!r}"
        )
    return {
        "paper": str(meta["paper"]),
        "figures": [str(f) for f in figures],
        "key_figures": [str(f) for f in key],
    }


@contextmanager
def _results_env(results_root: Path) -> Iterator[None]:
    """Point ``$REPRO_RESULTS_DIR`` at ``results_root`` for kernels started inside."""
    old = os.environ.get(RESULTS_ENV)
    os.environ[RESULTS_ENV] = str(results_root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = old


def run_notebook(
    path: Path,
    results_root: Path,
    profile: str,
    *,
    run: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Execute ``path`` with papermill; return its run folder ``<root>/<paper>/<run>``.

    The executed copy is saved inside the run folder as ``<notebook name>``.
    """
    import papermill as pm

    meta = notebook_meta(path)
    run = run or profile
    run_dir = Path(results_root) / meta["paper"] / run
    run_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "run": run, **dict(parameters or {})}
    with _results_env(Path(results_root)):
        pm.execute_notebook(
            str(path),
            str(run_dir / Path(path).name),
            parameters=params,
            kernel_name=KERNEL_NAME,
            progress_bar=progress,
            cwd=str(Path(path).parent),
        )
    return run_dir


def check_run(run_dir: Path, figures: list[str]) -> list[str]:
    """Problems with a finished run: missing/empty metrics, run.json, declared figures, and
    a ``predictions.csv`` that does not reproduce the run's accuracies and macro F1s.

    Returns a list of one-line problems (empty when the run is complete).
    """
    from common.evaluate import check_predictions

    run_dir = Path(run_dir)
    problems = []
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        problems.append(f"{metrics} is missing")
    else:
        rows = json.loads(metrics.read_text(encoding="utf-8") or "[]")
        if not rows:
            problems.append(f"{metrics} has no rows")
        problems += check_predictions(run_dir)
    if not (run_dir / "run.json").is_file():
        problems.append(f"{run_dir / 'run.json'} is missing")
    for name in figures:
        if not (run_dir / name).is_file():
            problems.append(f"declared figure {run_dir / name} is missing")
    return problems


def check_all(
    results_root: Path, *, directory: Path | None = None, profile: str = "smoke"
) -> list[str]:
    """Problems with the runs every notebook in ``directory`` left under ``results_root``
    (``<root>/<paper>/<profile>``), e.g. after nbval executed them."""
    problems = []
    for path in discover(directory=directory):
        meta = notebook_meta(path)
        run_dir = Path(results_root) / meta["paper"] / profile
        problems += [f"{path.name}: {p}" for p in check_run(run_dir, meta["figures"])]
    return problems


#: Where the repository is published; the README's Colab/Kaggle links are built from it.
#: A fork sets its own with ``python -m common.notebooks links --repo OWNER/NAME``.
DEFAULT_GITHUB_REPO = "leukemia-repro/leukemia-repro"


def launch_links(
    path: Path, *, repo: str = DEFAULT_GITHUB_REPO, branch: str = "main"
) -> dict[str, str]:
    """ "Open in Colab" and Kaggle URLs of a notebook in ``notebooks/`` on GitHub ``repo``."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        raise ValueError(
            f"repo {repo!r} must be OWNER/NAME as on GitHub, e.g. {DEFAULT_GITHUB_REPO}"
        )
    github = f"github.com/{repo}/blob/{branch}/notebooks/{Path(path).name}"
    return {
        "colab": f"https://colab.research.google.com/{github.replace('github.com', 'github', 1)}",
        "kaggle": f"https://kaggle.com/kernels/welcome?src=https://{github}",
    }


def links_table(
    *, directory: Path | None = None, repo: str = DEFAULT_GITHUB_REPO, branch: str = "main"
) -> str:
    """The README's Markdown table: one row per notebook with its Colab and Kaggle links."""
    rows = ["| notebook | Colab | Kaggle |", "|---|---|---|"]
    for path in discover(directory=directory):
        url = launch_links(path, repo=repo, branch=branch)
        rows.append(
            f"| [{path.stem}](notebooks/{path.name}) | [Open in Colab]({url['colab']}) | "
            f"[Open in Kaggle]({url['kaggle']}) |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m common.notebooks check RESULTS_ROOT [--profile smoke]``: after nbval;
    ``python -m common.notebooks links [--repo OWNER/NAME]``: the README's launch links."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m common.notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check", help="every notebook left metrics.json, run.json and its declared figures"
    )
    check.add_argument("results_root", type=Path)
    check.add_argument("--profile", default="smoke")
    links = sub.add_parser("links", help="print the README's Colab/Kaggle table for every notebook")
    links.add_argument("--repo", default=DEFAULT_GITHUB_REPO, help="GitHub OWNER/NAME")
    links.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    if args.command == "links":
        print(links_table(repo=args.repo, branch=args.branch))
        return 0
    problems = check_all(args.results_root, profile=args.profile)
    for problem in problems:
        print("error:", problem)
    if not problems:
        print(f"every notebook's run under {args.results_root} is complete")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
