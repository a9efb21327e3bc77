import numpy as np
import pytest

from ganjax.data import Dataset, check_labels


def _dataset(num_examples=10, num_classes=3, channels=1):
    images = np.arange(num_examples * 4 * 4 * channels, dtype=np.uint8).reshape(num_examples, 4, 4, channels)
    labels = (np.arange(num_examples) % num_classes).astype(np.int32)
    return Dataset(images, labels, tuple(f"class{c}" for c in range(num_classes)))


def test_properties():
    dataset = _dataset(num_examples=10, num_classes=3, channels=3)
    assert len(dataset) == 10
    assert dataset.num_classes == 3
    assert dataset.image_shape == (4, 4, 3)


def test_subset_takes_examples_in_given_order():
    dataset = _dataset()
    subset = dataset.subset(np.array([7, 2]))
    np.testing.assert_array_equal(subset.images, dataset.images[[7, 2]])
    np.testing.assert_array_equal(subset.labels, dataset.labels[[7, 2]])
    assert subset.class_names == dataset.class_names


def test_subset_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        _dataset().subset(np.array([0, 10]))


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int32), "uint8"),
        (np.zeros((2, 4, 4, 2), np.uint8), np.zeros(2, np.int32), "channels"),
        (np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.int32), "channels"),
        (np.zeros((2, 4, 4, 1), np.uint8), np.zeros(3, np.int32), "2 images but 3 labels"),
        (np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 2], np.int32), r"must be 0\.\.1 .*found 2 \(1 image\)"),
        (np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1], np.int64), "int32"),
    ],
)
def test_rejects_malformed_arrays(images, labels, match):
    with pytest.raises(ValueError, match=match):
        Dataset(images, labels, ("a", "b"))


def test_rejects_class_names_that_are_not_a_tuple_of_str():
    with pytest.raises(ValueError, match="tuple of str"):
        Dataset(np.zeros((1, 2, 2, 1), np.uint8), np.zeros(1, np.int32), ["a"])


def test_check_labels_names_origin_and_range():
    with pytest.raises(ValueError, match=r"my/file must be 0\.\.2 for the 3 class name\(s\); found -1 \(1 image\)\."):
        check_labels(np.array([-1, 0, 1]), 3, "my/file")


def test_check_labels_accepts_whole_floats_and_rejects_fractions():
    np.testing.assert_array_equal(check_labels(np.array([0.0, 2.0]), 3, "x"), [0, 2])
    assert check_labels(np.array([0.0, 2.0]), 3, "x").dtype == np.int32
    with pytest.raises(ValueError, match="whole numbers"):
        check_labels(np.array([0.5]), 3, "x")
