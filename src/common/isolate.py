"""Run one call in a fresh Python process, so that what it allocates goes back when it ends.

TensorFlow keeps the memory of every ``model.fit`` graph it traced until the process
exits: ``del model``, ``gc.collect()`` and ``keras.backend.clear_session()`` do not
return it (measured here on a ResNet-101 fine-tune at 32 px: about 0.9 GB kept per
fine-tune, after ``malloc_trim`` too; a known TensorFlow issue,
tensorflow/tensorflow#61791, keras-team/keras#17458). Notebook 04 fine-tunes six CNNs
in one kernel, so it trains each one in a child process through :func:`call_in_child`
and loads the stored result back (:mod:`common.modelstore`).

The child is a new interpreter (not a fork: TensorFlow's threads do not survive one).
It gets the same environment and ``sys.path``, its printed lines are relayed to this
process's output as they come (a notebook cell shows the epochs), and its return value
comes back pickled. A failing child raises :class:`ChildError` with its last lines.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ChildError(RuntimeError):
    """The child process ended with an error."""


def call_in_child(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` in a fresh Python process; its output relayed, its result returned.

    ``func`` must be importable by name (a module-level function) and the arguments
    picklable. An interrupt here stops the child too."""
    with tempfile.TemporaryDirectory(prefix="isolate-") as tmp:
        call, result = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
        call.write_bytes(pickle.dumps((func, args, kwargs)))
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }  # what this process imports from
        tail: deque[str] = deque(maxlen=20)
        with subprocess.Popen(
            [sys.executable, "-m", "common.isolate", str(call), str(result)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            try:
                for line in proc.stdout:
                    tail.append(line)
                    print(line, end="", flush=True)
                proc.wait()
            except BaseException:
                proc.kill()
                raise
        if proc.returncode != 0 or not result.is_file():
            raise ChildError(
                f"{getattr(func, '__qualname__', func)} failed in its child process (exit "
                f"{proc.returncode}); its last lines:\n" + "".join(tail)
            )
        return pickle.loads(result.read_bytes())


def _child_main(call: str, result: str) -> int:
    func, args, kwargs = pickle.loads(Path(call).read_bytes())
    value = func(*args, **kwargs)
    Path(result).write_bytes(pickle.dumps(value))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:3]))
