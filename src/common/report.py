"""``make report``: one static reviewer report over every run under ``results/``.

Writes ``<results>/report/REPORT.md`` and ``<results>/report/index.html``:

- a summary across the papers: each paper's headline claim (``headline:`` in its
  claims file) beside the reproduced value under ``published`` and under
  ``leak_free`` (with the 95% interval), the data source and the profile, linked to
  the run's section; then, per run and protocol, how many claims were reproduced,
  not reproduced or not comparable (and why), by the rules of claims/README.md;
- one section per run: the protocols in the notebook's own words (``run.json``), the
  leakage sheet of each protocol (:mod:`common.leakage`; "no leakage sheet in this run"
  for runs older than the sheet), the claimed-vs-reproduced table, every figure, and the
  environment.

Figures and ``run.json`` are copied into ``report/<paper>/<run>/`` and referenced
relatively, so the folder can be zipped and shared. Runs on synthetic data carry a
badge wherever they appear. Sweep folders (``results/sweeps``) are not runs of the
canonical notebooks and are left out; each sweep has its own ``collected.md``.

The committed canonical runs (``results/canonical/<paper>/``: run.json, metrics.csv,
claims_vs_reproduced.md, predictions.csv; figures in ``figures/<paper>/``, written by
``make reproduce``) are read as well, so a fresh clone with no runs still gets a
report. They are labelled "canonical" everywhere. A local run whose ``run.json`` is
identical to a canonical run's (the demo run that canonical run was copied from) is
the same run: it is shown once, as the canonical run, noting the local folder.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common import claims as C
from common import leakage
from common.evaluate import format_value, read_metrics
from common.paths import atomic_write_text, claims_dir, repo_root, results_root

REPORT_DIR = "report"
CANONICAL = "canonical"
SKIPPED_FOLDERS = {REPORT_DIR, "sweeps", CANONICAL, "rehearsal"}
BADGES = {
    "synthetic": "🧪 SYNTHETIC DATA",
    "embedded-real": "real public data (embedded)",
    "real": "real data",
}
PROFILE_ORDER = {"paper": 0, "demo": 1, "smoke": 2}


@dataclass
class RunInfo:
    paper: str
    name: str
    dir: Path
    meta: dict
    canonical: bool = False  # a committed run under results/canonical/
    figures: Path | None = None  # where its PNGs are (default: the run folder)
    same_as: str = ""  # the local run folder that is this same run, if any

    @property
    def anchor(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{self.paper}-{self.name}")

    @property
    def label(self) -> str:
        return (
            f"canonical (committed, results/{CANONICAL}/{self.paper})"
            if self.canonical
            else f"run `{self.name}`"
        )

    @property
    def source(self) -> str:
        return self.meta.get("data", {}).get("source", "unknown")

    @property
    def profile(self) -> str:
        return self.meta.get("params", {}).get("profile", "?")


def discover_runs(results: Path) -> list[RunInfo]:
    """Complete runs (``run.json`` and ``metrics.json``) under ``<results>/<paper>/<run>/``."""
    runs = []
    for run_json in sorted(Path(results).glob("*/*/run.json")):
        run_dir = run_json.parent
        if run_dir.parent.name in SKIPPED_FOLDERS or not (run_dir / "metrics.json").is_file():
            continue
        try:
            meta = json.loads(run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ValueError(
                f"{run_json} is not valid JSON; rerun that notebook or delete the folder"
            ) from None
        runs.append(RunInfo(paper=run_dir.parent.name, name=run_dir.name, dir=run_dir, meta=meta))
    return runs


def discover_canonical(folder: Path, *, figures: Path | None = None) -> list[RunInfo]:
    """Committed canonical runs: ``<folder>/<paper>/`` with ``run.json`` and ``metrics.csv``;
    their figures in ``<figures>/<paper>/`` (default: ``figures/`` beside ``results/``)."""
    folder = Path(folder)
    figures = Path(figures) if figures else folder.parent.parent / "figures"
    runs = []
    for run_json in sorted(folder.glob("*/run.json")):
        run_dir = run_json.parent
        if not (run_dir / "metrics.csv").is_file():
            continue
        try:
            meta = json.loads(run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ValueError(
                f"{run_json} is not valid JSON; refresh it with make reproduce"
            ) from None
        runs.append(
            RunInfo(
                paper=run_dir.name,
                name=CANONICAL,
                dir=run_dir,
                meta=meta,
                canonical=True,
                figures=figures / run_dir.name,
            )
        )
    return runs


def merge_runs(local: list[RunInfo], canonical: list[RunInfo]) -> list[RunInfo]:
    """Canonical runs plus the local runs that are not one of them (same paper and an
    identical ``run.json``: the canonical run is a copy of that local demo run)."""
    kept = []
    for run in local:
        twin = next((c for c in canonical if c.paper == run.paper and c.meta == run.meta), None)
        if twin is None:
            kept.append(run)
        else:
            twin.same_as = str(run.dir)
    return canonical + kept


def badge(source: str, *, markdown: bool = True) -> str:
    text = BADGES.get(source, source)
    return f"**{text}**" if markdown and source == "synthetic" else text


def _value(compared: pd.Series, protocol: str) -> str:
    """One protocol's reproduced value of a :func:`claims.compare` row, "97.12% [95.01, 98.40]"."""
    if protocol not in compared or not np.isfinite(compared[protocol]):
        return "not run"
    percent = compared["unit"] == "percent"
    text = format_value(
        compared[protocol],
        ci_low=compared[f"{protocol}_ci_low"],
        ci_high=compared[f"{protocol}_ci_high"],
        percent=percent,
    )
    return (
        text.replace(" [", "% [", 1) if percent and "[" in text else text + ("%" if percent else "")
    )


