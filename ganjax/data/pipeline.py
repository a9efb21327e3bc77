"""Train and test datasets from `config.data`, with the configured subset applied."""

from __future__ import annotations

import logging
import os
import pathlib

from ganjax.data.dataset import Dataset
from ganjax.data.sources import MissingSplitError, load_source
from ganjax.data.subsets import (
    class_counts,
    balanced_indices,
    cut_class_indices,
    few_label_indices,
    load_indices,
    long_tail_indices,
    save_indices,
    stratified_split_indices,
)
from ganjax.names import SUBSETS

SUBSET_INDICES_FILE = "subset_indices.json"
CARVED_TEST_FRACTION = 0.1
_SUBSET_KEYS = {
    "none": (),
    "long_tail": ("imbalance_ratio", "long_tail_profile"),
    "cut_class": ("cut_class", "cut_fraction"),
    "few_label": ("labels_per_class",),
    "balanced": ("images_per_class",),
}
# Subset settings that index files written before they were recorded lack; such a file counts as
# made with the config's default, as a checkpoint's config lacking a key does (config_from_dict).
_UNRECORDED_DEFAULTS = {"long_tail_profile": "exp"}

logger = logging.getLogger(__name__)


def load_train_and_test(data_config, workdir: str | os.PathLike | None = None) -> tuple[Dataset, Dataset]:
    """Loads the train and test splits of `data_config.source` and subsets train.

    Config fields (attribute access, e.g. an ml_collections.ConfigDict):
        source: see `ganjax.data.sources`.
        image_size: square side to resize to; 0 or None keeps the native size.
        subset: "none" | "long_tail" | "cut_class" | "few_label".
        imbalance_ratio, long_tail_profile ("exp" or "step"): for long_tail.
        cut_class, cut_fraction: for cut_class.
        labels_per_class: for few_label.
        seed: seed of the subset and of a carved test split.
        allow_empty_classes: accept classes without an image in the train split
            (a deliberate gap in the labels); otherwise they raise ValueError.

    A source without a test split (a folder without train/ and test/, an npz
    without x_test) gets a stratified 10% of its train data as test, logged.
    The subset applies to train only; test stays whole.

    With `workdir`, the subset's indices (into the train split, after any carved
    test split is removed) are saved to
    workdir/subset_indices.json with a description of the settings; a later call
    with the same workdir (a resumed run) loads them instead of recomputing, and
    raises, naming the differing settings, if they or the dataset size differ.

    For "few_label" the returned train set is the full train split (a
    semi-supervised model also uses the unlabelled images); the labelled indices
    are only written to subset_indices.json, read them with `load_indices`.

    Returns:
        (train, test) Datasets with the same class names and image shape.
    """
    subset = _config_value(data_config, "subset")
    if subset not in SUBSETS:
        raise ValueError(f"config.data.subset={subset!r} is not one of {SUBSETS}; fix the config.")
    source = _config_value(data_config, "source")
    seed = _config_value(data_config, "seed")
    image_size = _config_value(data_config, "image_size") or None
    allow_empty_classes = _config_value(data_config, "allow_empty_classes")
    train = load_source(source, "train", image_size, allow_empty_classes)
    try:
        test = load_source(source, "test", image_size, allow_empty_classes)
    except MissingSplitError:
        train_indices, test_indices = stratified_split_indices(train.labels, CARVED_TEST_FRACTION, seed)
        logger.info(
            "Source %s has no test split: using a stratified %d%% of its train data "
            "(%d of %d images, seed %d) as test.",
            source,
            round(CARVED_TEST_FRACTION * 100),
            len(test_indices),
            len(train),
            seed,
        )
        train, test = train.subset(train_indices), train.subset(test_indices)
    _check_same_kind(train, test, source)
    if subset == "none":
        return train, test

    description = _subset_description(data_config, train)
    path = pathlib.Path(workdir) / SUBSET_INDICES_FILE if workdir is not None else None
    if path is not None and path.exists():
        fix = (
            f"the run in {workdir} used the subset of the stored config.data values: use a fresh --workdir "
            "for the new values, or set config.data back to the stored ones to reuse this workdir"
        )
        indices = load_indices(
            path, len(train), description, unrecorded_defaults=_UNRECORDED_DEFAULTS, difference_fix=fix
        )
        logger.info("Loaded %s subset indices from %s.", subset, path)
    else:
        indices = _subset_indices(data_config, train)
        if path is not None:
            save_indices(path, indices, description)
            logger.info("Saved %s subset indices to %s.", subset, path)
    logger.info(
        "%s subset of %s: %d of %d train images, class counts %s.",
        subset,
        source,
        len(indices),
        len(train),
        class_counts(train.labels[indices], train.num_classes).tolist(),
    )
    if subset == "few_label":
        return train, test
    return train.subset(indices), test


def _config_value(data_config, key: str):
    try:
        return getattr(data_config, key)
    except (AttributeError, KeyError) as error:
        raise ValueError(f"config.data.{key} is missing; add it to the config's data section.") from error


def _subset_description(data_config, train: Dataset) -> dict:
    """The settings that determine the subset's indices, saved beside them."""
    subset = data_config.subset
    description = {
        "subset": subset,
        "source": data_config.source,
        "seed": data_config.seed,
        "num_examples": len(train),
        "num_classes": train.num_classes,
    }
    for key in _SUBSET_KEYS[subset]:
        description[key] = _config_value(data_config, key)
    return description


def _subset_indices(data_config, train: Dataset):
    subset = data_config.subset
    if subset == "long_tail":
        return long_tail_indices(
            train.labels,
            train.num_classes,
            data_config.imbalance_ratio,
            data_config.seed,
            profile=data_config.long_tail_profile,
        )
    if subset == "cut_class":
        return cut_class_indices(
            train.labels, data_config.cut_class, data_config.cut_fraction, data_config.seed
        )
    if subset == "balanced":
        return balanced_indices(train.labels, train.num_classes, data_config.images_per_class, data_config.seed)
    return few_label_indices(train.labels, train.num_classes, data_config.labels_per_class, data_config.seed)


def _check_same_kind(train: Dataset, test: Dataset, source: str) -> None:
    if train.class_names != test.class_names:
        raise ValueError(
            f"Train and test splits of {source} have different classes: "
            f"{train.class_names} vs {test.class_names}; give both the same class "
            "sub-folders/names."
        )
    if train.image_shape != test.image_shape:
        raise ValueError(
            f"Train images of {source} are {train.image_shape} but test images are "
            f"{test.image_shape}; set config.data.image_size, and use the same "
            "channels (grayscale or RGB) in both splits."
        )
