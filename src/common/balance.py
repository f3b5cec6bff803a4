"""Class balancing: SMOTE and random oversampling (imbalanced-learn) and paper 04's oversampler.

Image datasets are balanced on **indices** (a duplicated index = a duplicated file
path), never on pixels. Every function returns the *origin* of each output sample
(the index of the original sample it copies, or for SMOTE the nearest original of
the same class it was interpolated from), so that leak checks can trace synthetic
and duplicated samples back to the originals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("smote", "random", "replicate")


def _counts(y: np.ndarray) -> dict:
    values, counts = np.unique(y, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _check_y(y: Sequence) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if len(set(y.tolist())) < 2:
        raise ValueError("balancing needs at least two classes")
    return y


def random_oversample(y: Sequence, *, seed: int = 0) -> np.ndarray:
    """Indices (origins) after random oversampling every class up to the largest (imbalanced-learn).

    The first ``len(y)`` entries are the originals in order; duplicates follow.
    """
    from imblearn.over_sampling import RandomOverSampler

    y = _check_y(y)
    sampler = RandomOverSampler(random_state=seed)
    sampler.fit_resample(np.arange(y.size).reshape(-1, 1), y)
    return np.asarray(sampler.sample_indices_, dtype=np.int64)


def replicate_oversample(y: Sequence, *, seed: int = 0) -> np.ndarray:
    """Paper 04's oversampler: whole replications of each minority class, then a random remainder.

    A class of n images with the largest class at m gets floor(m / n) - 1 extra
    full copies of every image, then (m mod n) images drawn without replacement.
    Returns origins: the originals first (in order), then the copies.
    """
    y = _check_y(y)
    rng = np.random.default_rng(seed)
    counts = _counts(y)
    target = max(counts.values())
    extra = []
    for cls in sorted(counts, key=str):
        idx = np.flatnonzero(y == cls)
        copies, remainder = divmod(target, idx.size)
        extra += [idx] * (copies - 1)
        if remainder:
            extra.append(np.sort(rng.choice(idx, remainder, replace=False)))
    return np.concatenate([np.arange(y.size), *extra]).astype(np.int64)


def smote(
    X: np.ndarray, y: Sequence, *, k_neighbors: int = 5, seed: int = 0, fallback: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SMOTE (imbalanced-learn) up to the largest class.

    Returns ``(X_res, y_res, origin)``: the originals first (unchanged, in order),
    then the synthetic rows; ``origin`` is each row's own index for originals and,
    for synthetic rows, the index of the nearest original of the same class (the
    sample it was interpolated from or towards).

    A class with ``k_neighbors`` samples or fewer cannot be SMOTEd: that is an
    error naming the class, unless ``fallback="reduce_k"``, which uses
    ``k = smallest class size - 1`` and logs it. A class of one sample is always an error.
    """
    from imblearn.over_sampling import SMOTE
    from sklearn.neighbors import NearestNeighbors

    y = _check_y(y)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] != y.size:
        raise ValueError(f"X must have shape (n_samples={y.size}, n_features), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X holds NaN or infinite values; impute or drop them before SMOTE")
    if fallback not in (None, "reduce_k"):
        raise ValueError(f"fallback must be None or 'reduce_k', got {fallback!r}")
    counts = _counts(y)
    target = max(counts.values())
    minority = {c: n for c, n in counts.items() if n < target}
    too_small = {c: n for c, n in minority.items() if n <= k_neighbors}
    if too_small:
        cls, n = min(too_small.items(), key=lambda kv: kv[1])
        if fallback is None or n < 2:
            raise ValueError(
                f"class {cls!r} has {n} sample(s), too few for SMOTE with "
                f"k_neighbors={k_neighbors}; lower k_neighbors to {max(n - 1, 1)}, pass "
                "fallback='reduce_k', or merge/drop the class"
            )
        log.warning(
            "SMOTE: class %r has only %d samples; k_neighbors reduced from %d to %d",
            cls,
            n,
            k_neighbors,
            n - 1,
        )
        k_neighbors = n - 1
    X_res, y_res = SMOTE(k_neighbors=k_neighbors, random_state=seed).fit_resample(X, y)
    origin = np.arange(len(y_res), dtype=np.int64)
    for cls in minority:
        new = np.flatnonzero(y_res[len(y) :] == cls) + len(y)
        if new.size == 0:
            continue
        members = np.flatnonzero(y == cls)
        nn = NearestNeighbors(n_neighbors=1).fit(X[members])
        origin[new] = members[nn.kneighbors(X_res[new], return_distance=False)[:, 0]]
    return X_res, np.asarray(y_res), origin


def oversample(
    y: Sequence,
    method: str,
    *,
    seed: int = 0,
    X: np.ndarray | None = None,
    k_neighbors: int = 5,
    fallback: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One entry point: ``(origin, X_res)``; ``X_res`` only for SMOTE (None otherwise)."""
    if method == "smote":
        if X is None:
            raise ValueError(
                "SMOTE needs the feature matrix X; image datasets use 'random' or 'replicate'"
            )
        X_res, _, origin = smote(X, y, k_neighbors=k_neighbors, seed=seed, fallback=fallback)
        return origin, X_res
    if method == "random":
        return random_oversample(y, seed=seed), None
    if method == "replicate":
        return replicate_oversample(y, seed=seed), None
    raise ValueError(f"unknown balancing method {method!r}; choose one of {METHODS}")
