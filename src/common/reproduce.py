"""``make reproduce``: run every notebook in the demo profile, refresh the committed canonical run.

Executed notebooks and results go to ``results/<paper>/demo/`` (the canonical run).
From it, per paper, ``results/canonical/<paper>/`` (metrics.csv, claims_vs_reproduced.md,
run.json, predictions.csv) and ``figures/<paper>/`` (the declared key figures) are
replaced wholesale, within the size limits of :mod:`common.canonical`; then the figure
list in ``figures/README.md`` and the demo table in ``README.md`` are regenerated.

``python -m common.reproduce --from RESULTS_DIR [--run NAME]`` does the refresh from
runs already made under ``RESULTS_DIR/<paper>/<NAME>/`` (default ``demo``) without
running anything; ``python -m common.reproduce readme [--check]`` only regenerates (or
checks) the two generated README sections from what is committed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import canonical
from common.notebooks import check_run, discover, notebook_meta, run_notebook
from common.paths import figures_dir, notebooks_dir, repo_root, results_root

CANONICAL_RUN = canonical.CANONICAL_RUN


def refresh_from(
    results: Path,
    notebooks: list[Path],
    *,
    run: str = CANONICAL_RUN,
    repo: Path | None = None,
    claims: Path | None = None,
    every_notebook: list[Path] | None = None,
) -> int:
    """Refresh ``results/canonical/`` and ``figures/`` from ``<results>/<paper>/<run>/`` for each
    notebook, then the generated README sections (over ``every_notebook``, default all of
    ``<repo>/notebooks``); print one line per paper; return the number of failures (each
    printed as a one-line error)."""
    repo = Path(repo or repo_root())
    failures = 0
    for nb in notebooks:
        meta = notebook_meta(nb)
        try:
            done = canonical.refresh_paper(
                Path(results) / meta["paper"] / run, meta["paper"], meta["key_figures"], repo=repo
            )
        except canonical.CanonicalError as exc:
            failures += 1
            print(f"error: {exc}")
            continue
        print(
            f"  {meta['paper']}: {len(done['written']) - len(canonical.CANONICAL_FILES)} "
            f"figure(s) refreshed in {repo / 'figures' / meta['paper']} "
            f"({done['figure_bytes'] / 1024:.0f} KB), run files in "
            f"{canonical.canonical_root(repo=repo) / meta['paper']}"
        )
    try:
        for path in canonical.write_sections(
            every_notebook or discover(directory=repo / "notebooks"), repo=repo, claims=claims
        ):
            print(f"  regenerated {path}")
    except canonical.CanonicalError as exc:
        failures += 1
        print(f"error: {exc}")
    return failures


def readme_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.reproduce readme",
        description="regenerate figures/README.md's list and README.md's demo table from "
        "results/canonical/",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if either section is out of date",
    )
    args = parser.parse_args(argv)
    repo = repo_root()
    notebooks = discover(directory=repo / "notebooks")
    if args.check:
        stale = canonical.stale_sections(notebooks, repo=repo)
        for path in stale:
            print(
                f"error: {path}'s generated section is out of date: run python -m "
                "common.reproduce readme"
            )
        return 1 if stale else 0
    try:
        written = canonical.write_sections(notebooks, repo=repo)
    except canonical.CanonicalError as exc:
        print(f"error: {exc}")
        return 1
    print(
        "\n".join(f"regenerated {p}" for p in written) or "both generated sections are up to date"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["readme"]:
        return readme_command(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=["smoke", "demo", "paper"])
    parser.add_argument(
        "--only", nargs="*", default=None, help="notebook name prefixes to run (e.g. 01 03)"
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="RESULTS_DIR",
        help="run nothing: refresh results/canonical/ and figures/ from RESULTS_DIR/<paper>/<run>/",
    )
    parser.add_argument(
        "--run", default=CANONICAL_RUN, help="with --from: the run folder name (default demo)"
    )
    args = parser.parse_args(argv)

    notebooks = discover(directory=notebooks_dir())
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in args.only)]
    if not notebooks:
        print(f"no notebooks in {notebooks_dir()} yet: nothing to reproduce")
        return 0
    repo = (
        figures_dir().parent
    )  # the checkout whose figures/, results/canonical/ and README.md are refreshed
    if args.source is not None:
        return (
            1
            if refresh_from(
                args.source,
                notebooks,
                run=args.run,
                repo=repo,
                every_notebook=discover(directory=notebooks_dir()),
            )
            else 0
        )
    root = results_root()
    failures = 0
    finished = []
    for nb in notebooks:
        meta = notebook_meta(nb)
        start = time.time()
        print(f"running {nb.name} (profile {args.profile}) ...", flush=True)
        try:
            run_dir = run_notebook(
                nb,
                root,
                profile=args.profile,
                run=CANONICAL_RUN if args.profile == "demo" else args.profile,
                progress=True,
            )
        except Exception as exc:  # report and go on with the other notebooks
            failures += 1
            print(
                f"error: {nb.name} failed: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            )
            continue
        problems = check_run(run_dir, meta["figures"])
        if problems:
            failures += 1
            print("error: " + "; ".join(problems))
            continue
        print(f"  done in {time.time() - start:.0f} s: executed notebook and results in {run_dir}")
        finished.append(nb)
    if args.profile == "demo" and finished:
        print(f"refreshing results/canonical/ and {figures_dir()} from the demo runs ...")
        failures += refresh_from(
            root,
            finished,
            run=CANONICAL_RUN,
            repo=repo,
            every_notebook=discover(directory=notebooks_dir()),
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
