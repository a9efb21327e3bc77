"""Writers of tiny synthetic datasets in the on-disk formats ganjax.data reads.

A plain module, not conftest.py: tests/conftest.py is imported by name elsewhere.
"""

import gzip
import pathlib
import struct

import numpy as np
from PIL import Image

_IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def write_idx_file(path: pathlib.Path, array: np.ndarray, compress: bool = False) -> pathlib.Path:
    """Writes `array` in IDX format (big-endian), gzipped if `compress`."""
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_idx_dataset(
    directory: pathlib.Path,
    images: np.ndarray,
    labels: np.ndarray,
    split: str = "train",
    compress: bool = False,
) -> pathlib.Path:
    """Writes MNIST-named IDX image and label files for one split into `directory`."""
    prefix = {"train": "train", "test": "t10k"}[split]
    directory.mkdir(parents=True, exist_ok=True)
    write_idx_file(directory / f"{prefix}-images-idx3-ubyte", images, compress)
    write_idx_file(directory / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return directory


def write_image(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    """Writes a [height, width] (grayscale) or [height, width, 3|4] uint8 image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def synthetic_images(num_examples: int, height: int = 6, width: int = 6) -> np.ndarray:
    """[num_examples, height, width] uint8; pixel [0, 0] of image i is i % 256."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(num_examples, height, width), dtype=np.uint8)
    images[:, 0, 0] = np.arange(num_examples) % 256
    return images
