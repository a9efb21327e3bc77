"""Loading labelled image datasets from the supported sources into a `Dataset`.

A source is a string (usually `config.data.source`):

  idx:DIR      MNIST-format IDX files: DIR/train-images-idx3-ubyte[.gz],
               DIR/train-labels-idx1-ubyte[.gz], and t10k-* for split "test".
  folder:DIR   one sub-folder of PNG/JPEG images per class (sorted names are the
               class names); DIR/train and DIR/test if both exist, otherwise the
               whole folder is the "train" split.
  npz:FILE     a NumPy .npz with arrays `x`, `y`, optionally `class_names`, and
               `x_test`, `y_test` for split "test". `ganjax.data.from_arrays(images,
               labels)` writes one from in-memory arrays and returns its source string.
  digits       scikit-learn's bundled 8x8 digits, resized to 16x16 by default.
  tfds:NAME    a TensorFlow Datasets data source (`pip install 'ganjax[tfds]'`).
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from ganjax.data.dataset import Dataset, check_classes, check_label_values, check_labels, label_counts_text
from ganjax.data.subsets import stratified_split_indices

SOURCE_FORMS = ("idx:DIR", "folder:DIR", "npz:FILE", "digits", "tfds:NAME")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS_IMAGE_SIZE = 16
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_FILE_PREFIXES = {"train": "train", "test": "t10k"}
# Without class names a source gets one class per id 0..max label; more than this many is a labelling slip
# (e.g. an id of 2**31), refused before the names are made.
MAX_DERIVED_CLASSES = 2**16
_GRAY_MODES = ("1", "L", "LA", "La")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# Errors of corrupt files: PIL raises these besides OSError (UnidentifiedImageError is one), np.load these.
_IMAGE_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)
_NPZ_READ_ERRORS = (
    ValueError, OSError, EOFError, AttributeError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError
)


class MissingSplitError(ValueError):
    """The source exists but has no such split (e.g. a folder without test/)."""


def load_source(
    source: str, split: str = "train", image_size: int | None = None, allow_empty_classes: bool = False
) -> Dataset:
    """Loads one split of a labelled image source.

    Every source ends in the same checks (`check_classes`): at least one image, distinct
    class names, and, outside the test split, an image in every class unless
    `allow_empty_classes`.

    Args:
        source: one of the forms in `SOURCE_FORMS` (see the module docstring).
        split: "train" or "test" (tfds also takes its own split strings, e.g.
            "train[:10%]").
        image_size: side of the square images to return; every image whose size
            differs is resized with PIL bilinear. None (or 0) keeps the native size.
        allow_empty_classes: accept classes that no image of this split has
            (config.data.allow_empty_classes); otherwise they raise ValueError, except
            in the test split.

    Returns:
        A `Dataset` with images [num_examples, height, width, channels] uint8.

    Raises:
        ValueError: unknown source form, bad split, bad data (the message names it).
        MissingSplitError: the source has no such split (a ValueError).
        FileNotFoundError: the path in the source does not exist.
        ImportError: `tfds:` without tensorflow-datasets installed.
    """
    image_size = _check_image_size(image_size)
    if not isinstance(source, str):
        raise ValueError(
            f"Data source must be a string, got {source!r}; valid forms: {', '.join(SOURCE_FORMS)}."
        )
    dataset = _load_unchecked(source, split, image_size)
    # Models learn from the other splits; a small test split may miss a class without harm
    # (a stray label there still shows: it adds an empty class to train, or exceeds the names).
    allow_empty_classes = allow_empty_classes or split == "test"
    check_classes(dataset.labels, dataset.class_names, f"{source} split {split!r}", allow_empty_classes)
    return dataset


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes every image to size x size with PIL bilinear filtering.

    Args:
        images: [num_examples, height, width, channels] uint8, channels 1 or 3.
        size: side of the output images.

    Returns:
        [num_examples, size, size, channels] uint8; `images` itself if already that size.
    """
    size = _check_image_size(size)
    if size is None:
        raise ValueError("resize_images needs a positive integer size, got 0.")
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            f"resize_images expects [num_examples, height, width, channels] uint8, got "
            f"shape {images.shape} dtype {images.dtype}."
        )
    if images.shape[1:3] == (size, size):
        return images
    resized = np.empty((len(images), size, size, images.shape[3]), np.uint8)
    for i, image in enumerate(images):
        resized[i] = _resize_image(image, size)
    return resized


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzipped or not) into an array of its stored shape and dtype.

    The IDX header is two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then
    one big-endian uint32 per dimension; the big-endian data follow.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path} is a corrupt or truncated gzip file ({error}); re-download it.") from error
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: its magic number {data[:4].hex()} should be "
            "0000 followed by a dtype code (08, 09, 0b, 0c, 0d, 0e) and the number of "
            "dimensions. Check that the file is MNIST-format IDX."
        )
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{path} is truncated inside its IDX header; re-download it.")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    count = math.prod(shape)
    if len(data) - header_size != count * dtype.itemsize:
        raise ValueError(
            f"{path} declares shape {shape} of {dtype} ({count * dtype.itemsize} bytes) "
            f"but holds {len(data) - header_size} data bytes; the file is truncated or "
            "corrupt, re-download it."
        )
    array = np.frombuffer(data, dtype, count=count, offset=header_size)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def images_as_uint8(images: np.ndarray, origin: str) -> np.ndarray:
    """Converts an image array to [num_examples, height, width, channels] uint8.

    Accepted inputs (the same rules for IDX, npz and tfds arrays):
        - rank 3 [num_examples, height, width] (a channel axis of 1 is added) or
            rank 4 [num_examples, height, width, 1 or 3];
        - uint8 as is; other integer types with values in [0, 255];
        - floats in [0, 1] (scaled by 255) when the maximum is <= 1, otherwise floats
            in [0, 255]; floats are rounded to the nearest integer.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"Images from {origin} have shape {images.shape}; expected [num_examples, "
            "height, width] or [num_examples, height, width, channels] with 1 or 3 "
            "channels (drop any alpha channel)."
        )
    if 0 in images.shape[1:3]:
        raise ValueError(
            f"Images from {origin} have shape {images.shape}: zero height or width; store "
            "images of at least 1x1 pixels."
        )
    if images.dtype == np.uint8 or images.size == 0:
        return images.astype(np.uint8)
    if images.dtype.kind in "iu":
        if images.min() < 0 or images.max() > 255:
            raise ValueError(
                f"Integer images from {origin} span [{images.min()}, {images.max()}]; "
                "expected values in [0, 255]."
            )
        return images.astype(np.uint8)
    if images.dtype.kind == "f":
        if not np.all(np.isfinite(images)):
            raise ValueError(f"Images from {origin} contain NaN or inf values.")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"Float images from {origin} span [{low}, {high}]; expected values in "
                "[0, 1] or [0, 255]. Rescale them (e.g. from [-1, 1] with (x + 1) / 2)."
            )
        scale = 255.0 if high <= 1.0 else 1.0
        return np.round(images * scale).astype(np.uint8)
    raise ValueError(
        f"Images from {origin} have dtype {images.dtype}; store uint8 in [0, 255] or floats in [0, 1]."
    )


def _load_unchecked(source: str, split: str, image_size: int | None) -> Dataset:
    """The split as its source's loader reads it, before the checks common to every source."""
    scheme, separator, argument = source.partition(":")
    if scheme == "digits" and not separator:
        return _load_digits(split, image_size)
    loaders = {
        "idx": _load_idx,
        "folder": _load_folder,
        "npz": _load_npz,
        "tfds": _load_tfds,
    }
    if scheme not in loaders or not argument:
        raise ValueError(
            f"Unknown data source {source!r}; valid forms: {', '.join(SOURCE_FORMS)} "
            "(e.g. 'idx:/usr/share/datasets/fashion-mnist')."
        )
    if scheme != "tfds":
        _check_split(split, source)
    return loaders[scheme](argument, split, image_size)


