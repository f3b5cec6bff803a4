"""``make reproduce``: run every notebook in the demo profile, refresh figures/.

Executed notebooks and results go to ``results/<paper>/demo/``; the PNG figures of
that canonical run are copied to ``figures/<paper>/`` (old PNGs there are removed
first, so the folder shows exactly what the notebook makes now).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from common.notebooks import check_run, discover, notebook_meta, run_notebook
from common.paths import figures_dir, notebooks_dir, results_root

CANONICAL_RUN = "demo"


def refresh_figures(run_dir: Path, target: Path) -> list[Path]:
    """Replace the PNGs in ``target`` with those of ``run_dir``."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.png"):
        old.unlink()
    return [Path(shutil.copy2(png, target / png.name)) for png in sorted(run_dir.glob("*.png"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=["smoke", "demo", "paper"])
    parser.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run (e.g. 01 03)")
    args = parser.parse_args(argv)

    notebooks = discover(notebooks_dir())
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in args.only)]
    if not notebooks:
        print(f"no notebooks in {notebooks_dir()} yet: nothing to reproduce")
        return 0
    root = results_root()
    failures = 0
    for nb in notebooks:
        meta = notebook_meta(nb)
        start = time.time()
        print(f"running {nb.name} (profile {args.profile}) ...", flush=True)
        try:
            run_dir = run_notebook(nb, root, profile=args.profile, run=CANONICAL_RUN if args.profile == "demo" else args.profile, progress=True)
        except Exception as exc:  # report and go on with the other notebooks
            failures += 1
            print(f"error: {nb.name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        problems = check_run(run_dir, meta["figures"])
        if problems:
            failures += 1
            print("error: " + "; ".join(problems))
            continue
        copied = refresh_figures(run_dir, figures_dir() / meta["paper"]) if args.profile == "demo" else []
        print(f"  done in {time.time() - start:.0f} s: executed notebook and results in {run_dir}")
        if copied:
            print(f"  {len(copied)} figure(s) refreshed in {figures_dir() / meta['paper']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
