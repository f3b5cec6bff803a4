"""``python -m common.data``: list, inspect, synth, fetch and audit datasets.

Bad input ends with exit code 2 and one line ``error: ...`` on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.data import DATASETS, DataError, default_root, load, registry_entry
from common.data.core import check_images, image_sizes
from common.data.kaggle import fetch_kaggle
from common.data.microarray import fetch_debian
from common.data.synth import WRITERS, synth
from common.paths import atomic_write_text, data_root, download_root, results_root


def cmd_list(args: argparse.Namespace) -> int:
    for info in DATASETS.values():
        try:
            root = default_root(info.id)
            present = "present" if root.is_dir() and any(root.iterdir()) else "absent"
        except (DataError, OSError):
            root, present = data_root() / "raw" / info.id, "absent: not found under the data root"
        print(f"{info.id}: {info.title} (paper {info.papers})")
        print(f"  source:  {info.source}")
        print(f"  licence: {info.licence}")
        print(f"  layout:  {info.layout}")
        print(f"  local:   {root} ({present})")
    return 0


def inspect_dataset(name: str, root: Path | None, check: bool) -> dict:
    ds = load(name, root=root)
    problems = list(ds.problems)
    sizes: list = []
    if ds.paths is not None:
        if check:
            problems += check_images(ds.paths)
        else:
            bad = check_images(ds.paths[:20])
            if bad:
                raise DataError(
                    bad[0].replace(
                        "; re-download or delete it",
                        "; run inspect with --check-images to list every bad file",
                    )
                )
        sizes = image_sizes(ds.paths)
    return {
        "dataset": name,
        "n_samples": len(ds),
        "classes": ds.class_counts(),
        "n_patients": ds.n_patients,
        "problems": problems,
        "_extra": {
            "source": ds.source,
            "fingerprint": ds.fingerprint,
            "image_sizes": sizes,
            "root": str(ds.root),
            "info": ds.info,
            "n_features": None if ds.X is None else int(ds.X.shape[1]),
        },
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    report = inspect_dataset(
        args.dataset, Path(args.root) if args.root else None, args.check_images
    )
    extra = report.pop("_extra")
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"dataset:    {report['dataset']} ({extra['source']}, fingerprint {extra['fingerprint']})"
    )
    found = "given with --root" if args.root else "found under the data root " + str(data_root())
    print(f"root:       {extra['root']} ({found})")
    print(f"n_samples:  {report['n_samples']}")
    patients = report["n_patients"]
    print(f"n_patients: {patients if patients is not None else 'none recorded in this layout'}")
    if extra["n_features"] is not None:
        print(f"n_features: {extra['n_features']}")
    if extra["image_sizes"]:
        print(
            "image size(s) (first 20 files): "
            f"{', '.join(f'{w}x{h}' for w, h in extra['image_sizes'])}"
        )
    print("classes:")
    for label, count in report["classes"].items():
        print(f"  {label}: {count}")
    print(f"problems:   {len(report['problems'])}")
    for problem in report["problems"]:
        print(f"  - {problem}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    kwargs = {"n_per_class": args.n_per_class, "seed": args.seed, "difficulty": args.difficulty}
    if args.dataset != "cumida":
        kwargs.update(patients_per_class=args.patients_per_class)
        if args.size is not None:
            kwargs["size"] = args.size
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    out = synth(args.dataset, Path(args.out), **kwargs)
    print(
        f"wrote a synthetic {args.dataset} tree to {out} (inspect it with: python -m "
        f"common.data inspect {args.dataset} --root {out})"
    )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    info = registry_entry(args.dataset)
    # downloads go to the data root when it is writable, else to the cache root (Kaggle's input is
    # read-only)
    base = download_root()
    if info.fetch == "debian":
        root = Path(args.root) if args.root else default_root(args.dataset)
        fetch_debian(root)
        ds = load(args.dataset, root=root)
        print(
            f"fetched {args.dataset} into "
            f"{root}{'' if args.root or base == data_root() else ' (the data root is read-only)'}: "
            f"{len(ds)} samples, {ds.X.shape[1]} features"
        )
        return 0
    root = Path(args.root) if args.root else base / "raw" / args.dataset
    if info.fetch.startswith("kaggle:"):
        handle = info.fetch.removeprefix("kaggle:")
        outcome = fetch_kaggle(handle, root)
        if outcome.path is not None:
            print(
                f"downloaded {args.dataset} ({handle}) into {outcome.path}; check it with: "
                f"python -m common.data inspect {args.dataset} --root {outcome.path}"
            )
            return 0
        print(outcome.message)
        steps = (
            f"download Kaggle dataset {handle} (kaggle.com/datasets/{handle}) and unzip it "
            f"into {root}"
        )
    else:
        steps = info.fetch.replace("<root>", str(root))
    print(f"{args.dataset} cannot be fetched automatically from here. Manual steps:")
    print(f"  1. {steps}")
    print(f"  2. the tree must look like: {info.layout.replace('<root>', str(root))}")
    print(f"  3. check it: python -m common.data inspect {args.dataset} --root {root}")
    return 1


def cmd_audit(args: argparse.Namespace) -> int:
    """Near-duplicate images (image sets) or duplicate profiles (microarray sets): a one-line
    summary,
    the unreadable files, and on request the full report as JSON and the contact sheet."""
    registry_entry(args.dataset)  # an unknown id is one line, before anything is read
    ds = load(args.dataset, root=Path(args.root) if args.root else None)
    figure = None
    if ds.X is not None:  # a feature matrix: duplicate profiles, not images
        from common.data.profile_audit import audit_profiles

        report = audit_profiles(ds)
    else:
        from common.data.audit import (
            DEFAULT_THRESHOLD,
            FRAMED_THRESHOLD,
            audit_images,
            save_contact_sheet,
        )

        report = audit_images(
            ds,
            threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
            framed_threshold=FRAMED_THRESHOLD
            if args.framed_threshold is None
            else args.framed_threshold,
            progress=sys.stderr.isatty(),
        )
        target = (
            Path(args.figure)
            if args.figure
            else results_root() / "audit" / ds.name / "near_duplicates.png"
        )
        figure = save_contact_sheet(ds, report, target)
    print(report["summary"])
    for item in report.get("unreadable", []):
        print(f"  unreadable: {item['path']} ({item['reason']})")
    if figure is not None:
        print(f"contact sheet of the largest groups: {figure}")
    elif ds.X is None:
        print("no near-duplicate groups: no contact sheet")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=1, default=str) + "\n")
        print(f"report: {args.json}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m common.data",
        description="List, inspect, synthesise, fetch and audit the datasets.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "list", help="the datasets, their source, licence, layout and local presence"
    ).set_defaults(func=cmd_list)
    ins = sub.add_parser("inspect", help="read a dataset with its real loader and summarise it")
    ins.add_argument("dataset", choices=list(DATASETS))
    ins.add_argument(
        "--root",
        help="dataset root (default: <data root>/raw/<dataset>, else the one folder under the "
        "data root with its layout)",
    )
    ins.add_argument("--json", action="store_true", help="print exactly one JSON object")
    ins.add_argument(
        "--check-images", action="store_true", help="decode every image and list the bad ones"
    )
    ins.set_defaults(func=cmd_inspect)
    syn = sub.add_parser("synth", help="write a synthetic twin in the real layout")
    syn.add_argument("dataset", choices=sorted(WRITERS))
    syn.add_argument("--out", required=True)
    syn.add_argument("--n-per-class", type=int, default=None)
    syn.add_argument("--patients-per-class", type=int, default=None)
    syn.add_argument("--size", type=int, default=None)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--difficulty", type=float, default=None)
    syn.set_defaults(func=cmd_synth)
    fet = sub.add_parser(
        "fetch", help="download a dataset (Debian route for bioc_all/golub; instructions otherwise)"
    )
    fet.add_argument("dataset", choices=list(DATASETS))
    fet.add_argument(
        "--root",
        help="where to put it (default: <data root>/raw/<dataset>, or <cache "
        "root>/raw/<dataset> when the data root is read-only)",
    )
    fet.set_defaults(func=cmd_fetch)
    aud = sub.add_parser(
        "audit",
        help="near-duplicate images (perceptual hashes) or duplicate profiles (microarrays)",
    )
    aud.add_argument(
        "dataset", help=f"dataset id: {', '.join(DATASETS)}"
    )  # checked in cmd_audit: one-line error
    aud.add_argument("--root", help="dataset root (default: as for inspect)")
    aud.add_argument(
        "--json",
        metavar="OUT",
        help="write the full report (groups, pairs, unreadable files) to this JSON file",
    )
    aud.add_argument(
        "--figure",
        metavar="PNG",
        help="contact sheet of the largest groups (default: <results "
        "root>/audit/<dataset>/near_duplicates.png; none when there are no groups)",
    )
    aud.add_argument(
        "--threshold",
        type=int,
        default=None,
        help="largest Hamming distance of a pair (default: documented in common.data.audit)",
    )
    aud.add_argument(
        "--framed-threshold",
        type=int,
        default=None,
        help="the same for images on a dark background",
    )
    aud.set_defaults(func=cmd_audit)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, missing files found late
        print(
            f"error: {exc.filename or ''}: {exc.strerror or exc}; check the path and its "
            "permissions",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
