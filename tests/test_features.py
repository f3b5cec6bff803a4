from dataclasses import replace

import numpy as np
import pytest

from common.backbones import build_backbone
from common.data import load, synth
from common.features import cache_key, extract_features

pytestmark = pytest.mark.backend


class CountingModel:
    """Wraps a Keras model: counts batches and can fail after a number of them."""

    def __init__(self, model, fail_after=None):
        self.model, self.calls, self.fail_after = model, 0, fail_after
        self.output = model.output

    def predict_on_batch(self, x):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        return self.model.predict_on_batch(x)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = synth.synth_aria_all(
        tmp_path_factory.mktemp("f") / "aria", n_per_class=10, patients_per_class=2, size=40
    )
    ds = load("aria_all", root=root)
    return ds, build_backbone("mobilenetv2", input_size=32)


def test_cache_miss_then_hit(setup, tmp_path):
    ds, bb = setup
    counted = replace(bb, model=CountingModel(bb.model))
    first = extract_features(
        counted, ds.paths, ds.fingerprint, batch_size=8, directory=tmp_path, progress=False
    )
    assert first.shape == (40, 1280) and first.dtype == np.float32 and counted.model.calls == 5
    second = extract_features(
        counted, ds.paths, ds.fingerprint, batch_size=8, directory=tmp_path, progress=False
    )
    assert counted.model.calls == 5, "the second call reads the cache"
    np.testing.assert_array_equal(first, second)
    # rows follow the paths: a reordered list is a different key, and its rows are reordered
    flipped = extract_features(
        counted, ds.paths[::-1], ds.fingerprint, batch_size=8, directory=tmp_path, progress=False
    )
    np.testing.assert_allclose(flipped, first[::-1], atol=1e-5)


def test_changed_settings_never_reuse_stale_features(setup, tmp_path):
    ds, bb = setup
    base, key = cache_key(bb, ds.paths, ds.fingerprint, preprocessing={})
    assert cache_key(bb, ds.paths, "other-fingerprint", preprocessing={})[0] != base
    assert cache_key(bb, ds.paths, ds.fingerprint, preprocessing={"segment": "hsv"})[0] != base
    assert (
        cache_key(
            replace(bb, layer="block_16_project"), ds.paths, ds.fingerprint, preprocessing={}
        )[0]
        != base
    )
    assert (
        cache_key(replace(bb, weights_id="imagenet"), ds.paths, ds.fingerprint, preprocessing={})[0]
        != base
    )
    counted = replace(bb, model=CountingModel(bb.model))
    extract_features(
        counted, ds.paths, ds.fingerprint, batch_size=8, directory=tmp_path, progress=False
    )
    segmented = extract_features(
        counted,
        ds.paths,
        ds.fingerprint,
        batch_size=8,
        directory=tmp_path,
        progress=False,
        segment=lambda img: img // 2,
        preprocessing={"segment": "halve"},
    )
    assert counted.model.calls == 10
    # a cache whose stored key disagrees (edited by hand) is not trusted
    (tmp_path / f"{base}.json").write_text('{"n": 40}')
    extract_features(
        counted, ds.paths, ds.fingerprint, batch_size=8, directory=tmp_path, progress=False
    )
    assert counted.model.calls == 15
    assert segmented.shape == (40, 1280)
    with pytest.raises(ValueError, match="describe the segment hook"):
        extract_features(bb, ds.paths, ds.fingerprint, segment=lambda img: img, directory=tmp_path)


