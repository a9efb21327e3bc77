"""The in-memory labelled image dataset every source produces."""

from __future__ import annotations

import dataclasses

import numpy as np


def check_labels(labels: np.ndarray, num_classes: int, origin: str) -> np.ndarray:
    """Returns `labels` as int32 after checking they index `num_classes` classes.

    Args:
        labels: [num_examples] integer array (or floats holding whole numbers).
        num_classes: number of class names; valid labels are 0 .. num_classes - 1.
        origin: where the labels came from (a path or source string), for errors.

    Returns:
        [num_examples] int32 labels.

    Raises:
        ValueError: labels are not a 1-D array of whole numbers in range.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"Labels from {origin} have shape {labels.shape}; expected one label per "
            "image, shape [num_examples]. Flatten or fix the label array."
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(
                f"Labels from {origin} are floats that are not all whole numbers; store "
                "integer class ids 0 .. num_classes - 1."
            )
    elif labels.dtype.kind not in "iub":
        raise ValueError(
            f"Labels from {origin} have dtype {labels.dtype}; store integer class ids 0 .. num_classes - 1."
        )
    if labels.size:
        low, high = labels.min(), labels.max()
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"Labels from {origin} span [{low}, {high}] but there are {num_classes} "
                f"class names, so labels must lie in [0, {num_classes - 1}]. Relabel the "
                "data as contiguous class ids or give one class name per class."
            )
    return labels.astype(np.int32)


def check_images(images: np.ndarray, origin: str) -> None:
    """Raises ValueError unless `images` is [num_examples, height, width, 1 or 3] uint8."""
    if images.dtype != np.uint8:
        raise ValueError(
            f"Images from {origin} have dtype {images.dtype}; Dataset holds uint8 images in [0, 255]."
        )
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"Images from {origin} have shape {images.shape}; expected "
            "[num_examples, height, width, channels] with 1 (grayscale) or 3 (RGB) "
            "channels."
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Labelled images held in memory.

    Equality is identity (`eq=False`): element-wise `==` on arrays has no single
    truth value.

    Attributes:
        images: [num_examples, height, width, channels] uint8, channels 1 or 3.
        labels: [num_examples] int32 in [0, num_classes).
        class_names: one name per class; label `c` names `class_names[c]`.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.class_names, tuple) or not all(
            isinstance(name, str) for name in self.class_names
        ):
            raise ValueError(f"class_names must be a tuple of str, got {self.class_names!r}.")
        if not self.class_names:
            raise ValueError("class_names is empty; a dataset needs at least one class.")
        check_images(self.images, "Dataset")
        if self.labels.dtype != np.int32:
            raise ValueError(
                f"Dataset labels have dtype {self.labels.dtype}; pass int32 labels "
                "(use check_labels to convert and validate)."
            )
        check_labels(self.labels, len(self.class_names), "Dataset")
        if len(self.labels) != len(self.images):
            raise ValueError(
                f"Dataset has {len(self.images)} images but {len(self.labels)} labels; "
                "give exactly one label per image."
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels)."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Dataset:
        """Returns the examples at `indices` ([num_selected] ints) in that order."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise ValueError(
                f"subset indices must be a 1-D integer array, got shape {indices.shape} "
                f"dtype {indices.dtype}."
            )
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(
                f"subset indices span [{indices.min()}, {indices.max()}] but the dataset "
                f"has {len(self)} examples; indices must lie in [0, {len(self) - 1}]."
            )
        indices = indices.astype(np.int64)
        return Dataset(self.images[indices], self.labels[indices], self.class_names)