def _check_image_size(image_size) -> int | None:
    if image_size is None or (
        isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool) and image_size == 0
    ):
        return None
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) or image_size < 0:
        raise ValueError(
            f"image_size must be a positive int, or None/0 for the native size; got "
            f"{image_size!r}. Fix config.data.image_size."
        )
    return int(image_size)


def _check_split(split: str, source: str) -> None:
    if split not in _IDX_FILE_PREFIXES:
        raise ValueError(f"Unknown split {split!r} for source {source!r}; use 'train' or 'test'.")


def _resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """[height, width, channels] uint8 -> [size, size, channels] uint8."""
    pil_image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    resized = np.asarray(pil_image.resize((size, size), Image.Resampling.BILINEAR))
    return resized.reshape(size, size, image.shape[-1])


def _missing_path_error(path: pathlib.Path, what: str, fix: str) -> FileNotFoundError:
    if path.is_relative_to("/usr/share/datasets"):
        fix = (
            "install the Debian package that provides it, e.g. `apt-get install "
            "dataset-fashion-mnist` for /usr/share/datasets/fashion-mnist "
            "(`apt-cache search dataset-` lists others)"
        )
    return FileNotFoundError(f"{what} {path} does not exist; {fix}.")


def _stack_images(images: Sequence[np.ndarray], names: Sequence[str], image_size: int | None) -> np.ndarray:
    """Stacks [height, width, channels] uint8 images into one array.

    Grayscale images are repeated to RGB when any image is RGB. With `image_size`
    None all images must share one size; otherwise each is resized to it.

    Args:
        images: per-image [height, width, 1 or 3] uint8 arrays.
        names: per-image file name or example id, for errors.
        image_size: output side, or None to keep the (common) native size.

    Returns:
        [num_images, height, width, channels] uint8.
    """
    if any(image.shape[-1] == 3 for image in images):
        images = [np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image for image in images]
    if image_size is not None:
        return np.stack(
            [
                image if image.shape[:2] == (image_size, image_size) else _resize_image(image, image_size)
                for image in images
            ]
        )
    first_size = images[0].shape[:2]
    for name, image in zip(names, images, strict=True):
        if image.shape[:2] != first_size:
            raise ValueError(
                "Images have different sizes: "
                f"{names[0]} is {first_size[1]}x{first_size[0]} (width x height) but "
                f"{name} is {image.shape[1]}x{image.shape[0]}. Set "
                "config.data.image_size (image_size=...) to resize every image to one "
                "square size."
            )
    return np.stack(images)


