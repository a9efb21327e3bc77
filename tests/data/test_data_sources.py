import pathlib
import sys
import time

import numpy as np
import pytest
from data_writers import synthetic_images, write_idx_dataset, write_idx_file, write_image

from ganjax.data import (
    FASHION_MNIST_CLASS_NAMES,
    MissingSplitError,
    images_as_uint8,
    load_source,
    read_idx,
    resize_images,
    stratified_split_indices,
)

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


# IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips(tmp_path, dtype, compress):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5)
    array = (array % 256 if dtype == np.uint8 else array).astype(dtype)
    path = write_idx_file(tmp_path / "array-idx3", array, compress)
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded, array)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = write_idx_file(tmp_path / "images", np.zeros((4, 3, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_idx_source_round_trips_train_and_test(tmp_path):
    train_images, train_labels = synthetic_images(12), (np.arange(12) % 3).astype(np.uint8)
    test_images, test_labels = synthetic_images(5), np.array([0, 1, 2, 3, 0], np.uint8)
    write_idx_dataset(tmp_path, train_images, train_labels, "train")
    write_idx_dataset(tmp_path, test_images, test_labels, "test")

    # Label 3 is in test only, a deliberate gap in train.
    train = load_source(f"idx:{tmp_path}", "train", allow_empty_classes=True)
    test = load_source(f"idx:{tmp_path}", "test")

    np.testing.assert_array_equal(train.images, train_images[..., None])
    np.testing.assert_array_equal(train.labels, train_labels)
    np.testing.assert_array_equal(test.images, test_images[..., None])
    assert train.labels.dtype == np.int32
    # Class names cover the labels of both splits, so train and test agree.
    assert train.class_names == test.class_names == ("0", "1", "2", "3")


def test_idx_gzipped_equals_plain(tmp_path):
    images, labels = synthetic_images(8), (np.arange(8) % 2).astype(np.uint8)
    write_idx_dataset(tmp_path / "plain", images, labels, compress=False)
    write_idx_dataset(tmp_path / "gz", images, labels, compress=True)
    plain = load_source(f"idx:{tmp_path / 'plain'}")
    gz = load_source(f"idx:{tmp_path / 'gz'}")
    np.testing.assert_array_equal(plain.images, gz.images)
    np.testing.assert_array_equal(plain.labels, gz.labels)
    assert (tmp_path / "gz" / "train-images-idx3-ubyte.gz").exists()


def test_idx_fashion_directory_gets_fashion_class_names(tmp_path):
    directory = write_idx_dataset(
        tmp_path / "my-fashion-mnist", synthetic_images(10), np.arange(10, dtype=np.uint8)
    )
    dataset = load_source(f"idx:{directory}")
    assert dataset.class_names == FASHION_MNIST_CLASS_NAMES
    assert dataset.class_names[9] == "Ankle boot"


def test_idx_fashion_labels_out_of_range_raise(tmp_path):
    directory = write_idx_dataset(tmp_path / "fashion", synthetic_images(3), np.array([0, 5, 10], np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte must be 0\.\.9 .*found 10 \(1 image\)"):
        load_source(f"idx:{directory}")


def test_idx_negative_labels_raise(tmp_path):
    write_idx_dataset(tmp_path, synthetic_images(3), np.array([0, -1, 1], np.int8))
    with pytest.raises(ValueError, match=r"found -1 \(1 image\)"):
        load_source(f"idx:{tmp_path}")


def test_idx_label_count_mismatch_names_both_files(tmp_path):
    write_idx_dataset(tmp_path, synthetic_images(4), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*4 images.*3 labels"):
        load_source(f"idx:{tmp_path}")


def test_idx_resizes_to_image_size(tmp_path):
    write_idx_dataset(tmp_path, synthetic_images(5, 6, 6), np.zeros(5, np.uint8))
    dataset = load_source(f"idx:{tmp_path}", image_size=9)
    assert dataset.images.shape == (5, 9, 9, 1)
    assert dataset.images.dtype == np.uint8


def test_idx_missing_directory_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        load_source(f"idx:{tmp_path / 'nowhere'}")


def test_idx_missing_debian_dataset_says_how_to_install():
    with pytest.raises(
        FileNotFoundError, match="no-such-set does not exist.*apt-get install dataset-fashion-mnist"
    ):
        load_source("idx:/usr/share/datasets/no-such-set")


def test_idx_directory_without_files_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_source(f"idx:{tmp_path}")


def test_idx_without_test_files_raises_missing_split(tmp_path):
    write_idx_dataset(tmp_path, synthetic_images(3), np.zeros(3, np.uint8))
    with pytest.raises(MissingSplitError, match="t10k"):
        load_source(f"idx:{tmp_path}", "test")


# Folders


def _gray(value, size=(5, 7)):
    return np.full(size, value, np.uint8)


def _rgb(value, size=(5, 7)):
    return np.full(size + (3,), value, np.uint8)


def test_folder_grayscale_has_one_channel_and_sorted_class_names(tmp_path):
    for class_name, value in [("zebra", 10), ("ant", 20), ("mole", 30)]:
        write_image(tmp_path / class_name / "a.png", _gray(value))
        write_image(tmp_path / class_name / "b.png", _gray(value + 1))
    dataset = load_source(f"folder:{tmp_path}")
    assert dataset.class_names == ("ant", "mole", "zebra")
    assert dataset.images.shape == (6, 5, 7, 1)
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(dataset.images[:, 0, 0, 0], [20, 21, 30, 31, 10, 11])


def test_folder_rgb_has_three_channels(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0], image[..., 2] = 200, 50
    write_image(tmp_path / "red" / "x.png", image)
    write_image(tmp_path / "blue" / "y.jpg", _rgb(90, (4, 4)))
    dataset = load_source(f"folder:{tmp_path}")
    assert dataset.images.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(dataset.images[1], image)
    assert np.all(np.abs(dataset.images[0].astype(int) - 90) <= 2)  # JPEG is lossy.


def test_folder_mixed_gray_and_rgb_becomes_rgb(tmp_path):
    write_image(tmp_path / "a" / "gray.png", _gray(77))
    write_image(tmp_path / "b" / "color.png", _rgb(5))
    rgba = np.full((5, 7, 4), 200, np.uint8)
    rgba[..., 3] = 51  # 20% opaque: composited over black, 200 becomes 40
    write_image(tmp_path / "b" / "rgba.png", rgba)
    dataset = load_source(f"folder:{tmp_path}")
    assert dataset.images.shape == (3, 5, 7, 3)
    assert np.all(dataset.images[0] == 77)
    assert np.all(dataset.images[2] == 40)


def test_folder_resizes_and_ignores_other_files(tmp_path):
    write_image(tmp_path / "a" / "big.png", _gray(1, (20, 10)))
    write_image(tmp_path / "a" / "small.PNG", _gray(2, (3, 3)))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    dataset = load_source(f"folder:{tmp_path}", image_size=8)
    assert dataset.images.shape == (2, 8, 8, 1)
    assert dataset.class_names == ("a",)


def test_folder_mixed_sizes_error_names_files_and_sizes(tmp_path):
    write_image(tmp_path / "a" / "first.png", _gray(1, (4, 6)))
    write_image(tmp_path / "b" / "odd.png", _gray(1, (5, 5)))
    with pytest.raises(ValueError) as error:
        load_source(f"folder:{tmp_path}")
    message = str(error.value)
    assert "first.png is 6x4" in message
    assert "odd.png is 5x5" in message
    assert "config.data.image_size" in message


def test_folder_without_images_raises(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=f"No images.*{tmp_path}"):
        load_source(f"folder:{tmp_path}")


def test_folder_with_no_class_folders_raises(tmp_path):
    write_image(tmp_path / "loose.png", _gray(1))
    with pytest.raises(ValueError, match="sub-folder"):
        load_source(f"folder:{tmp_path}")


def test_folder_with_an_empty_class_folder_raises(tmp_path):
    write_image(tmp_path / "a" / "x.png", _gray(1))
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'b'} has no images"):
        load_source(f"folder:{tmp_path}")


def test_folder_unreadable_image_names_the_file(tmp_path):
    write_image(tmp_path / "a" / "x.png", _gray(1))
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_source(f"folder:{tmp_path}")


def test_folder_train_and_test_subfolders(tmp_path):
    for split, count in [("train", 3), ("test", 2)]:
        for class_name in ("cat", "dog"):
            for i in range(count):
                write_image(tmp_path / split / class_name / f"{i}.png", _gray(i))
    train = load_source(f"folder:{tmp_path}", "train")
    test = load_source(f"folder:{tmp_path}", "test")
    assert (len(train), len(test)) == (6, 4)
    assert train.class_names == test.class_names == ("cat", "dog")


def test_folder_without_test_split_raises_missing_split(tmp_path):
    write_image(tmp_path / "a" / "x.png", _gray(1))
    assert len(load_source(f"folder:{tmp_path}", "train")) == 1
    with pytest.raises(MissingSplitError, match="only has a 'train' split"):
        load_source(f"folder:{tmp_path}", "test")


def test_folder_with_train_but_no_test_raises(tmp_path):
    write_image(tmp_path / "train" / "a" / "x.png", _gray(1))
    with pytest.raises(ValueError, match="no test/"):
        load_source(f"folder:{tmp_path}")


def test_folder_missing_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing-folder"):
        load_source(f"folder:{tmp_path / 'missing-folder'}")


# npz


def test_npz_uint8_with_class_names_and_test_split(tmp_path):
    path = tmp_path / "data.npz"
    x, y = synthetic_images(6), np.array([0, 1, 2, 0, 1, 2])
    np.savez(path, x=x, y=y, x_test=x[:2], y_test=y[:2], class_names=np.array(["a", "b", "c"]))
    train = load_source(f"npz:{path}")
    test = load_source(f"npz:{path}", "test")
    np.testing.assert_array_equal(train.images, x[..., None])
    np.testing.assert_array_equal(train.labels, y)
    assert train.class_names == ("a", "b", "c")
    assert len(test) == 2


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_npz_float_images_in_unit_or_byte_range(tmp_path, scale):
    values = np.array([0, 51, 128, 255], np.uint8)
    x = np.broadcast_to(values[:, None, None, None], (4, 2, 2, 3)).astype(np.float32) / 255 * scale
    path = tmp_path / "float.npz"
    np.savez(path, x=x, y=np.zeros(4, np.int64))
    dataset = load_source(f"npz:{path}")
    assert dataset.images.shape == (4, 2, 2, 3)
    np.testing.assert_array_equal(dataset.images[:, 0, 0, 0], values)
    assert dataset.class_names == ("0",)


def test_npz_without_test_arrays_raises_missing_split(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=synthetic_images(2), y=np.zeros(2, np.int64))
    with pytest.raises(MissingSplitError, match="x_test"):
        load_source(f"npz:{path}", "test")


def test_npz_missing_labels_raises(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=synthetic_images(2))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['y'\]"):
        load_source(f"npz:{path}")


def test_npz_label_count_mismatch_raises(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=synthetic_images(3), y=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="3 images in x but 2 labels in y"):
        load_source(f"npz:{path}")


def test_npz_labels_beyond_class_names_raise(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=synthetic_images(3), y=np.array([0, 1, 2]), class_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"d.npz\[y\] must be 0\.\.1 for the 2 class name\(s\); found 2 \(1 image\)"):
        load_source(f"npz:{path}")


def test_npz_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_source(f"npz:{tmp_path / 'absent.npz'}")


def test_images_as_uint8_rejects_out_of_range_floats():
    with pytest.raises(ValueError, match=r"\[-1.0, 1.0\]"):
        images_as_uint8(np.array([-1.0, 1.0]).reshape(1, 1, 2), "somewhere")


# digits


def test_digits_shape_classes_and_deterministic_disjoint_split():
    from sklearn.datasets import load_digits

    train = load_source("digits", "train")
    test = load_source("digits", "test")
    assert train.images.shape[1:] == (16, 16, 1) and train.images.dtype == np.uint8
    assert train.num_classes == 10 and train.class_names[3] == "3"
    assert len(train) + len(test) == 1797
    assert len(test) == pytest.approx(0.2 * 1797, abs=10)
    assert set(np.unique(test.labels)) == set(range(10))
    np.testing.assert_array_equal(load_source("digits", "train").images, train.images)

    target = load_digits().target
    train_indices, test_indices = stratified_split_indices(target, 0.2, 0)
    assert not set(train_indices) & set(test_indices)
    np.testing.assert_array_equal(train.labels, target[train_indices])


def test_digits_native_size_scales_values_to_bytes():
    from sklearn.datasets import load_digits

    dataset = load_source("digits", image_size=8)
    assert dataset.images.shape[1:] == (8, 8, 1)
    assert dataset.images.max() == 255
    expected = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    assert any(np.array_equal(dataset.images[0, ..., 0], image) for image in expected)


# Source strings


@pytest.mark.parametrize("source", ["mnist", "csv:/tmp/x", "idx:", "digits:foo", ""])
def test_unknown_source_lists_valid_forms(source):
    with pytest.raises(ValueError, match="valid forms: idx:DIR, folder:DIR, npz:FILE, digits, tfds:NAME"):
        load_source(source)


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="'validation'.*'train' or 'test'"):
        load_source("digits", "validation")


@pytest.mark.parametrize("image_size", [-3, 2.5, "32"])
def test_bad_image_size_raises(image_size):
    with pytest.raises(ValueError, match="config.data.image_size"):
        load_source("digits", image_size=image_size)


def test_resize_images_shape_and_constant_images():
    images = np.stack([np.full((10, 6, 3), v, np.uint8) for v in (0, 100, 255)])
    resized = resize_images(images, 4)
    assert resized.shape == (3, 4, 4, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized[:, 0, 0, 0], [0, 100, 255])
    assert resize_images(resized, 4) is resized


# tfds


def test_tfds_mock_mnist():
    tfds = pytest.importorskip("tensorflow_datasets")
    # Mock data draws random labels, so some classes may have no image.
    with tfds.testing.mock_data(num_examples=12):
        train = load_source("tfds:mnist", "train", allow_empty_classes=True)
        test = load_source("tfds:mnist", "test", image_size=16)
    assert train.images.shape == (12, 28, 28, 1) and train.images.dtype == np.uint8
    assert test.images.shape == (12, 16, 16, 1)
    assert train.class_names == tuple(str(d) for d in range(10))
    assert train.labels.dtype == np.int32
    assert 0 <= train.labels.min() and train.labels.max() < 10


def test_tfds_mock_class_names_from_label_feature():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        dataset = load_source("tfds:fashion_mnist", allow_empty_classes=True)
    assert dataset.class_names == FASHION_MNIST_CLASS_NAMES


def test_tfds_mock_mixed_sizes_need_image_size():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        with pytest.raises(ValueError, match="tfds:tf_flowers split 'train' example 0 is .*image_size"):
            load_source("tfds:tf_flowers", allow_empty_classes=True)
        dataset = load_source("tfds:tf_flowers", image_size=8, allow_empty_classes=True)
    assert dataset.images.shape == (5, 8, 8, 3)
    assert dataset.num_classes == 5


def test_tfds_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'ganjax\[tfds\]'"):
        load_source("tfds:mnist")


# Real data


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    start = time.perf_counter()
    train = load_source(f"idx:{FASHION_MNIST_DIR}", "train")
    test = load_source(f"idx:{FASHION_MNIST_DIR}", "test")
    assert time.perf_counter() - start < 10
    assert train.images.shape == (60000, 28, 28, 1)
    assert test.images.shape == (10000, 28, 28, 1)
    assert train.class_names == FASHION_MNIST_CLASS_NAMES
    np.testing.assert_array_equal(np.bincount(train.labels), np.full(10, 6000))
    assert 0 < train.images.mean() < 255
