import numpy as np
import pytest
from PIL import Image

from common import evaluate as ev
from common import plots


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    return y, np.eye(3)[y] * 0.4 + rng.random((90, 3))


def saved(fig, tmp_path, name, source=None):
    path = plots.save_figure(fig, tmp_path, name, source=source)
    assert path == tmp_path / f"{name}.png" and path.is_file()
    with Image.open(path) as img:
        dpi = img.info.get("dpi", (0, 0))[0]
        assert dpi == pytest.approx(plots.DPI, abs=1)
        return np.asarray(img.convert("RGB"))


def test_every_plot_renders_and_saves_at_150_dpi(tmp_path, scores):
    y, s = scores
    names = ["B", "T", "AML"]
    cm = ev.confusion(y, s.argmax(1))
    figs = {
        "cm": plots.plot_confusion_matrix(cm, names),
        "cm_pct": plots.plot_confusion_matrix(cm, names, normalize=True),
        "roc": plots.plot_roc(ev.roc_curves(y, s, class_names=names)),
        "pr": plots.plot_pr(ev.pr_curves(y, s, class_names=names)),
        "hist": plots.plot_history(
            {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}
        ),
        "tsne": plots.plot_embedding(s[:, :2], np.array(names)[y]),
        "histogram": plots.plot_histogram(s[:, 0], title="reconstruction error"),
        "grid": plots.plot_image_grid([np.zeros((8, 8)), np.ones((8, 8, 3))], captions=["a", "b"]),
    }
    for name, fig in figs.items():
        saved(fig, tmp_path, name)


def test_roc_legend_has_auc_and_chance_line(scores):
    y, s = scores
    fig = plots.plot_roc(ev.roc_curves(y, s))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "chance" in labels and any(label.startswith("macro (AUC = ") for label in labels)


def test_histogram_annotates_min_mean_max():
    fig = plots.plot_histogram(np.array([1.0, 2.0, 6.0]))
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "min = 1" in text and "mean = 3" in text and "max = 6" in text


def test_synthetic_figures_say_so_on_their_face(tmp_path):
    fig = plots.plot_histogram(np.arange(10.0))
    plain = saved(fig, tmp_path, "plain")
    stamped = saved(fig, tmp_path, "stamped", source="synthetic")
    assert any(t.get_text() == plots.SYNTHETIC_STAMP for t in fig.texts)
    assert plain.shape != stamped.shape or np.any(plain != stamped)
    plots.save_figure(fig, tmp_path, "again", source="synthetic")
    assert sum(t.get_text() == plots.SYNTHETIC_STAMP for t in fig.texts) == 2, (
        "stamping is idempotent"
    )


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: plots.plot_confusion_matrix(np.eye(2), ["a", "b", "c"]), "does not match"),
        (lambda: plots.plot_embedding(np.zeros((5, 3)), np.zeros(5)), r"\(n, 2\)"),
        (lambda: plots.plot_embedding(np.zeros((5, 2)), np.zeros(4)), "4 labels for 5 points"),
        (lambda: plots.plot_histogram(np.array([1.0, np.nan])), "finite"),
        (lambda: plots.plot_history({"auc": [1]}), "none of"),
        (lambda: plots.plot_image_grid([]), "no images"),
        (
            lambda: plots.save_figure(plots.plot_histogram(np.ones(3)), "/tmp", "x", dpi=72),
            "at least 150",
        ),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_reconstruction_and_protocol_figures(tmp_path):
    import pandas as pd

    from common import plots

    rng = np.random.default_rng(0)
    fig = plots.plot_reconstruction(
        rng.normal(size=(2, 50)), rng.uniform(size=(2, 50)), ["a", "b"], n_features=30
    )
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="disagree"):
        plots.plot_reconstruction(rng.normal(size=(2, 50)), rng.uniform(size=(2, 40)), ["a", "b"])
    rows = pd.DataFrame(
        [
            {
                "protocol": p,
                "model": m,
                "class": "overall",
                "metric": "accuracy",
                "value": v,
                "ci_low": v - 0.05,
                "ci_high": v + 0.05,
            }
            for p, m, v in [
                ("published", "x", 0.9),
                ("leak_free", "x", 0.7),
                ("published", "y", 0.8),
            ]
        ]
    )
    fig = plots.plot_protocol_comparison(rows)
    heights = sorted(
        round(b.get_height(), 6) for b in fig.axes[0].patches if np.isfinite(b.get_height())
    )
    assert heights == [70.0, 80.0, 90.0], "y has no leak_free row: no bar for it"
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_protocol_comparison(rows, metric="f1")
