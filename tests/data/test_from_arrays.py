"""ganjax.data.from_arrays: in-memory arrays stored once, by content, as an "npz:PATH" source."""

import os

import numpy as np
import pytest

from ganjax import data


def _arrays(num=30, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num, 8, 8), dtype=np.uint8)
    labels = np.arange(num) % num_classes
    return images, labels


def test_the_source_loads_back_the_same_images_labels_and_class_names(tmp_path):
    images, labels = _arrays()
    source = data.from_arrays(images, labels, class_names=["cat", "dog", "owl"], directory=tmp_path)
    assert source.startswith("npz:") and os.path.dirname(source[4:]) == str(tmp_path)
    loaded = data.load_source(source, "train")
    np.testing.assert_array_equal(loaded.images, images[..., None])
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.class_names == ("cat", "dog", "owl")
    # Floats in [0, 1] are the same pixels: the same content, so the same file.
    assert data.from_arrays(images / 255.0, labels, class_names=["cat", "dog", "owl"], directory=tmp_path) == source


def test_the_same_arrays_give_the_same_file_once_and_other_arrays_another(tmp_path):
    images, labels = _arrays()
    first = data.from_arrays(images, labels, directory=tmp_path)
    written = os.stat(first[4:]).st_mtime_ns
    assert data.from_arrays(images.copy(), labels.copy(), directory=tmp_path) == first
    assert os.stat(first[4:]).st_mtime_ns == written and os.listdir(tmp_path) == [os.path.basename(first[4:])]
    assert data.from_arrays(images, labels, class_names=["a", "b", "c"], directory=tmp_path) != first
    assert data.from_arrays(images, np.roll(labels, 1), directory=tmp_path) != first
    assert data.load_source(first).class_names == ("0", "1", "2")  # default names: the label ids


def test_a_test_split_is_stored_and_without_one_training_carves_it(tmp_path):
    images, labels = _arrays()
    test_images, test_labels = _arrays(num=9, seed=1)
    with_test = data.from_arrays(images, labels, test_images=test_images, test_labels=test_labels, directory=tmp_path)
    np.testing.assert_array_equal(data.load_source(with_test, "test").images, test_images[..., None])
    without_test = data.from_arrays(images, labels, directory=tmp_path)
    with pytest.raises(data.MissingSplitError):
        data.load_source(without_test, "test")


@pytest.mark.parametrize("images, labels, kwargs, message", [
    (np.full((6, 8, 8), 2.0), [0, 1] * 3, {}, r"floats in \[0, 1\].*\(x \+ 1\) / 2"),
    (np.zeros((6, 8, 8, 2), np.uint8), [0, 1] * 3, {}, "1 or 3 channels"),
    (np.zeros((6, 8), np.uint8), [0, 1] * 3, {}, r"\[num_examples, height, width\]"),
    (np.zeros((6, 8, 8), bool), [0, 1] * 3, {}, "dtype bool"),
    (np.zeros((6, 8, 8), np.uint8), [0, 1, 2] * 2, {"class_names": ["a", "b"]}, r"must be 0\.\.1.*2 \(2 images\)"),
    (np.zeros((6, 8, 8), np.uint8), [0, 1] * 3, {"class_names": ["a", "b", "c"]}, r"Class 2 \(c\) .* has no image"),
    (np.zeros((6, 8, 8), np.uint8), [0, 1] * 2, {}, "4 labels for 6 images"),
    (np.zeros((6, 8, 8), np.uint8), [0.5, 1] * 3, {}, "not all whole numbers"),
    (np.zeros((6, 8, 8), np.uint8), [0, 1] * 3, {"class_names": "ab"}, "single string"),
    (np.zeros((6, 8, 8), np.uint8), [0, 1] * 3, {"class_names": [0, 1]}, "must be strings"),
    (np.zeros((6, 8, 8), np.uint8), [0, 1] * 3, {"test_images": np.zeros((2, 8, 8), np.uint8)}, "only one of"),
    (np.zeros((6, 8, 8), np.uint8), [0, 1] * 3,
     {"test_images": np.zeros((2, 9, 9), np.uint8), "test_labels": [0, 1]}, "one image shape"),
])
def test_bad_arrays_are_refused_naming_the_problem(tmp_path, images, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.from_arrays(images, labels, directory=tmp_path, **kwargs)
    assert os.listdir(tmp_path) == []  # nothing stored


def test_a_deleted_file_is_named_with_how_to_recreate_it(tmp_path):
    images, labels = _arrays()
    source = data.from_arrays(images, labels, directory=tmp_path / "arrays")
    os.remove(source[4:])
    with pytest.raises(FileNotFoundError, match="call from_arrays again with the same arrays"):
        data.load_source(source)
    assert data.from_arrays(images, labels, directory=tmp_path / "arrays") == source and os.path.isfile(source[4:])


def test_the_default_directory_is_under_the_ganjax_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GANJAX_CACHE", str(tmp_path))
    source = data.from_arrays(*_arrays())
    assert os.path.dirname(source[4:]) == str(tmp_path / "arrays")
