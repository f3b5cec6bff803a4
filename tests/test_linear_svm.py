"""ChunkedLinearSVC: LinearSVC's primal problem (squared hinge, L2, standardised columns) without
copying its rows."""

import tracemalloc

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from common.linear_svm import ChunkedLinearSVC


def _problem(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (
        rng.normal(size=(k, d))[y] * 0.8
        + rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d)
        + rng.uniform(-5, 5, d)
    )
    return X.astype(np.float32), y


@pytest.mark.parametrize("k", [2, 4])
def test_it_solves_the_problem_that_scaler_plus_linearsvc_solves(k):
    """Both at a tight tolerance reach the same optimum of the same strictly convex problem:
    decision values agree
    to 1e-3 of their range (float32 products; the default tolerances stop at different points of a
    flat optimum)."""
    X, y = _problem(3000, 12, k)
    reference = make_pipeline(
        StandardScaler(), LinearSVC(C=1.0, dual=False, tol=1e-10, max_iter=10000)
    ).fit(X, y)
    ours = ChunkedLinearSVC(C=1.0, tol=1e-8, chunk_rows=256).fit(X, y)
    assert ours.solver_ == "chunked primal Newton"
    expected, got = reference.decision_function(X), ours.decision_function(X)
    assert got.shape == expected.shape == ((3000,) if k == 2 else (3000, k))
    assert ours.converged_
    np.testing.assert_allclose(got, expected, atol=1e-3 * np.ptp(expected))
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))


def test_coefficients_are_in_the_inputs_units():
    X, y = _problem(500, 6, 3)
    svm = ChunkedLinearSVC().fit(X, y)
    np.testing.assert_allclose(
        svm.decision_function(X),
        X.astype(np.float64) @ svm.coef_.T + svm.intercept_,
        rtol=1e-5,
        atol=1e-4,
    )
    assert list(svm.classes_) == [0, 1, 2] and svm.predict(X[:3]).dtype == y.dtype


@pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)  # 5 Newton steps: memory only
def test_fit_does_not_copy_its_rows():
    """LinearSVC copies float32 rows to float64 (2x the input) before liblinear copies them again;
    the chunked
    solver's own allocations stay under half the input (chunk temporaries and n x classes vectors
    only)."""
    X, y = _problem(20000, 200, 4)
    tracemalloc.start()
    try:
        ChunkedLinearSVC(chunk_rows=500, max_iter=5).fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * X.nbytes, (
        f"fit allocated {peak / 1e6:.1f} MB for a {X.nbytes / 1e6:.1f} MB input"
    )


def test_constant_columns_and_a_single_class_are_handled():
    X, y = _problem(300, 5, 2)
    X[:, 2] = 7.0
    svm = ChunkedLinearSVC().fit(X, y)
    assert np.isfinite(svm.coef_).all() and svm.scale_[2] == 1.0
    with pytest.raises(ValueError, match="at least 2 classes"):
        ChunkedLinearSVC().fit(X, np.zeros(len(X), int))


def test_with_no_more_rows_than_columns_it_is_linearsvc_dual_auto():
    """Rows <= columns (the small profiles): liblinear's dual, as LinearSVC(dual="auto") chooses,
    with equal scores."""
    X, y = _problem(40, 60, 3)
    ours = ChunkedLinearSVC(random_state=0).fit(X, y)
    reference = make_pipeline(
        StandardScaler(), LinearSVC(dual="auto", random_state=0, max_iter=2000)
    ).fit(X, y)
    assert ours.solver_.startswith("liblinear dual")
    np.testing.assert_allclose(
        ours.decision_function(X), reference.decision_function(X), rtol=1e-4, atol=1e-4
    )