def _claimed(claim: dict) -> str:
    return f"{claim['value']:g}%" if claim["unit"] == "percent" else f"{claim['value']:g}"


def headline_cells(
    paper: str, metrics: pd.DataFrame, directory: Path, *, table: bool = True
) -> tuple[str, str, str]:
    """The paper's headline claim (with its table unless ``table`` is False) and the reproduced
    value under
    ``published`` and under ``leak_free`` (95% interval), as table cells."""
    head = (
        C.load_headline(paper, directory=directory)
        if (directory / f"{paper}.yaml").is_file()
        else None
    )
    if head is None:
        return "(no headline in claims file)", "", ""
    where = f", {head['table']}" if table else ""
    compared = C.compare(pd.DataFrame([head]), metrics).iloc[0]
    return (
        f"{head['model']} {head['metric']} ({head['class']}){where}: {_claimed(head)}",
        _value(compared, "published"),
        _value(compared, "leak_free"),
    )


def summary_rows(runs: list[RunInfo], directory: Path) -> list[dict[str, str]]:
    """One row per run: paper, headline claim, published, leak_free, source, profile, link."""
    rows = []
    for run in runs:
        claim_text, published, free = headline_cells(run.paper, read_metrics(run.dir), directory)
        rows.append(
            {
                "paper": run.paper,
                "headline claim": claim_text,
                "reproduced, published": published,
                "reproduced, leak_free (95% CI)": free,
                "data": badge(run.source),
                "profile": run.profile,
                "run": f"[{CANONICAL if run.canonical else run.name}](#{run.anchor})",
            }
        )
    return rows


def verdict_rows(runs: list[RunInfo], directory: Path) -> list[dict[str, Any]]:
    """Per run with a claims file and per protocol: the count of each verdict
    (:func:`claims.verdict`)."""
    rows = []
    for run in runs:
        if not (directory / f"{run.paper}.yaml").is_file():
            continue
        comparison, _ = C.claims_vs_run(run.paper, run.dir, source=run.source, directory=directory)
        rows += [
            {
                "paper": run.paper,
                "run": f"[{CANONICAL if run.canonical else run.name}](#{run.anchor})",
                "data": badge(run.source),
                **counts,
            }
            for counts in C.verdict_counts(comparison)
        ]
    return rows


