"""The committed canonical runs: ``results/canonical/<paper>/`` and ``figures/<paper>/``.

``make reproduce`` runs every notebook's ``demo`` profile into ``results/<paper>/demo/``
(the canonical run) and then, per paper, refreshes what a reader sees without running
anything (each file replaced wholesale):

- ``results/canonical/<paper>/``: :data:`CANONICAL_FILES` of that run (a missing one is
  an error naming the file);
- ``figures/<paper>/``: the **key figures**, i.e. the PNGs the notebook declares in its
  metadata ``repro.key_figures`` (default: all of ``repro.figures``, which every run must
  write), re-encoded with a 256-colour palette (lossless for
  matplotlib's flat colours, slight banding in heatmaps; about 2.7 times smaller);
- the list of figures in ``figures/README.md`` and the demo table in ``README.md``,
  both generated between markers from the committed files (:func:`figures_section`,
  :func:`demo_section`).

Size limits (the issue asks for "a few hundred KB per paper at most"):
:data:`FIGURE_LIMIT_BYTES` (600 KB) for one paper's figures after re-encoding, and
:data:`TOTAL_LIMIT_BYTES` (10 MB) for all of ``figures/`` and ``results/canonical/``.
Both are checked before anything is written; exceeding one stops with one line naming
the paper and its size.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

from common.paths import atomic_write_text, repo_root

CANONICAL_FILES = ("metrics.csv", "claims_vs_reproduced.md", "run.json", "predictions.csv")
FIGURE_LIMIT_BYTES = 600 * 1024
TOTAL_LIMIT_BYTES = 10 * 1024 * 1024
CANONICAL_RUN = "demo"
NO_RUN = "no canonical run committed yet (make reproduce)"
FIGURES_START, FIGURES_END = "<!-- figures:start -->", "<!-- figures:end -->"
DEMO_START, DEMO_END = "<!-- demo:start -->", "<!-- demo:end -->"


class CanonicalError(Exception):
    """A one-line reason the refresh stopped (missing file, size over a limit, no markers)."""


def canonical_root(*, repo: Path | None = None) -> Path:
    return Path(repo or repo_root()) / "results" / "canonical"


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB"


def compress_png(path: Path) -> bytes:
    """``path`` re-encoded as a 256-colour palette PNG (median cut, no dithering), or its
    own bytes when that is not smaller."""
    from PIL import Image

    raw = Path(path).read_bytes()
    with Image.open(io.BytesIO(raw)) as img:
        quantized = img.convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        out = io.BytesIO()
        quantized.save(out, "PNG", optimize=True)
    return out.getvalue() if len(out.getvalue()) < len(raw) else raw


def _folder_bytes(folder: Path) -> int:
    return (
        sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        if Path(folder).is_dir()
        else 0
    )


def repo_relative(text: str, repo: Path) -> str:
    """``text`` with every absolute path inside ``repo`` made relative to it (the committed
    run.json names ``data/cache/...``, not the path of the checkout that made it)."""
    root = str(Path(repo).resolve())
    return text.replace(root + "/", "").replace(f'"{root}"', '"."')


def refresh_paper(
    run_dir: Path,
    paper: str,
    figures: list[str],
    *,
    repo: Path | None = None,
    figure_limit: int = FIGURE_LIMIT_BYTES,
    total_limit: int = TOTAL_LIMIT_BYTES,
) -> dict[str, Any]:
    """Replace ``results/canonical/<paper>/`` and ``figures/<paper>/`` with ``run_dir``'s files.

    ``figures``: the notebook's declared figures (``repro.figures``); all PNGs of the run
    when it declares none. Nothing is written unless every file is there and both size
    limits hold. Returns the written paths and the figures' size in bytes.
    """
    repo = Path(repo or repo_root())
    run_dir = Path(run_dir)
    names = list(figures) or sorted(p.name for p in run_dir.glob("*.png"))
    for name in [*CANONICAL_FILES, *names]:
        if not (run_dir / name).is_file():
            raise CanonicalError(
                f"{paper}: {run_dir / name} is missing; the canonical run must have it "
                "(rerun the notebook)"
            )
    pngs = {name: compress_png(run_dir / name) for name in names}
    size = sum(len(b) for b in pngs.values())
    if size > figure_limit:
        raise CanonicalError(
            f"{paper}: its {len(pngs)} figures are {_kb(size)} after re-encoding, over the "
            f"{_kb(figure_limit)} limit per paper (common.canonical.FIGURE_LIMIT_BYTES); "
            "declare fewer figures in metadata repro.figures or make them smaller"
        )
    fig_dir, can_dir = repo / "figures" / paper, canonical_root(repo=repo) / paper
    others = (
        _folder_bytes(repo / "figures")
        + _folder_bytes(canonical_root(repo=repo))
        - _folder_bytes(fig_dir)
        - _folder_bytes(can_dir)
    )
    total = others + size + sum((run_dir / n).stat().st_size for n in CANONICAL_FILES)
    if total > total_limit:
        raise CanonicalError(
            f"{paper}: figures/ and results/canonical/ would hold {total / 2**20:.1f} MB "
            f"with this paper, over the {total_limit / 2**20:.0f} MB limit "
            "(common.canonical.TOTAL_LIMIT_BYTES)"
        )
    for folder in (fig_dir, can_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    written = [Path(shutil.copyfile(run_dir / name, can_dir / name)) for name in CANONICAL_FILES]
    run_json = can_dir / "run.json"
    run_json.write_text(repo_relative(run_json.read_text(encoding="utf-8"), repo), encoding="utf-8")
    for name, data in pngs.items():
        (fig_dir / name).write_bytes(data)
        written.append(fig_dir / name)
    return {"paper": paper, "written": written, "figure_bytes": size}


# ---- where each figure is made ---------------------------------------------------------------

_SAVE = re.compile(r"save_figure\(\s*[^,]+,\s*[^,]+,\s*(f?)([\"'])(.+?)\2")


#: What an f-string placeholder in a figure name may stand for, by the placeholder's
#: name: protocols are the repository's two, numbers are digits; anything else is one
#: ``_``-free word in the strict pass and any text in the loose one (names may be ambiguous:
#: ``figure{number}_{part}_{protocol}`` and ``figure{number}_{protocol}`` both fit
#: ``figure10_leak_free`` only loosely).
_PLACEHOLDERS = (
    (r"protocol", "(?:published|leak_free)"),
    (r"^(?:number|n|i|k|fold|epoch)$", r"\d+"),
)


def _name_pattern(is_f: str, template: str, strict: bool = True) -> str:
    template = template[:-4] if template.endswith(".png") else template
    if not is_f:
        return re.escape(template)
    out, last = [], 0
    for match in re.finditer(r"\{([^}]*)\}", template):
        name = match.group(1).split("!")[0].split(":")[0].strip()
        rule = next((rx for key, rx in _PLACEHOLDERS if re.search(key, name)), None)
        out += [re.escape(template[last : match.start()]), (rule or "[^_]+") if strict else ".+?"]
        last = match.end()
    return "".join(out + [re.escape(template[last:])])


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def figure_cells(notebook: Path) -> dict[tuple[str, str], tuple[int, str]]:
    """Each figure name a notebook saves, ``("f" or "", name)`` -> (0-based cell index,
    nearest Markdown heading above that cell), from its ``plots.save_figure(fig, run_.dir,
    "<name>", ...)`` calls; the name may be an f-string (``f"figure{n}_{protocol}"``)."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    found: dict[tuple[str, str], tuple[int, str]] = {}
    heading = ""
    for index, cell in enumerate(cells):
        text = _source(cell)
        if cell.get("cell_type") == "markdown":
            titles = [
                line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")
            ]
            heading = titles[-1] if titles else heading
        elif cell.get("cell_type") == "code":
            for is_f, _, template in _SAVE.findall(text):
                found.setdefault((is_f, template), (index, heading))
    return found


