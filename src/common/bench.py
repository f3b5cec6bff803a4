"""``python -m common.bench``: throughput of a backbone raw, through the file pipeline, and cached.

On a synthetic image set written to disk it reports images/second for
(a) the model alone on an in-memory batch, (b) the full pipeline from files
(decode, resize, optional HSV segmentation, preprocess, model), (c) a cached
re-run; the ratio (b)/(a); and the peak resident memory. ``--memory-check``
also runs the pipeline in fresh processes on two set sizes and compares their
peak memory (it must not grow with the number of images). On a GPU it uses mixed
precision. Prints one table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _images(out: Path, n: int, size: int, seed: int) -> list[str]:
    from common.data import load
    from common.data.synth import synth_aria_all

    per_class = math.ceil(n / 4)
    synth_aria_all(
        out, n_per_class=per_class, patients_per_class=min(per_class, 4), size=size, seed=seed
    )
    return load("aria_all", root=out).paths[:n].tolist()


def _segment_hook(kind: str):
    if kind == "none":
        return None, {}
    from common.imaging import HSV_LOWER, HSV_UPPER, hsv_segment_hook

    return hsv_segment_hook(), {"segment": "hsv", "lower": HSV_LOWER, "upper": HSV_UPPER}


def _device() -> str:
    import keras

    gpus = [
        d
        for d in keras.distribution.list_devices()
        if "gpu" in str(d).lower() or "cuda" in str(d).lower()
    ]
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        return f"{gpus[0]} (mixed_float16)"
    return "cpu"


def run(
    backbone: str, size: int, n_images: int, batch_size: int, segment: str, *, seed: int = 0
) -> dict:
    import keras

    from common.backbones import build_backbone
    from common.features import extract_features

    device = _device()
    bb = build_backbone(backbone, input_size=size, seed=seed)
    hook, pre = _segment_hook(segment)
    with tempfile.TemporaryDirectory() as tmp:
        paths = _images(Path(tmp) / "images", n_images, size, seed)
        batch = bb.preprocess(
            np.random.default_rng(seed)
            .integers(0, 256, (batch_size, size, size, 3))
            .astype(np.float32)
        )
        bb.model.predict_on_batch(batch)  # warm-up (graph tracing)
        n_batches = math.ceil(n_images / batch_size)
        t = time.perf_counter()
        for _ in range(n_batches):
            bb.model.predict_on_batch(batch)
        raw = n_batches * batch_size / (time.perf_counter() - t)
        cache = Path(tmp) / "cache"
        t = time.perf_counter()
        first = extract_features(
            bb,
            paths,
            "bench",
            batch_size=batch_size,
            segment=hook,
            preprocessing=pre,
            directory=cache,
            progress=False,
        )
        pipeline = n_images / (time.perf_counter() - t)
        t = time.perf_counter()
        again = extract_features(
            bb,
            paths,
            "bench",
            batch_size=batch_size,
            segment=hook,
            preprocessing=pre,
            directory=cache,
            progress=False,
        )
        cached = n_images / (time.perf_counter() - t)
        if not np.array_equal(first, again):
            raise RuntimeError("the cached features differ from the extracted ones")
    return {
        "backbone": backbone,
        "input_size": size,
        "n_images": n_images,
        "batch_size": batch_size,
        "segment": segment,
        "backend": keras.backend.backend(),
        "device": device,
        "raw_images_per_s": round(raw, 2),
        "pipeline_images_per_s": round(pipeline, 2),
        "cached_images_per_s": round(cached, 2),
        "pipeline_over_raw": round(pipeline / raw, 3),
        "cached_over_pipeline": round(cached / pipeline, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _memory_child(paths_file: str, backbone: str, size: int, batch_size: int) -> None:
    """Run the pipeline on the listed files without cache; print the peak RSS in MB."""
    from common.backbones import build_backbone
    from common.features import extract_features

    paths = Path(paths_file).read_text().splitlines()
    bb = build_backbone(backbone, input_size=size)
    extract_features(bb, paths, "memory", batch_size=batch_size, use_cache=False, progress=False)
    print(json.dumps({"n": len(paths), "peak_rss_mb": peak_rss_mb()}))


def memory_check(backbone: str, sizes: tuple[int, int], image_size: int, batch_size: int) -> dict:
    """Peak memory of the pipeline in fresh processes for two set sizes."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = _images(Path(tmp) / "images", max(sizes), image_size, 0)
        for n in sizes:
            listing = Path(tmp) / f"paths_{n}.txt"
            listing.write_text("\n".join(paths[:n]))
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "common.bench",
                    "--memory-child",
                    str(listing),
                    "--backbone",
                    backbone,
                    "--size",
                    str(image_size),
                    "--batch-size",
                    str(batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            out[n] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    small, large = out[min(sizes)], out[max(sizes)]
    return {
        "image_size": image_size,
        "peak_rss_mb": {str(k): round(v, 1) for k, v in out.items()},
        "growth_mb": round(large - small, 1),
        "growth_ratio": round(large / small, 3),
    }


def table(result: dict) -> str:
    rows = [
        ("raw model (in-memory batch)", result["raw_images_per_s"]),
        ("full pipeline from files", result["pipeline_images_per_s"]),
        ("cached re-run", result["cached_images_per_s"]),
    ]
    lines = [
        f"{result['backbone']} at {result['input_size']} px, {result['n_images']} images, "
        f"batch {result['batch_size']}, segment={result['segment']}, backend "
        f"{result['backend']} on {result['device']}",
        f"{'stage':32s} {'images/s':>10s}",
        *(f"{name:32s} {value:10.1f}" for name, value in rows),
        f"pipeline / raw: {result['pipeline_over_raw']:.2f}   cached / pipeline: "
        f"{result['cached_over_pipeline']:.0f}x   peak RSS: {result['peak_rss_mb']:.0f} MB",
    ]
    if "memory" in result:
        m = result["memory"]
        lines.append(
            f"peak RSS by set size at {m['image_size']} px: {m['peak_rss_mb']} (growth "
            f"{m['growth_mb']} MB, ratio {m['growth_ratio']})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.bench", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenetv2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--segment", choices=["none", "hsv"], default="none")
    p.add_argument(
        "--memory-check",
        default=None,
        help="two set sizes, e.g. 500,5000 (run at --memory-size px)",
    )
    p.add_argument("--memory-size", type=int, default=64)
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child, args.backbone, args.size, args.batch_size)
        return 0
    result = run(args.backbone, args.size, args.n_images, args.batch_size, args.segment)
    if args.memory_check:
        a, b = (int(x) for x in args.memory_check.split(","))
        result["memory"] = memory_check(args.backbone, (a, b), args.memory_size, args.batch_size)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