def test_interrupted_extraction_resumes(setup, tmp_path):
    ds, bb = setup
    full = extract_features(
        bb, ds.paths, ds.fingerprint, batch_size=4, directory=tmp_path / "ref", progress=False
    )
    broken = replace(bb, model=CountingModel(bb.model, fail_after=7))
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            broken,
            ds.paths,
            ds.fingerprint,
            batch_size=4,
            chunk_batches=2,
            directory=tmp_path,
            progress=False,
        )
    assert not list(tmp_path.glob("*.npy")), "no final file after an interruption"
    assert (
        len(list(tmp_path.glob("*.partial/rows_*.npy"))) == 3
    )  # 6 of 7 batches were saved in chunks of 2
    resumed = replace(bb, model=CountingModel(bb.model))
    out = extract_features(
        resumed,
        ds.paths,
        ds.fingerprint,
        batch_size=4,
        chunk_batches=2,
        directory=tmp_path,
        progress=False,
    )
    assert resumed.model.calls == 4, "only the 4 unsaved batches of 10 are recomputed"
    np.testing.assert_allclose(out, full, atol=1e-5)
    assert not list(tmp_path.glob("*.partial")), "the partial folder is removed when complete"


def test_augmented_features_are_their_own_cache_entry(setup, tmp_path):
    """Paper 04 extracts features of augmented copies: the augment hook changes the pixels,
    must be described, and its features are cached apart from the plain ones."""
    ds, bb = setup

    def flip(batch):  # a deterministic stand-in for a seeded augmenter
        return batch[:, :, ::-1, :]

    with pytest.raises(ValueError, match="augment hook"):
        extract_features(
            bb, ds.paths, ds.fingerprint, augment=flip, directory=tmp_path, progress=False
        )
    counted = replace(bb, model=CountingModel(bb.model))
    plain = extract_features(
        counted, ds.paths, ds.fingerprint, batch_size=8, directory=tmp_path, progress=False
    )
    flipped = extract_features(
        counted,
        ds.paths,
        ds.fingerprint,
        batch_size=8,
        directory=tmp_path,
        progress=False,
        augment=flip,
        preprocessing={"augment": "horizontal flip"},
    )
    again = extract_features(
        counted,
        ds.paths,
        ds.fingerprint,
        batch_size=8,
        directory=tmp_path,
        progress=False,
        augment=flip,
        preprocessing={"augment": "horizontal flip"},
    )
    assert counted.model.calls == 10, (
        "plain and augmented are extracted once each, then read from the cache"
    )
    assert np.abs(plain - flipped).max() > 1e-3 * np.abs(plain).max(), (
        "the augment hook reached the pixels"
    )
    np.testing.assert_array_equal(flipped, again)


def test_memory_mapped_features_come_from_the_cache_file(setup, tmp_path):
    """mmap=True (paper 04's bank): the cached float32 .npy, memory-mapped read-only; a fresh
    extraction assembles the
    final file from its on-disk chunks, an interrupted one resumes from them; the values equal the
    in-memory ones."""
    from common.features import cache_name, load_cached

    ds, bb = setup
    counted = replace(bb, model=CountingModel(bb.model))
    kw = dict(batch_size=4, chunk_batches=2, directory=tmp_path, progress=False)
    broken = replace(bb, model=CountingModel(bb.model, fail_after=5))
    with pytest.raises(KeyboardInterrupt):
        extract_features(broken, ds.paths, ds.fingerprint, mmap=True, **kw)
    fresh = extract_features(counted, ds.paths, ds.fingerprint, mmap=True, **kw)
    assert counted.model.calls == 6, "4 of 10 batches came from the saved chunks"
    assert isinstance(fresh, np.memmap) and fresh.dtype == np.float32 and fresh.shape == (40, 1280)
    assert not fresh.flags.writeable, "read-only: the cache cannot be changed through it"
    in_memory = extract_features(counted, ds.paths, ds.fingerprint, **kw)
    assert counted.model.calls == 6 and not isinstance(in_memory, np.memmap)
    np.testing.assert_array_equal(fresh, in_memory)
    reference = extract_features(
        bb, ds.paths, ds.fingerprint, batch_size=4, use_cache=False, progress=False
    )
    np.testing.assert_allclose(fresh, reference, atol=1e-5)
    name, key = cache_name(bb, ds.paths, ds.fingerprint)
    assert isinstance(load_cached(name, key, tmp_path, mmap=True), np.memmap)
    with pytest.raises(ValueError, match="use_cache"):
        extract_features(
            bb, ds.paths, ds.fingerprint, use_cache=False, mmap=True, directory=tmp_path
        )
