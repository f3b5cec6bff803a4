import tracemalloc

import numpy as np
import pytest

from common.data import DataError, load, synth
from common.data.stream import ImageBatches

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def aria(tmp_path_factory):
    root = synth.synth_aria_all(
        tmp_path_factory.mktemp("s") / "aria", n_per_class=10, patients_per_class=2, size=40
    )
    return load("aria_all", root=root)


def test_batches_shapes_labels_and_hooks(aria):
    calls = {"segment": 0, "augment": 0}

    def segment(img):
        calls["segment"] += 1
        assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
        return img

    def augment(batch):
        calls["augment"] += 1
        return batch[:, ::-1]

    batches = ImageBatches(
        aria.paths,
        aria.y,
        batch_size=16,
        image_size=(32, 32),
        segment=segment,
        augment=augment,
        preprocess=lambda b: b / 255.0,
    )
    assert len(batches) == 3  # 40 images
    x, y = batches[2]
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(y, aria.y[32:])
    assert calls == {"segment": 8, "augment": 1}
    with pytest.raises(IndexError):
        batches[3]


def test_shuffle_is_seeded_and_changes_per_epoch(aria):
    a = ImageBatches(aria.paths, aria.y, batch_size=40, image_size=(8, 8), shuffle=True, seed=5)
    b = ImageBatches(aria.paths, aria.y, batch_size=40, image_size=(8, 8), shuffle=True, seed=5)
    np.testing.assert_array_equal(a[0][1], b[0][1])
    first = a[0][1].copy()
    a.on_epoch_end()
    assert not np.array_equal(first, a[0][1])
    assert sorted(a[0][1]) == sorted(first)


def test_memory_is_bounded_by_the_batch(aria):
    """Peak memory of a full pass does not grow with the number of images."""

    def peak(n_images):
        paths = np.resize(aria.paths, n_images)
        batches = ImageBatches(paths, batch_size=8, image_size=(64, 64))
        tracemalloc.start()
        for i in range(len(batches)):
            batches[i]
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(16), peak(160)
    batch_bytes = 8 * 64 * 64 * 3 * 4
    # ten times the images: the peak stays within a few batches, not ten times larger
    assert large < small + 4 * batch_bytes, (small, large)


def test_unreadable_image_is_skipped_named_and_counted(aria, tmp_path, capsys, monkeypatch):
    from common.data import stream
    from common.runs import unreadable_images

    monkeypatch.setattr(stream, "UNREADABLE", set())
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    # unlabelled (prediction): a black image keeps the rows aligned with the paths
    images = ImageBatches([aria.paths[0], str(bad)], batch_size=2, image_size=(8, 8))[0]
    assert images.shape == (2, 8, 8, 3) and images[1].max() == 0 and images[0].max() > 0
    # labelled (training): the unreadable image and its label are dropped from the batch
    x, y = ImageBatches([str(bad), aria.paths[0]], labels=[3, 1], batch_size=2, image_size=(8, 8))[
        0
    ]
    assert x.shape == (1, 8, 8, 3) and y.tolist() == [1]
    lines = [line for line in capsys.readouterr().out.splitlines() if "broken.jpg" in line]
    assert len(lines) == 1 and lines[0].startswith("skipped: cannot read image"), (
        "named once, in one line"
    )
    assert unreadable_images() == [str(bad)], "run.json lists it"
    with pytest.raises(DataError, match="2 labels for 1 images"):
        ImageBatches([str(bad)], labels=[0, 1])


def test_segment_after_augment_segments_the_augmented_pixels(aria):
    """Paper 04's order (augment, then segment): the segment hook sees the augmented image."""
    order = []

    def augment(batch):
        order.append("augment")
        return 255.0 - batch  # an inversion the segment hook can recognise

    def segment(img):
        order.append("segment")
        assert img.dtype == np.uint8
        return np.where(img > 128, img, 0).astype(np.uint8)

    plain = ImageBatches(aria.paths[:2], batch_size=2, image_size=(16, 16))[0]
    after = ImageBatches(
        aria.paths[:2],
        batch_size=2,
        image_size=(16, 16),
        segment=segment,
        augment=augment,
        segment_after_augment=True,
    )[0]
    assert order == ["augment", "segment", "segment"]
    inverted = 255.0 - plain
    np.testing.assert_array_equal(after, np.where(inverted > 128, inverted, 0))
    order.clear()
    ImageBatches(
        aria.paths[:2], batch_size=2, image_size=(16, 16), segment=segment, augment=augment
    )[0]
    assert order == ["segment", "segment", "augment"], "the default keeps segmenting first"