def _table(rows: list[dict[str, str]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "(none)"


def run_section(run: RunInfo, out: Path, directory: Path) -> str:
    """The Markdown of one run; copies its figures and run.json under ``out/<paper>/<run>/``."""
    target = out / run.paper / run.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    figures = [
        Path(shutil.copy2(png, target / png.name))
        for png in sorted((run.figures or run.dir).glob("*.png"))
    ]
    shutil.copy2(run.dir / "run.json", target / "run.json")
    rel = f"{run.paper}/{run.name}"
    lines = [
        f'<a id="{run.anchor}"></a>',
        "",
        f"## {run.paper} · {run.label} · {badge(run.source)}",
        "",
    ]
    if run.canonical:
        lines += [
            f"- Canonical run: committed by `make reproduce` (figures in `figures/{run.paper}/`)"
            + (f"; the same run as the local `{run.same_as}`" if run.same_as else ""),
            "",
        ]
    data = run.meta.get("data", {})
    lines += [
        f"- Data: {badge(run.source)}: {data.get('description', '')} (fingerprint "
        f"`{data.get('fingerprint', '?')}`)",
        f"- Profile `{run.profile}`, seed {run.meta.get('params', {}).get('seed', '?')}, "
        f"started {run.meta.get('started_at', '?')}, "
        f"{run.meta.get('timings_s', {}).get('total', '?')} s",
        f"- Environment: [run.json]({rel}/run.json) (parameters, package versions, backend "
        f"`{run.meta.get('backend', '?')}`, commit "
        f"`{str(run.meta.get('git', {}).get('commit'))[:10]}`)",
        "",
    ]
    protocols = run.meta.get("protocols") or {}
    if protocols:
        lines += [
            "### Protocols",
            "",
            *[f"- **{name}**: {text}" for name, text in protocols.items()],
            "",
        ]
    lines += [
        "### Leakage sheet",
        "",
        f"Each protocol against the leakage taxonomy of {leakage.REFERENCE}: *yes* (test "
        "information can reach the model this way), *no*, or *n/a* (not applicable), each "
        "decided by a written rule from this run's own facts (`common/leakage.py`; the "
        "facts are in run.json under `leakage`).",
        "",
        leakage.sheet_markdown(run.meta.get("leakage")),
        "",
    ]
    if (directory / f"{run.paper}.yaml").is_file():
        _, markdown = C.claims_vs_run(run.paper, run.dir, source=run.source, directory=directory)
        lines += ["### Claimed vs reproduced", "", markdown, ""]
    else:
        lines += [
            f"No claims file `claims/{run.paper}.yaml`: metrics only, in the run's `metrics.csv`.",
            "",
        ]
    if figures:
        lines += ["### Figures", ""]
        for fig in figures:
            caption = fig.stem.replace("_", " ") + (
                " (synthetic data)" if run.source == "synthetic" else ""
            )
            lines += [f"![{caption}]({rel}/{fig.name})", "", f"*{caption}*", ""]
    lines += ["[back to the summary](#summary)", ""]
    return "\n".join(lines)


def build_markdown(runs: list[RunInfo], out: Path, directory: Path) -> str:
    runs = sorted(
        runs, key=lambda r: (r.paper, not r.canonical, PROFILE_ORDER.get(r.profile, 9), r.name)
    )
    synthetic = sum(r.source == "synthetic" for r in runs)
    committed = sum(r.canonical for r in runs)
    lines = [
        "# Leukemia-classification reproductions: reviewer report",
        "",
        f"{len(runs) - committed} local run(s) from the results folder and {committed} "
        f"committed canonical run(s) (results/{CANONICAL}/); {synthetic} on **synthetic "
        "data** (badged 🧪: a pipeline check in the real dataset's layout, not the paper's "
        "numbers). `published` follows each paper's own protocol; `leak_free` keeps test "
        "patients/images out of every fitted step. Values are % with 95% bootstrap "
        "intervals where the run computed one.",
        "",
        '<a id="summary"></a>',
        "",
        "## Summary",
        "",
        _table(summary_rows(runs, directory)),
        "",
        '<a id="verdicts"></a>',
        "",
        "### Verdicts",
        "",
        "Per run and protocol: a claim is *reproduced* when it lies in the run's 95% interval "
        "(counts: exactly; raw values, and scores without an interval: within 1%), "
        "*not comparable* when the number is cited from other work, was not run, or the run used "
        'synthetic data or a stand-in dataset (claims/README.md, "Verdicts").',
        "",
        _table(verdict_rows(runs, directory)),
        "",
    ]
    lines += [run_section(run, out, directory) for run in runs]
    return "\n".join(lines)


def sweep_sections(results: Path, out: Path) -> str:
    """Each collected sweep under ``<results>/sweeps``: its table and plot (copied into the
    report)."""
    lines = []
    for collected in sorted(Path(results).glob("sweeps/*/collected.md")):
        name = collected.parent.name
        target = out / "sweeps" / name
        target.mkdir(parents=True, exist_ok=True)
        body = collected.read_text(encoding="utf-8").split("\n", 1)[
            1
        ]  # its own title is replaced below
        lines += [
            f'<a id="sweep-{name}"></a>',
            "",
            f"## Sweep `{name}`",
            "",
            body.replace("\n## ", "\n### "),
            "",
        ]
        if (collected.parent / "collected.png").is_file():
            shutil.copy2(collected.parent / "collected.png", target / "collected.png")
            lines += [f"![sweep {name}](sweeps/{name}/collected.png)", ""]
    return "\n".join(lines)


HTML_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reviewer report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
strong {{ color: {accent}; }}
</style></head><body>
"""


def to_html(markdown: str) -> str:
    """The report's Markdown as one static HTML page (mistune, tables on, raw anchors kept)."""
    import mistune

    body = mistune.create_markdown(escape=False, plugins=["table"])(markdown)
    return HTML_HEAD.format(accent="#b00020") + body + "\n</body></html>\n"


def build_report(
    *, results: Path | None = None, directory: Path | None = None, canonical: Path | None = None
) -> dict[str, Any]:
    """Write ``REPORT.md`` and ``index.html`` under ``<results>/report``; return paths and run
    count.

    ``canonical``: the committed canonical runs (default ``<results>/canonical``).
    """
    results = Path(results or results_root())
    directory = Path(directory or claims_dir())
    runs = merge_runs(
        discover_runs(results), discover_canonical(Path(canonical or results / CANONICAL))
    )
    out = results / REPORT_DIR
    if not runs:
        raise ValueError(
            f"no complete run under {results} (a run folder needs run.json and "
            "metrics.json) and no canonical run committed: run `make reproduce` first"
        )
    for stale in (p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
        shutil.rmtree(stale)
    markdown = build_markdown(runs, out, directory) + "\n" + sweep_sections(results, out)
    md_path = atomic_write_text(out / "REPORT.md", markdown)
    html_path = atomic_write_text(out / "index.html", to_html(markdown))
    return {"markdown": md_path, "html": html_path, "runs": len(runs)}


def broken_links(html_path: Path) -> list[str]:
    """Relative links and images of ``html_path`` that do not resolve (files or #anchors)."""
    html_path = Path(html_path)
    text = html_path.read_text(encoding="utf-8")
    anchors = set(re.findall(r'\bid="([^"]+)"', text))
    problems = []
    for attr, target in re.findall(r'\b(href|src)="([^"]+)"', text):
        target = html.unescape(target)
        if re.match(r"^[a-z]+:", target):
            problems.append(f"{attr}={target}: absolute URL (the report must work offline)")
        elif target.startswith("#"):
            if target[1:] not in anchors:
                problems.append(f"{attr}={target}: no element with that id")
        elif not (html_path.parent / target).is_file():
            problems.append(f"{attr}={target}: file missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m common.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results root (default $REPRO_RESULTS_DIR or results/)",
    )
    parser.add_argument(
        "--canonical",
        type=Path,
        default=None,
        help=f"committed canonical runs (default the repository's results/{CANONICAL}/)",
    )
    args = parser.parse_args(argv)
    try:
        written = C.write_report(results=args.results)
        built = build_report(
            results=args.results, canonical=args.canonical or repo_root() / "results" / CANONICAL
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = broken_links(built["html"])
    for problem in problems:
        print(f"error: {built['html']}: {problem}", file=sys.stderr)
    print(f"{built['runs']} run(s); {len(written)} claims_vs_reproduced.md refreshed")
    print(f"wrote {built['markdown']}\nwrote {built['html']}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
