"""A linear SVM that reads its rows in chunks: LinearSVC's primal problem without its copies.

scikit-learn's ``LinearSVC`` copies a float32 matrix to float64 and liblinear then copies it
again into its own (index, value) pairs: 32 bytes per value in all (measured on 10k and 20k
rows x 7,424 columns), about 34 GB for paper 04's largest training matrix (~142k x 7,424).
:class:`ChunkedLinearSVC` solves the same optimisation problem, liblinear's primal L2-regularised
squared-hinge SVM (``LinearSVC(loss="squared_hinge", penalty="l2", dual=False)``, whose
intercept is an extra column of ones, regularised like the other weights), one-vs-rest,
on standardised columns (``StandardScaler`` folded in, so the pipeline's scaled copy is not made
either), by liblinear's own method for it: Newton steps from conjugate gradients, then a
backtracking line search, with every product by the matrix taken ``chunk_rows`` rows at a time
(float64 for gradients and scores; the input's dtype for the Hessian products). Memory: the input
(not copied; float32 stays float32) plus a few n x classes vectors and one chunk. Time: each pass
over the rows serves every class; one pass for the gradient and the line search, two per CG step.
(scipy's ``trust-krylov`` took fewer passes in a trial but allocates memory quadratic in the
number of weights, ~11 GB at 7,425 x 5; ``trust-ncg`` took four times the passes.)

The stopping rule is liblinear's (gradient norm below ``tol * max(min(#pos, #neg), 1) / n`` times
its norm at zero), checked on all classes together with the smallest of the per-class thresholds,
so never looser than liblinear's. tests/test_linear_svm.py checks that its decision values equal
``StandardScaler`` + ``LinearSVC(dual=False)`` on the same rows within a stated tolerance.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


class ChunkedLinearSVC(ClassifierMixin, BaseEstimator):
    """One-vs-rest linear SVM (squared hinge, L2, regularised intercept) on standardised columns.

    ``C``: the penalty, as ``LinearSVC``'s. ``tol``: liblinear's relative gradient tolerance.
    ``max_iter``: Newton iterations at most, ``max_cg``: conjugate-gradient steps per Newton step at
    most (caps without a warning: ``n_iter_`` and ``converged_`` say what happened). ``chunk_rows``:
    rows per matrix product (memory: chunk_rows x columns x 8
    bytes). With no more rows than columns it runs liblinear's dual instead (:meth:`_fit_small`,
    with
    ``max_dual_iter`` and ``random_state``), as ``LinearSVC(dual="auto")`` would. Fitted:
    ``solver_``, ``classes_``, ``coef_`` and ``intercept_`` in the input's own units (as the
    pipeline ``StandardScaler`` + ``LinearSVC`` would give them), ``mean_``, ``scale_``.
    """

    def __init__(
        self,
        C: float = 1.0,
        *,
        tol: float = 1e-4,
        max_iter: int = 1000,
        max_cg: int = 500,
        chunk_rows: int = 2048,
        max_dual_iter: int = 2000,
        random_state: int | None = None,
    ):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.max_cg = max_cg
        self.chunk_rows = chunk_rows
        self.max_dual_iter = max_dual_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ products by the
    # standardised matrix
    def _chunks(self, n: int):
        return range(0, n, max(1, int(self.chunk_rows)))

    def _rows(self, X: np.ndarray, start: int, exact: bool) -> np.ndarray:
        chunk = X[start : start + self.chunk_rows]
        return np.asarray(chunk, dtype=np.float64) if exact else chunk

    def _product(self, X: np.ndarray, coef: np.ndarray, exact: bool) -> np.ndarray:
        """X @ coef, ``chunk_rows`` rows at a time, into one float64 (n, k) array."""
        coef = coef if exact else coef.astype(X.dtype)
        out = np.empty((X.shape[0], coef.shape[1]))
        for start in self._chunks(X.shape[0]):
            out[start : start + self.chunk_rows] = self._rows(X, start, exact) @ coef
        return out

    def _scores(self, X: np.ndarray, weights: np.ndarray, exact: bool = True) -> np.ndarray:
        """[standardised X, 1] @ weights (linear in weights), weights (columns + 1, k): k score
        columns.
        ``exact``: float64 products; else in the input's dtype (the Hessian products: float32 needs
        no copy)."""
        d = X.shape[1]
        coef = weights[:d] / self.scale_[:, None]
        return self._product(X, coef, exact) + (weights[d] - self.mean_ @ coef)

    def _transposed(self, X: np.ndarray, values: np.ndarray, exact: bool = True) -> np.ndarray:
        """[standardised X, 1].T @ values, values (n, k)."""
        acc = np.zeros((X.shape[1], values.shape[1]))
        for start in self._chunks(X.shape[0]):
            part = values[start : start + self.chunk_rows]
            acc += self._rows(X, start, exact).T @ (part if exact else part.astype(X.dtype))
        total = values.sum(axis=0)
        return np.vstack([(acc - np.outer(self.mean_, total)) / self.scale_[:, None], total])

    def _moments(self, X: np.ndarray) -> None:
        """Column means and standard deviations: StandardScaler's, fitted chunk by chunk (float64
        sums)."""
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
        for start in self._chunks(X.shape[0]):
            scaler.partial_fit(X[start : start + self.chunk_rows])
        self.mean_, self.scale_ = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), order="C", copy=False)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"ChunkedLinearSVC needs at least 2 classes, got {list(self.classes_)}"
            )
        positive = (
            [1] if len(self.classes_) == 2 else range(len(self.classes_))
        )  # binary: one classifier, as sklearn
        targets = np.where(codes[:, None] == np.asarray(positive)[None, :], 1.0, -1.0)
        if X.shape[0] <= X.shape[1]:
            return self._fit_small(X, y)
        self.solver_ = "chunked primal Newton"
        self._moments(X)
        weights, self.n_iter_, self.converged_ = self._newton(X, targets)
        if not self.converged_:
            import warnings

            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(
                f"ChunkedLinearSVC stopped after max_iter={self.max_iter} Newton steps "
                "before liblinear's stopping rule held; increase max_iter",
                ConvergenceWarning,
                stacklevel=2,
            )
        d = X.shape[1]
        coef = weights[:d] / self.scale_[:, None]
        self.coef_ = np.ascontiguousarray(coef.T)
        self.intercept_ = weights[d] - self.mean_ @ coef
        return self

    def _fit_small(self, X: np.ndarray, y: np.ndarray):
        """No more rows than columns (smoke and demo sizes, the rehearsals' small scales): the
        primal converges slowly
        there (liblinear's own primal solver ran 1,000 iterations without converging on 3,000 x
        7,424 rows, where
        its dual took 75), and the copies are small (at most columns^2 x 32 bytes), so this is what
        ``LinearSVC(dual="auto")`` does: liblinear's dual coordinate descent, on the same
        problem."""
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        scaler = StandardScaler().fit(X)
        svm = LinearSVC(
            C=self.C,
            tol=self.tol,
            dual=True,
            max_iter=self.max_dual_iter,
            random_state=self.random_state,
        ).fit(scaler.transform(X), y)
        self.solver_ = "liblinear dual (rows <= columns)"
        self.mean_, self.scale_ = scaler.mean_, scaler.scale_
        coef = svm.coef_ / self.scale_
        self.coef_, self.intercept_ = coef, svm.intercept_ - coef @ self.mean_
        self.n_iter_ = int(svm.n_iter_)
        self.converged_ = (
            self.n_iter_ < self.max_dual_iter
        )  # liblinear warns itself when it stops at the cap
        return self

    def _newton(self, X: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """Newton's method with conjugate gradients and a backtracking line search, liblinear's
        method for this
        problem (Galli and Lin, 2021), run for the k one-vs-rest problems in lockstep: each pass
        over the rows
        serves every class; each class has its own CG steps, step size and stopping test."""
        n, d, k, C = X.shape[0], X.shape[1], targets.shape[1], float(self.C)
        weights, scores = np.zeros((d + 1, k)), np.zeros((n, k))
        smaller = np.minimum((targets > 0).sum(axis=0), (targets < 0).sum(axis=0))
        threshold = None
        for iteration in range(int(self.max_iter) + 1):
            slack = np.maximum(1.0 - targets * scores, 0.0)
            loss = 0.5 * (weights**2).sum(axis=0) + C * (slack**2).sum(axis=0)
            gradient = weights - 2.0 * C * self._transposed(X, targets * slack)
            norms = np.linalg.norm(gradient, axis=0)
            if threshold is None:
                threshold = (
                    self.tol * np.maximum(smaller, 1) / n * norms
                )  # liblinear's stopping rule, per class
            todo = norms > threshold
            if not todo.any() or iteration == self.max_iter:
                return weights, iteration, not todo.any()
            active = (slack > 0) & todo  # finished classes keep their weights: a zero step
            step = self._conjugate_gradient(X, -gradient * todo, active, C)
            moved = self._scores(X, step)
            slope = (gradient * step).sum(axis=0)
            size = np.ones(k)
            for _ in range(
                30
            ):  # Armijo backtracking per class, on scores + size * moved (no pass over the rows)
                trial = np.maximum(1.0 - targets * (scores + size * moved), 0.0)
                value = 0.5 * ((weights + size * step) ** 2).sum(axis=0) + C * (trial**2).sum(
                    axis=0
                )
                short = (value > loss + 0.01 * size * slope) & todo
                if not short.any():
                    break
                size[short] *= 0.5
            weights += size * step
            scores += size * moved
        return weights, int(self.max_iter), False

    def _conjugate_gradient(
        self, X: np.ndarray, rhs: np.ndarray, active: np.ndarray, C: float
    ) -> np.ndarray:
        """Solve (I + 2C X~^T D_c X~) s_c = rhs_c for every class c at once (D_c: its active rows),
        each to
        liblinear's relative residual 0.1."""
        step, residual = np.zeros_like(rhs), rhs.copy()
        direction = residual.copy()
        goal = 0.1 * np.linalg.norm(rhs, axis=0)
        rr = (residual**2).sum(axis=0)
        for _ in range(max(1, int(self.max_cg))):
            running = np.sqrt(rr) > goal
            if not running.any():
                break
            product = direction + 2.0 * C * self._transposed(
                X, active * self._scores(X, direction, exact=False), exact=False
            )
            curvature = (direction * product).sum(axis=0)
            alpha = np.where(running, rr / np.where(curvature > 0, curvature, 1.0), 0.0)
            step += alpha * direction
            residual -= alpha * product
            new_rr = (residual**2).sum(axis=0)
            direction = (
                residual + np.where(running, new_rr / np.where(rr > 0, rr, 1.0), 0.0) * direction
            )
            rr = new_rr
        return step

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(
            self, X, dtype=(np.float64, np.float32), order="C", copy=False, reset=False
        )
        out = self._product(X, self.coef_.T, exact=True) + self.intercept_
        return out[:, 0] if len(self.classes_) == 2 else out

    def predict(self, X):
        scores = self.decision_function(X)
        picks = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[picks]
