"""Trained networks kept under the cache root, so that hours of training survive.

Every network a notebook trains goes through :func:`train_or_load`. Its folder,
``<cache root>/models/<paper>/<name>-<digest>/``, is keyed by everything that made it:
the parameters that shape its training, the data fingerprint and the training
indices, and the code version of its builder (a hash of the builder's source). It
holds the weights (``model.weights.h5``), the outputs the notebook needs later
(validation and test probabilities, ``outputs.npz``), the training history, and
``key.json``, written last: a folder without it is unfinished and is trained again.

- Same key: the network is rebuilt, its weights loaded and its outputs read back;
  one line says so. Nothing is retrained.
- A killed session: training resumes from the last finished epoch (Keras
  ``BackupAndRestore`` under ``backup/`` in the same folder, deleted on completion).
- Another key (any parameter, the data or the builder's code changed): a new folder.

Build, load and fit run inside :func:`common.distribute.data_parallel`: on a machine with
several GPUs every network trains on all of them, the batch it is given being the global
batch. The device count is not part of the key (the weights are the same model's).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import cache_root


def code_version(*objects: Any) -> str:
    """A short hash of the source code of ``objects`` (functions, classes or modules)."""
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()[:12]


def json_digest(value: Any, *, length: int = 16) -> str:
    """A short, stable hash of JSON-able ``value`` (mapping key order does not matter)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[
        :length
    ]


def indices_digest(*arrays: Any) -> str:
    """A short hash of index or label arrays (which samples trained the network)."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return digest.hexdigest()[:12]


def _canonical(key: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(key, sort_keys=True, default=str))


@dataclass
class StoredModel:
    """One trained network's folder under the cache root."""

    paper: str
    name: str
    key: dict
    dir: Path

    @property
    def weights(self) -> Path:
        return self.dir / "model.weights.h5"

    @property
    def outputs(self) -> Path:
        return self.dir / "outputs.npz"

    @property
    def backup(self) -> Path:
        return self.dir / "backup"

    def complete(self) -> bool:
        """True when the folder holds a finished network made with this exact key."""
        try:
            stored = json.loads((self.dir / "key.json").read_text())
        except (OSError, ValueError):
            return False
        return stored == self.key and self.weights.is_file() and self.outputs.is_file()

    def read(self) -> tuple[dict[str, np.ndarray], dict]:
        with np.load(self.outputs) as npz:
            outputs = {k: npz[k] for k in npz.files}
        history = (
            json.loads((self.dir / "history.json").read_text())
            if (self.dir / "history.json").is_file()
            else {}
        )
        return outputs, history

    def save(
        self, model: Any, outputs: Mapping[str, np.ndarray], history: Mapping[str, Any]
    ) -> None:
        """Write weights, outputs and history, then ``key.json`` last (the commit mark)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "key.json").unlink(missing_ok=True)
        tmp = self.dir / ".tmp-model.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, self.weights)
        with open(self.dir / ".tmp-outputs.npz", "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in outputs.items()})
        os.replace(self.dir / ".tmp-outputs.npz", self.outputs)
        plain = {
            k: np.asarray(v, dtype=float).tolist() for k, v in history.items()
        }  # per-epoch numbers
        (self.dir / "history.json").write_text(json.dumps(plain, indent=1))
        shutil.rmtree(self.backup, ignore_errors=True)
        tmp_key = self.dir / ".tmp-key.json"
        tmp_key.write_text(json.dumps(self.key, indent=1, sort_keys=True))
        os.replace(tmp_key, self.dir / "key.json")


def entry(
    paper: str, name: str, key: Mapping[str, Any], *, root: Path | None = None
) -> StoredModel:
    """The folder of network ``name`` of ``paper`` trained under ``key`` (JSON-able values)."""
    key = _canonical({"paper": paper, "network": name, **key})
    digest = json_digest(key)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return StoredModel(
        paper, name, key, Path(root or cache_root() / "models") / paper / f"{safe}-{digest}"
    )


def train_or_load(
    stored: StoredModel,
    build: Callable[[], Any],
    fit: Callable[[Any, list], Mapping[str, Any]],
    outputs: Callable[[Any], Mapping[str, np.ndarray]],
    *,
    log: Callable[[str], None] = print,
) -> tuple[Any, dict[str, np.ndarray], dict, bool]:
    """The trained network of ``stored``: reused when complete, else trained and saved.

    ``build()`` returns a fresh compiled model; ``fit(model, callbacks)`` trains it with
    the given callbacks (a resumable backup among them) and returns its history;
    ``outputs(model)`` returns the arrays kept with it (e.g. ``{"val": ..., "test": ...}``).
    Returns ``(model, outputs, history, reused)``.
    """
    from common.distribute import data_parallel

    with data_parallel() as devices:
        return _train_or_load(stored, build, fit, outputs, log=log, devices=devices)


def _train_or_load(stored, build, fit, outputs, *, log, devices):
    import keras

    model = build()
    if stored.complete():
        with (
            warnings.catch_warnings()
        ):  # the file also holds the optimizer's state, which evaluation does not need
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(stored.weights)
        kept, history = stored.read()
        log(
            f"{stored.name}: reusing the trained network in {stored.dir} (same parameters, "
            "data and code)"
        )
        return model, kept, history, True
    resumed = stored.backup.is_dir() and any(stored.backup.iterdir())
    if resumed:
        log(f"{stored.name}: resuming an interrupted training from its backup in {stored.backup}")
    if devices["devices"] > 1:
        log(
            f"{stored.name}: training on {devices['devices']} devices ({devices['strategy']}); "
            "the batch is the global batch"
        )
    stored.dir.mkdir(parents=True, exist_ok=True)
    backup = keras.callbacks.BackupAndRestore(str(stored.backup), delete_checkpoint=True)
    history = dict(fit(model, [backup]) or {})
    kept = {k: np.asarray(v) for k, v in outputs(model).items()}
    stored.save(model, kept, history)
    return model, kept, history, False
