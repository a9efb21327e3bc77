"""Class-imbalanced and few-label subsets: pure functions of labels and a seed.

Every function returns sorted int64 indices into the labels it was given, draws
each class's examples from its own generator `np.random.default_rng([seed, c])`
(so one class's choice does not depend on the others), and raises ValueError
rather than leave a class with no images.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping

import numpy as np

from ganjax.data.dataset import check_labels
from ganjax.names import LONG_TAIL_PROFILES

_FLOAT_SLACK = 1e-9


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of examples of each class.

    Args:
        labels: [num_examples] ints in [0, num_classes).
        num_classes: number of classes.

    Returns:
        [num_classes] int64.
    """
    labels = check_labels(labels, num_classes, "labels")
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def long_tail_class_sizes(
    num_classes: int, max_size: int, imbalance_ratio: float, profile: str = "exp"
) -> np.ndarray:
    """Per-class sizes of a long-tailed subset, largest first.

    "exp" (Cui et al. 2019, "Class-Balanced Loss", Sec. 6; Cao et al. 2019, LDAM):
    class c keeps int(max_size / imbalance_ratio ** (c / (num_classes - 1))).
    "step" (Cao et al. 2019): the first num_classes - num_classes // 2 classes keep
    max_size, the last num_classes // 2 keep int(max_size / imbalance_ratio).
    Every class keeps at least one image.

    Returns:
        [num_classes] int64, non-increasing, first max_size, last ~max_size / ratio.
    """
    if not imbalance_ratio > 1 or not math.isfinite(imbalance_ratio):
        raise ValueError(
            f"imbalance_ratio must be a finite number > 1 (largest class size / "
            f"smallest), got {imbalance_ratio!r}; use subset='none' for balanced data."
        )
    if num_classes < 2:
        raise ValueError(f"A long-tailed subset needs at least 2 classes, got num_classes={num_classes}.")
    if profile == "exp":
        exponents = np.arange(num_classes) / (num_classes - 1)
    elif profile == "step":
        exponents = (np.arange(num_classes) >= num_classes - num_classes // 2).astype(float)
    else:
        raise ValueError(f"Unknown long-tail profile {profile!r}; valid profiles: {LONG_TAIL_PROFILES}.")
    sizes = np.floor(max_size / imbalance_ratio**exponents + _FLOAT_SLACK)
    return np.maximum(sizes, 1).astype(np.int64)


def long_tail_indices(
    labels: np.ndarray,
    num_classes: int,
    imbalance_ratio: float,
    seed: int,
    profile: str = "exp",
) -> np.ndarray:
    """Indices of a long-tailed subset: class 0 largest, class num_classes-1 smallest.

    The largest size is the smallest class count in `labels`, so every class has
    enough images for its target (with equal class counts, as in CIFAR-10 or
    Fashion-MNIST, it is the class-0 count used by Cui et al.). Sizes follow
    `long_tail_class_sizes`.

    Args:
        labels: [num_examples] ints in [0, num_classes).
        num_classes: number of classes, at least 2.
        imbalance_ratio: size of class 0 / size of the last class, > 1.
        seed: selects which images each class keeps.
        profile: "exp" or "step".

    Returns:
        [num_selected] sorted int64 indices into `labels`.
    """
    counts = _check_every_class_present(labels, num_classes, "long_tail")
    sizes = long_tail_class_sizes(num_classes, int(counts.min()), imbalance_ratio, profile)
    return _choose_per_class(labels, sizes, seed)


def cut_class_indices(labels: np.ndarray, class_id: int, fraction: float, seed: int) -> np.ndarray:
    """Indices keeping every class whole except `class_id`, cut to `fraction`.

    The single minority class of BAGAN (Mariani et al. 2018). The cut class keeps
    floor(fraction * count) images, at least one.

    Args:
        labels: [num_examples] non-negative ints.
        class_id: the class to cut; must occur in `labels`.
        fraction: share of the class's images to keep, in (0, 1].
        seed: selects which images the cut class keeps.

    Returns:
        [num_selected] sorted int64 indices into `labels`.
    """
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1 if labels.size else 1
    counts = class_counts(labels, num_classes)
    if not 0 <= class_id < num_classes or counts[class_id] == 0:
        raise ValueError(
            f"cut_class {class_id!r} does not occur in the labels (classes present: "
            f"{np.flatnonzero(counts).tolist()}); fix config.data.cut_class."
        )
    if not 0 < fraction <= 1:
        raise ValueError(
            f"cut_fraction must be in (0, 1], got {fraction!r}; it is the share of "
            f"class {class_id}'s images to keep."
        )
    sizes = counts.copy()
    sizes[class_id] = max(1, math.floor(fraction * counts[class_id] + _FLOAT_SLACK))
    return _choose_per_class(labels, sizes, seed)


def few_label_indices(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Indices of exactly `per_class` labelled images of every class.

    Args:
        labels: [num_examples] ints in [0, num_classes).
        num_classes: number of classes.
        per_class: labelled images per class, > 0 and <= the smallest class count.
        seed: selects which images are labelled.

    Returns:
        [num_classes * per_class] sorted int64 indices into `labels`.
    """
    return _per_class_indices(labels, num_classes, per_class, seed, "labels_per_class", "few_label")


def balanced_indices(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Indices of a balanced training subset: exactly `per_class` images of every class (data.subset
    "balanced", data.images_per_class), drawn with `seed`; sorted int64."""
    return _per_class_indices(labels, num_classes, per_class, seed, "images_per_class", "balanced")


def _per_class_indices(labels: np.ndarray, num_classes: int, per_class: int, seed: int, key: str,
                       subset: str) -> np.ndarray:
    """Sorted indices of `per_class` images of every class; errors name config.data.KEY."""
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class <= 0:
        raise ValueError(f"{key} must be a positive int, got {per_class!r}; fix config.data.{key}.")
    counts = _check_every_class_present(labels, num_classes, subset)
    for class_id, count in enumerate(counts):
        if count < per_class:
            raise ValueError(
                f"Class {class_id} has only {count} images, fewer than {key}={per_class}; lower "
                f"config.data.{key} to at most {counts.min()}."
            )
    return _choose_per_class(labels, np.full(num_classes, per_class), seed)


def stratified_split_indices(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices into train and test, taking `test_fraction` of each class.

    Each class with at least two images puts round(test_fraction * count) of them,
    at least one and at most count - 1, in test; a class with one image stays in
    train.

    Args:
        labels: [num_examples] non-negative ints.
        test_fraction: in (0, 1).
        seed: selects which images go to test.

    Returns:
        (train_indices, test_indices): disjoint sorted int64 arrays covering all
        examples.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1 if labels.size else 1
    counts = class_counts(labels, num_classes)
    test_sizes = np.where(counts >= 2, np.clip(np.round(test_fraction * counts), 1, counts - 1), 0).astype(
        np.int64
    )
    test_indices = _choose_per_class(labels, test_sizes, seed)
    train_indices = np.setdiff1d(np.arange(len(labels)), test_indices).astype(np.int64)
    return train_indices, test_indices


def save_indices(path: str | os.PathLike, indices: np.ndarray, description: Mapping) -> None:
    """Writes indices and a JSON-serialisable description to a JSON file.

    The write is atomic (temporary file then rename), so a run killed mid-write
    leaves no half file. Numpy scalars and arrays in `description` are converted.
    Store `num_examples` in the description so `load_indices` can check it.
    """
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
        raise ValueError(
            f"indices must be a 1-D integer array, got shape {indices.shape} dtype {indices.dtype}."
        )
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "description": _to_json_value(dict(description)),
        "num_indices": int(indices.size),
        "indices": [int(i) for i in indices],
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, path)


def load_indices(
    path: str | os.PathLike,
    num_examples: int,
    expected_description: Mapping | None = None,
    unrecorded_defaults: Mapping | None = None,
    difference_fix: str | None = None,
) -> np.ndarray:
    """Reads indices written by `save_indices` and checks they fit the dataset.

    Args:
        path: the JSON file.
        num_examples: size of the dataset the indices point into.
        expected_description: if given, each of its keys must equal the stored
            description's value (e.g. the subset config), so a stale file is caught.
        unrecorded_defaults: values of expected keys that older files do not record,
            compared as if stored.
        difference_fix: what to do, for the message naming the settings that differ
            from `expected_description`; default: delete the file or use a fresh workdir.

    Returns:
        [num_indices] int64 indices in the stored order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an index file, an index is out of range, or the
            stored description disagrees with `num_examples` or `expected_description`.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Index file {path} does not exist; write it with save_indices.")
    fix = f"delete {path} to recompute the subset, or use a fresh workdir"
    try:
        record = json.loads(path.read_text())
        indices = np.asarray(record["indices"], dtype=np.int64)
        description = record.get("description", {})
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path} is not an index file written by save_indices ({error}); {fix}.") from error
    stored_size = description.get("num_examples")
    if stored_size is not None and stored_size != num_examples:
        raise ValueError(
            f"{path} was made for a dataset of {stored_size} examples but this one has {num_examples}; {fix}."
        )
    if indices.ndim != 1 or (indices.size and (indices.min() < 0 or indices.max() >= num_examples)):
        raise ValueError(
            f"{path} holds indices outside [0, {num_examples - 1}] for a dataset of "
            f"{num_examples} examples; {fix}."
        )
    if expected_description is not None:
        expected = _to_json_value(dict(expected_description))
        recorded = {**_to_json_value(dict(unrecorded_defaults or {})), **description}
        differences = {
            key: (recorded.get(key), value) for key, value in expected.items() if recorded.get(key) != value
        }
        if differences:
            details = ", ".join(
                f"{key}: stored {stored!r} vs now {now!r}" for key, (stored, now) in differences.items()
            )
            raise ValueError(f"{path} was made with different settings ({details}); {difference_fix or fix}.")
    return indices


def _to_json_value(value):
    """Converts numpy scalars/arrays and tuples so that JSON round-trips compare equal."""
    if isinstance(value, Mapping):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_to_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_every_class_present(labels: np.ndarray, num_classes: int, subset_name: str) -> np.ndarray:
    """Returns class_counts, raising if some class has no images to subset from."""
    counts = class_counts(labels, num_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"Classes {empty.tolist()} have no images, so the {subset_name} subset "
            "would leave them empty; every class in [0, num_classes) needs images."
        )
    return counts


def _choose_per_class(labels: np.ndarray, sizes: np.ndarray, seed: int) -> np.ndarray:
    """Sorted int64 indices with sizes[c] examples of each class c, drawn without replacement."""
    labels = np.asarray(labels)
    chosen = []
    for class_id, size in enumerate(sizes):
        members = np.flatnonzero(labels == class_id)
        rng = np.random.default_rng([int(seed), class_id])
        chosen.append(rng.choice(members, size=int(size), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)