def _class_names_for_labels(label_arrays: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """("0", "1", ..., str(max label)) over all the given {origin: labels} arrays.

    Raises:
        ValueError: labels that are not whole numbers, or a max label of MAX_DERIVED_CLASSES
            or more (named with its origin and image count).
    """
    max_label = 0
    for origin, labels in label_arrays.items():
        labels = check_label_values(labels, origin)
        if not labels.size:
            continue
        too_large = labels[labels >= MAX_DERIVED_CLASSES]
        if too_large.size:
            raise ValueError(
                f"Labels from {origin} include {label_counts_text(too_large)}; without class names "
                f"each id 0..max label is a class, and at most {MAX_DERIVED_CLASSES} classes are "
                "allowed. Relabel the images as contiguous class ids 0..K-1."
            )
        max_label = max(max_label, int(labels.max()))
    return tuple(str(label) for label in range(max_label + 1))


def _idx_file(directory: pathlib.Path, split: str, kind: str) -> pathlib.Path | None:
    """The split's images/labels IDX file in `directory`, plain or gzipped."""
    rank = 3 if kind == "images" else 1
    stem = f"{_IDX_FILE_PREFIXES[split]}-{kind}-idx{rank}-ubyte"
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _load_idx(argument: str, split: str, image_size: int | None) -> Dataset:
    directory = pathlib.Path(argument).expanduser()
    if not directory.is_dir():
        raise _missing_path_error(
            directory,
            "IDX directory",
            "point data.source at a directory holding train-images-idx3-ubyte[.gz] "
            "and train-labels-idx1-ubyte[.gz]",
        )
    image_file = _idx_file(directory, split, "images")
    label_file = _idx_file(directory, split, "labels")
    if image_file is None or label_file is None:
        prefix = _IDX_FILE_PREFIXES[split]
        message = (
            f"{directory} has no {prefix}-images-idx3-ubyte[.gz] and "
            f"{prefix}-labels-idx1-ubyte[.gz] pair for split {split!r}"
        )
        if split == "test" and _idx_file(directory, "train", "images") is not None:
            raise MissingSplitError(message + "; add the t10k-* files or carve a test split from train.")
        raise FileNotFoundError(message + "; add the IDX files (gzipped or not).")
    images = images_as_uint8(read_idx(image_file), str(image_file))
    labels = check_label_values(read_idx(label_file), str(label_file))
    if len(labels) != len(images):
        raise ValueError(
            f"{image_file} holds {len(images)} images but {label_file} holds "
            f"{len(labels)} labels; the files must come from the same split."
        )
    if "fashion" in str(directory.resolve()).lower():
        class_names = FASHION_MNIST_CLASS_NAMES
    else:
        label_files = [_idx_file(directory, s, "labels") for s in _IDX_FILE_PREFIXES]
        class_names = _class_names_for_labels(
            {str(f): read_idx(f) if f != label_file else labels for f in label_files if f}
        )
    labels = check_labels(labels, len(class_names), str(label_file))
    if image_size is not None:
        images = resize_images(images, image_size)
    return Dataset(images, labels, class_names)


def _folder_split_dir(root: pathlib.Path, split: str) -> pathlib.Path:
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train and has_test:
        return root / split
    if has_train or has_test:
        present, absent = ("train", "test") if has_train else ("test", "train")
        raise ValueError(
            f"{root} has a {present}/ sub-folder but no {absent}/; either add "
            f"{root / absent} with the same class sub-folders, or move the class "
            f"folders out of {root / present} so the whole folder is the train split."
        )
    if split == "test":
        raise MissingSplitError(
            f"{root} has no train/ and test/ sub-folders, so it only has a 'train' "
            "split; add both sub-folders or carve a test split from train."
        )
    return root


def _read_image(path: pathlib.Path) -> np.ndarray:
    """[height, width, 1] for grayscale files, [height, width, 3] otherwise; uint8."""
    try:
        with Image.open(path) as image:
            image.load()
            return _image_array(image)
    except _IMAGE_READ_ERRORS as error:
        raise ValueError(f"Cannot read image {path}: {error}. Remove or replace it.") from error


def _image_array(image: Image.Image) -> np.ndarray:
    """A decoded PIL image as [height, width, 1 or 3] uint8.

    16-bit grayscale (modes I;16*, I) is scaled from [0, 65535] to [0, 255]; an alpha
    channel (RGBA, LA, PA, palette transparency) is applied as premultiplied alpha,
    i.e. the image composited over black, so a transparent pixel is 0 whatever colour
    it stores; a palette image whose colours are all gray stays one channel.
    """
    if image.mode.startswith("I"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"its mode {image.mode} holds values in [{values.min()}, {values.max()}], not 8- or "
                "16-bit pixels; save it as an 8-bit or 16-bit PNG"
            )
        return np.round(values * (255 / 65535)).astype(np.uint8)[..., None]
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    gray = image.mode in _GRAY_MODES
    mode = ("LA" if gray else "RGBA") if has_alpha else ("L" if gray else "RGB")
    array = np.asarray(image.convert(mode))
    if array.ndim == 2:
        array = array[..., None]
    if has_alpha:
        color, alpha = array[..., :-1].astype(np.float32), array[..., -1:].astype(np.float32)
        array = np.round(color * alpha / 255).astype(np.uint8)
    if image.mode in ("P", "PA") and np.all(array == array[..., :1]):
        array = array[..., :1]
    return array


def _load_folder(argument: str, split: str, image_size: int | None) -> Dataset:
    root = pathlib.Path(argument).expanduser()
    if not root.is_dir():
        raise _missing_path_error(root, "Image folder", "point data.source at a folder of class sub-folders")
    split_dir = _folder_split_dir(root, split)
    class_dirs = sorted(
        (p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    files_per_class = [
        sorted(
            (
                p
                for p in d.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ),
            key=lambda p: p.name,
        )
        for d in class_dirs
    ]
    if not any(files_per_class):
        raise ValueError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) found in class sub-folders of "
            f"{split_dir}; put each class's images in its own sub-folder, e.g. "
            f"{split_dir / 'cat' / '0001.png'}."
        )
    for class_dir, files in zip(class_dirs, files_per_class, strict=True):
        if not files:
            raise ValueError(
                f"Class folder {class_dir} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add images or remove the folder."
            )
    files = [f for class_files in files_per_class for f in class_files]
    labels = np.concatenate([np.full(len(fs), c, np.int32) for c, fs in enumerate(files_per_class)])
    images = _stack_images([_read_image(f) for f in files], [str(f) for f in files], image_size)
    return Dataset(images, labels, tuple(d.name for d in class_dirs))


def _load_npz(argument: str, split: str, image_size: int | None) -> Dataset:
    path = pathlib.Path(argument).expanduser()
    if not path.is_file():
        fix = "point data.source at an .npz saved with np.savez(x=..., y=...)"
        if path.parent.name == "arrays":  # ganjax.data.arrays.ARRAYS_DIR: a file from_arrays wrote, named by content
            fix = "if ganjax.data.from_arrays wrote it, call from_arrays again with the same arrays to recreate it"
        raise _missing_path_error(path, "npz file", fix)
    image_key, label_key = ("x", "y") if split == "train" else ("x_test", "y_test")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"it holds a single {type(archive).__name__}, not named arrays")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except _NPZ_READ_ERRORS as error:
        raise ValueError(
            f"Cannot read {path} as an .npz archive ({error}); save it with "
            "np.savez(path, x=images, y=labels) and store class_names as a str array, "
            "not an object array."
        ) from error
    if split == "test" and "x_test" not in arrays and "x" in arrays:
        raise MissingSplitError(
            f"{path} has no x_test/y_test arrays, so it only has a 'train' split; add "
            "them or carve a test split from train."
        )
    missing = [key for key in (image_key, label_key) if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks array(s) {missing}; it holds {sorted(arrays)}. Save images "
            "as x (and x_test), labels as y (and y_test)."
        )
    images = images_as_uint8(arrays[image_key], f"{path}[{image_key}]")
    labels = check_label_values(arrays[label_key], f"{path}[{label_key}]")
    if len(labels) != len(images):
        raise ValueError(
            f"{path} has {len(images)} images in {image_key} but {len(labels)} labels "
            f"in {label_key}; give one label per image."
        )
    if "class_names" in arrays:
        class_names = _npz_class_names(arrays["class_names"], path)
    else:
        class_names = _class_names_for_labels({f"{path}[{k}]": arrays[k] for k in ("y", "y_test") if k in arrays})
    labels = check_labels(labels, len(class_names), f"{path}[{label_key}]")
    if image_size is not None:
        images = resize_images(images, image_size)
    return Dataset(images, labels, class_names)


