"""Progress a reader can see in a notebook or a papermill log, kept short.

- :class:`EpochLog`: one line per epoch (loss, validation metric, seconds, time
  left), throttled so that a fit of many quick epochs prints a few lines, not
  hundreds: an epoch's line is printed when ``every`` seconds have passed since the
  last printed line, and always for the first and the last epoch.
- :func:`bar`: a tqdm bar for loops over images (feature extraction, pre-processing),
  redrawn at most every ``mininterval`` seconds so logs stay short.
- :func:`forecast`: after the first expensive stage, the estimated total time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import keras

#: Seconds between two printed epoch lines of one fit (the first and last epochs always print).
EPOCH_LINE_EVERY = 30.0
#: Seconds between two redraws of a progress bar.
BAR_MININTERVAL = 15.0


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


class EpochLog(keras.callbacks.Callback):
    """Print ``<name> epoch e/E: loss ..., val_<metric> ... | s this epoch, ~time left``."""

    def __init__(self, name: str, every: float = EPOCH_LINE_EVERY, stream: Any = None):
        super().__init__()
        self.name, self.every, self.stream = name, float(every), stream
        self.durations: list[float] = []
        self.lines: list[str] = []

    def on_train_begin(self, logs=None):
        self.durations, self._last_print = [], -float("inf")

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.durations.append(now - self._start)
        total = int(self.params.get("epochs") or epoch + 1)
        first, last = len(self.durations) == 1, epoch + 1 >= total
        if not (first or last or now - self._last_print >= self.every):
            return
        self._last_print = now
        shown = {
            k: v
            for k, v in (logs or {}).items()
            if k == "loss" or k.startswith("val_") or k == "accuracy"
        }
        values = ", ".join(f"{k} {float(v):.4f}" for k, v in shown.items())
        mean = sum(self.durations) / len(self.durations)
        left = "" if last else f", ~{duration(mean * (total - epoch - 1))} left"
        line = f"{self.name} epoch {epoch + 1}/{total}: {values} | {self.durations[-1]:.1f} s{left}"
        self.lines.append(line)
        print(line, file=self.stream or sys.stdout, flush=True)


def bar(
    iterable: Iterable,
    *,
    desc: str,
    total: int | None = None,
    initial: int = 0,
    disable: bool = False,
):
    """A tqdm bar for a long loop, redrawn at most every :data:`BAR_MININTERVAL` seconds."""
    from tqdm import tqdm

    return tqdm(
        iterable,
        desc=desc,
        total=total,
        initial=initial,
        disable=disable,
        mininterval=BAR_MININTERVAL,
        file=sys.stdout,
        ascii=True,
    )


def forecast(elapsed: float, done: float, total: float, what: str) -> str:
    """One line: the estimated total time when ``done`` of ``total`` equal-cost units took
    ``elapsed``."""
    if done <= 0:
        raise ValueError("forecast needs at least one finished unit")
    estimate = elapsed / done * total
    return (
        f"estimated total for {what}: {duration(estimate)} ({done:g} of {total:g} done in "
        f"{duration(elapsed)}, ~{duration(estimate - elapsed)} left; assumes the remaining "
        "units cost the same)"
    )
