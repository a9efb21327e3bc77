"""In-memory arrays as a data source: `from_arrays` stores them once and returns an "npz:PATH" source.

    config.data.source = ganjax.data.from_arrays(images, labels, class_names=["cat", "dog"])

Why a file and not an in-memory source: `config.data.source` is saved with every checkpoint and compared
on resume, so it must be a plain string; and every reader of the data (training, a resume, evaluation,
the studies, the command-line tools) already reads "npz:PATH". The file is named by a hash of its
content, so the same arrays give the same source string in every session (a rerun resumes instead of
refusing a changed config) and writing them again costs nothing. Sampling never reads it: a checkpoint
holds the class names and image shape. Evaluation and resuming do, so keep the file (pass `directory`
on lasting storage, e.g. a mounted Google Drive in Colab) or call `from_arrays` again with the same
arrays to recreate it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np

from ganjax.data.dataset import check_classes, check_label_values, check_labels
from ganjax.data.sources import _class_names_for_labels, images_as_uint8

ARRAYS_DIR = "arrays"  # under the ganjax cache ($GANJAX_CACHE, default ~/.cache/ganjax)
_FORMAT_VERSION = 1  # part of the hash: a change of the stored layout makes new files


def default_arrays_dir() -> str:
    """$GANJAX_CACHE/arrays (GANJAX_CACHE defaults to ~/.cache/ganjax)."""
    root = os.environ.get("GANJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ganjax"))
    return os.path.join(root, ARRAYS_DIR)


def from_arrays(
    images,
    labels,
    class_names: Sequence[str] | None = None,
    *,
    test_images=None,
    test_labels=None,
    allow_empty_classes: bool = False,
    directory: str | os.PathLike | None = None,
) -> str:
    """Stores labelled images as an .npz named by their content; returns its source string "npz:PATH".

    The string goes wherever a source string does (`config.data.source`, `ganjax.data.load_source`,
    `--config.data.source=` on the command line); see the module docstring for why it is a file.

    Args:
        images: [num_examples, height, width] or [num_examples, height, width, channels] with 1 or 3
            channels: uint8 (or other integers) in [0, 255], or floats in [0, 1]. Any array-like
            (NumPy, JAX).
        labels: [num_examples] integer class ids 0 .. K-1 (floats holding whole numbers are accepted).
        class_names: K names, one per class, label `c` naming `class_names[c]`; default "0" .. str(max label).
            Every class needs a training image unless `allow_empty_classes`.
        test_images, test_labels: an optional test split in the same form (both or neither); without one,
            training carves a stratified 10% of the images as test (`ganjax.data.load_train_and_test`).
        allow_empty_classes: accept classes without a training image (config.data.allow_empty_classes
            must then be True as well).
        directory: where the .npz goes; default `default_arrays_dir()`.

    Returns:
        "npz:/abs/path/<sha256 prefix>.npz", the same for the same arrays and class names.

    Raises:
        ValueError naming the offending argument: a bad shape, dtype or value range, a label outside
        0 .. K-1, a class without an image, a bare string as class_names, or unequal counts.
    """
    images = _checked_images(images, "from_arrays images")
    if class_names is not None:
        class_names = _checked_class_names(class_names)
    elif test_labels is not None:
        class_names = _class_names_for_labels(
            {"from_arrays labels": labels, "from_arrays test_labels": test_labels})
    else:
        class_names = _class_names_for_labels({"from_arrays labels": labels})
    labels = _checked_labels(labels, images, class_names, "from_arrays labels")
    check_classes(labels, class_names, "from_arrays labels", allow_empty_classes)
    arrays = {"x": images, "y": labels, "class_names": np.asarray(class_names, dtype=str)}
    if (test_images is None) != (test_labels is None):
        raise ValueError("from_arrays got only one of test_images and test_labels; pass both for a test split, "
                         "or neither to carve one from the training images.")
    if test_images is not None:
        test_images = _checked_images(test_images, "from_arrays test_images")
        if test_images.shape[1:] != images.shape[1:]:
            raise ValueError(f"from_arrays test_images are {test_images.shape[1:]} (height, width, channels) but "
                             f"images are {images.shape[1:]}; give both splits one image shape.")
        test_labels = _checked_labels(test_labels, test_images, class_names, "from_arrays test_labels")
        if not len(test_labels):
            raise ValueError("from_arrays test_images is empty; pass a test split with images, or neither "
                             "test_images nor test_labels.")
        arrays.update(x_test=test_images, y_test=test_labels)
    return "npz:" + _store(arrays, os.fspath(directory) if directory is not None else default_arrays_dir())


def _checked_images(images, origin: str) -> np.ndarray:
    """[N, H, W(, C)] uint8/int in [0, 255] or float in [0, 1] -> [N, H, W, C] uint8."""
    images = np.asarray(images)
    if images.dtype.kind == "f" and images.size:
        if not np.all(np.isfinite(images)):
            raise ValueError(f"{origin} contain NaN or inf values.")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"Float {origin} span [{low:g}, {high:g}]; from_arrays takes floats in [0, 1] (or uint8 in "
                "[0, 255]). Rescale them: x / 255 from [0, 255], (x + 1) / 2 from [-1, 1], x / 16 for "
                "scikit-learn's digits."
            )
        images = np.round(images * 255).astype(np.uint8)
    elif images.dtype.kind not in "iuf":
        raise ValueError(f"{origin} have dtype {images.dtype}; pass uint8 in [0, 255] or floats in [0, 1].")
    return images_as_uint8(images, origin)


def _checked_class_names(class_names) -> tuple[str, ...]:
    if isinstance(class_names, (str, bytes)):
        raise ValueError(f"class_names is the single string {class_names!r}; pass one name per class, e.g. "
                         "['cat', 'dog'].")
    class_names = tuple(class_names)
    if not class_names:
        raise ValueError("class_names is empty; pass one name per class, or None for '0' .. str(max label).")
    not_str = [name for name in class_names if not isinstance(name, str)]
    if not_str:
        raise ValueError(f"class_names must be strings, got {not_str[:3]!r}; e.g. [str(c) for c in range(10)].")
    return class_names


def _checked_labels(labels, images: np.ndarray, class_names: tuple[str, ...], origin: str) -> np.ndarray:
    labels = check_labels(check_label_values(labels, origin), len(class_names), origin)
    if len(labels) != len(images):
        raise ValueError(f"{origin} holds {len(labels)} labels for {len(images)} images; give one label per image.")
    return labels


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(f"ganjax arrays v{_FORMAT_VERSION}".encode())
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        header = json.dumps([key, array.dtype.str, list(array.shape)])
        digest.update(header.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _store(arrays: dict[str, np.ndarray], directory: str) -> str:
    """Writes `arrays` to DIRECTORY/<hash>.npz unless there already; returns the absolute path. The file appears
    whole or not at all (written beside, then renamed), so a concurrent or interrupted writer leaves no torn file."""
    directory = os.path.abspath(os.path.expanduser(directory))
    path = os.path.join(directory, _content_hash(arrays)[:32] + ".npz")
    if os.path.isfile(path):
        return path
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=directory, suffix=".npz.partial")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return path