def _npz_class_names(names: np.ndarray, path: pathlib.Path) -> tuple[str, ...]:
    """An npz's class_names array (str, bytes or numbers, any shape) as a tuple of str."""
    names = np.ravel(names)
    if names.size == 0:
        raise ValueError(f"{path}[class_names] is empty; store one name per class or leave it out.")
    return tuple(name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in names.tolist())


def _load_digits(split: str, image_size: int | None) -> Dataset:
    """scikit-learn's digits: 1797 8x8 images with values 0..16, scaled to 0..255.

    The train/test split is stratified, 20% test, with a fixed seed, so it is the
    same on every machine.
    """
    _check_split(split, "digits")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = check_labels(digits.target, 10, "sklearn load_digits")
    train_indices, test_indices = stratified_split_indices(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    indices = train_indices if split == "train" else test_indices
    images = resize_images(images[indices], image_size or DIGITS_IMAGE_SIZE)
    return Dataset(images, labels[indices], tuple(str(d) for d in range(10)))


def _tfds_split_names(split: str) -> list[str]:
    """Base split names in a tfds split string: "train[:10%]+test" -> [train, test]."""
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+")]


def _load_tfds(name: str, split: str, image_size: int | None) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            f"Source 'tfds:{name}' needs tensorflow-datasets: pip install 'ganjax[tfds]'."
        ) from error
    origin = f"tfds:{name} split {split!r}"
    known_splits = tfds.builder(name).info.splits
    if known_splits:
        unknown = [s for s in _tfds_split_names(split) if s not in known_splits]
        if unknown:
            error_class = MissingSplitError if split == "test" else ValueError
            raise error_class(
                f"tfds:{name} has no split {unknown[0]!r}; its splits are {sorted(known_splits)}."
            )
    source = tfds.data_source(name, split=split)
    features = source.dataset_info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"tfds:{name} has features {sorted(features)}; ganjax needs 'image' and "
            "'label'. Pick a labelled image dataset."
        )
    if len(source) == 0:
        raise ValueError(f"{origin} is empty; pick a split with examples.")
    # Batched reads (__getitems__) are not used: tfds.testing.mock_data's patched
    # reader rejects them in tensorflow-datasets 4.9.10.
    examples = [source[i] for i in range(len(source))]
    images = [images_as_uint8(np.asarray(e["image"])[None], origin)[0] for e in examples]
    labels = np.array([int(e["label"]) for e in examples])
    names = getattr(features["label"], "names", None)
    if names:
        class_names = tuple(str(n) for n in names)
    else:
        class_names = _class_names_for_labels({origin: labels})
    labels = check_labels(labels, len(class_names), origin)
    images = _stack_images(images, [f"{origin} example {i}" for i in range(len(images))], image_size)
    return Dataset(images, labels, class_names)
