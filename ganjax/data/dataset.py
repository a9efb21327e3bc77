"""The in-memory labelled image dataset every source produces."""

from __future__ import annotations

import dataclasses

import numpy as np


def check_label_values(labels: np.ndarray, origin: str) -> np.ndarray:
    """Returns `labels` as an array after checking it holds one whole number per image.

    Args:
        labels: [num_examples] integer array (or floats holding whole numbers).
        origin: where the labels came from (a path or source string), for errors.

    Raises:
        ValueError: labels are not a 1-D array of finite whole numbers.
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
    return labels


def check_labels(labels: np.ndarray, num_classes: int, origin: str) -> np.ndarray:
    """Returns `labels` as int32 after checking they index `num_classes` classes.

    Args:
        labels: [num_examples] integer array (or floats holding whole numbers).
        num_classes: number of class names; valid labels are 0 .. num_classes - 1.
        origin: where the labels came from (a path or source string), for errors.

    Returns:
        [num_examples] int32 labels.

    Raises:
        ValueError: labels are not a 1-D array of whole numbers in range; the message
            names the values outside 0 .. num_classes - 1 and how many images hold each.
    """
    labels = check_label_values(labels, origin)
    outside = (labels < 0) | (labels >= num_classes)
    if np.any(outside):
        raise ValueError(
            f"Labels from {origin} must be 0..{num_classes - 1} for the {num_classes} class "
            f"name(s); found {label_counts_text(labels[outside])}. Relabel the data as "
            "contiguous class ids, or give one class name per class."
        )
    return labels.astype(np.int32)


def check_classes(
    labels: np.ndarray, class_names: tuple[str, ...], origin: str, allow_empty_classes: bool = False
) -> None:
    """Raises ValueError unless the labelled images fill every class of `class_names`.

    A class without an image is almost always a labelling slip (one stray label 99
    among 0..9 makes 100 classes, 90 of them empty), so it is refused unless
    `allow_empty_classes` (config.data.allow_empty_classes) says the gap is deliberate.

    Args:
        labels: [num_examples] int labels in [0, len(class_names)).
        class_names: one name per class.
        origin: where the data came from, for errors.
        allow_empty_classes: accept classes that no image has.
    """
    if len(labels) == 0:
        raise ValueError(f"{origin} holds no images; point config.data.source at a non-empty dataset.")
    duplicates = sorted({name for name in class_names if class_names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"{origin} names more than one class {', '.join(map(repr, duplicates))}; give every class "
            "its own name."
        )
    counts = np.bincount(labels, minlength=len(class_names))
    empty = np.flatnonzero(counts == 0)
    if empty.size and not allow_empty_classes:
        present = np.flatnonzero(counts)
        beyond_gap = present[present > empty[0]]
        stray = f"; above the first empty class: {label_counts_text(labels, beyond_gap)}" if beyond_gap.size else ""
        raise ValueError(
            f"Class{'es' if empty.size > 1 else ''} {_classes_text(empty, class_names)} of {origin} "
            f"{'have' if empty.size > 1 else 'has'} no image ({empty.size} of {len(class_names)} "
            f"classes). Labels found: {_ranges_text(present)}{stray}. Relabel the images as "
            "contiguous class ids 0..K-1, give every class an image, or set "
            "config.data.allow_empty_classes=True if the gap is deliberate."
        )


def label_counts_text(labels: np.ndarray, values: np.ndarray | None = None, limit: int = 5) -> str:
    """Text such as "99 (1 image), 120 (3 images)" for `values` (default: every distinct label), at most `limit`."""
    values = np.unique(labels) if values is None else np.asarray(values)
    parts = []
    for value in values[:limit]:
        count = int(np.sum(labels == value))
        parts.append(f"{value.item()} ({count} image{'s' if count != 1 else ''})")
    if len(values) > limit:
        parts.append(f"and {len(values) - limit} more values")
    return ", ".join(parts)


def _classes_text(classes: np.ndarray, class_names: tuple[str, ...], limit: int = 8) -> str:
    """Class ids as runs ("10..98") when their names are the ids, else with names ("2 (cat), 5 (dog)")."""
    if all(class_names[c] == str(c) for c in classes):
        return _ranges_text(classes)
    texts = [f"{c} ({class_names[c]})" for c in classes[:limit]]
    if len(classes) > limit:
        texts.append(f"and {len(classes) - limit} more")
    return ", ".join(texts)


def _ranges_text(values: np.ndarray, limit: int = 8) -> str:
    """Sorted ints as runs: [3, 7, 10, 11, 12] -> "3, 7, 10..12"."""
    runs = []
    for value in np.asarray(values).tolist():
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    texts = [str(low) if low == high else f"{low}..{high}" for low, high in runs[:limit]]
    if len(runs) > limit:
        texts.append(f"and {len(runs) - limit} more runs")
    return ", ".join(texts)


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