def locate_figure(
    name: str, cells: dict[tuple[str, str], tuple[int, str]]
) -> tuple[int, str] | None:
    """The (cell, heading) of :func:`figure_cells` whose name fits ``name``: first a literal
    name or an f-string by its placeholders' rules, then any f-string that fits at all."""
    stem = name[:-4] if name.endswith(".png") else name
    for strict in (True, False):
        for (is_f, template), where in cells.items():
            if re.fullmatch(_name_pattern(is_f, template, strict), stem):
                return where
    return None


def _run_json(paper: str, repo: Path) -> dict | None:
    path = canonical_root(repo=repo) / paper / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def figures_section(notebooks: list[Path], *, repo: Path | None = None) -> str:
    """The Markdown table of ``figures/README.md``: every key figure of every notebook (metadata
    ``repro.key_figures``), the cell that makes it and the data source of the committed canonical
    run."""
    from common.notebooks import notebook_meta

    repo = Path(repo or repo_root())
    rows = ["| paper | figure | made in | data |", "|---|---|---|---|"]
    for nb in notebooks:
        meta = notebook_meta(nb)
        cells = figure_cells(nb)
        run = _run_json(meta["paper"], repo)
        source = (run.get("data") or {}).get("source", "unknown") if run else NO_RUN
        for name in meta["key_figures"]:
            where = locate_figure(name, cells)
            cell = (
                f'`{nb.name}` cell [{where[0]}] (under "{where[1]}")'
                if where
                else f"`{nb.name}` (no save_figure call found)"
            )
            path = repo / "figures" / meta["paper"] / name
            link = (
                f"[{name}]({meta['paper']}/{name})"
                if path.is_file()
                else f"{name} (not committed yet)"
            )
            rows.append(f"| {meta['paper']} | {link} | {cell} | {source} |")
    return "\n".join(rows) + "\n"


# ---- the README's demo table ------------------------------------------------------------------


def _duration(seconds: Any) -> str:
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return "?"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def demo_section(
    notebooks: list[Path], *, repo: Path | None = None, claims: Path | None = None
) -> str:
    """The README's demo table, from ``results/canonical/``: per paper the headline claim,
    the reproduced value under ``published`` and under ``leak_free`` (95% interval), the
    data source, profile and run time of the committed canonical run."""
    from common.evaluate import read_metrics
    from common.notebooks import notebook_meta
    from common.report import badge, headline_cells

    repo = Path(repo or repo_root())
    claims = Path(claims or repo / "claims")
    rows = [
        "| notebook | headline claim | reproduced, published | reproduced, leak_free (95% "
        "CI) | data | profile | run time |",
        "|---|---|---|---|---|---|---|",
    ]
    for nb in notebooks:
        paper = notebook_meta(nb)["paper"]
        folder = canonical_root(repo=repo) / paper
        link = f"[{nb.stem[:2]}](notebooks/{nb.name})"
        if not (folder / "run.json").is_file() or not (folder / "metrics.csv").is_file():
            rows.append(f"| {link} | {NO_RUN} | | | | | |")
            continue
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        metrics = read_metrics(folder)  # metrics.csv: the canonical folder has no metrics.json
        claim, published, free = headline_cells(paper, metrics, claims, table=False)
        data = run.get("data") or {}
        described = f"{badge(data.get('source', 'unknown'))}: {data.get('description', '')}".rstrip(
            ": "
        )
        profile = (run.get("params") or {}).get("profile", "?")
        rows.append(
            f"| {link} | {claim} | {published} | {free} | {described} | {profile} | "
            f"{_duration((run.get('timings_s') or {}).get('total'))} |"
        )
    return "\n".join(rows) + "\n"


def replace_section(text: str, start: str, end: str, section: str, where: str) -> str:
    if start not in text or end not in text:
        raise CanonicalError(
            f"{where} has no {start} ... {end} markers; add them where the generated text goes"
        )
    head, rest = text.split(start, 1)
    return head + start + "\n" + section + end + rest.split(end, 1)[1]


def section_of(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0] if start in text and end in text else ""


def _sections(notebooks: list[Path], repo: Path, claims: Path | None = None):
    """(file, start marker, end marker, generated text) of the two generated sections."""
    return (
        (
            repo / "figures" / "README.md",
            FIGURES_START,
            FIGURES_END,
            figures_section(notebooks, repo=repo),
        ),
        (
            repo / "README.md",
            DEMO_START,
            DEMO_END,
            demo_section(notebooks, repo=repo, claims=claims),
        ),
    )


def stale_sections(
    notebooks: list[Path], *, repo: Path | None = None, claims: Path | None = None
) -> list[Path]:
    """The files whose generated section differs from what :func:`write_sections` would write."""
    repo = Path(repo or repo_root())
    return [
        path
        for path, start, end, section in _sections(notebooks, repo, claims)
        if section_of(path.read_text(encoding="utf-8"), start, end).strip() != section.strip()
    ]


def write_sections(
    notebooks: list[Path], *, repo: Path | None = None, claims: Path | None = None
) -> list[Path]:
    """Regenerate the figure list in ``figures/README.md`` and the demo table in ``README.md``."""
    repo = Path(repo or repo_root())
    written = []
    for path, start, end, section in _sections(notebooks, repo, claims):
        if (
            not path.is_file()
        ):  # a checkout without that README (a test's skeleton): nothing to keep in step
            continue
        text = path.read_text(encoding="utf-8")
        new = replace_section(text, start, end, section, str(path))
        if new != text:
            atomic_write_text(path, new)
            written.append(path)
    return written
