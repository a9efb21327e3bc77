"""Data: image sources, class-imbalanced and few-label subsets, resumable batching."""

from ganjax.data.batching import (
    PREFETCH_BATCHES,
    BatchIterator,
    batch_at,
    batch_indices,
    iterate_batches,
    process_slice,
    stacked_batch_at,
    to_model_range,
    to_uint8,
)
from ganjax.data.dataset import Dataset, check_labels
from ganjax.data.pipeline import (
    CARVED_TEST_FRACTION,
    SUBSET_INDICES_FILE,
    SUBSETS,
    load_train_and_test,
)
from ganjax.data.sources import (
    FASHION_MNIST_CLASS_NAMES,
    SOURCE_FORMS,
    MissingSplitError,
    images_as_uint8,
    load_source,
    read_idx,
    resize_images,
)
from ganjax.data.subsets import (
    LONG_TAIL_PROFILES,
    class_counts,
    cut_class_indices,
    few_label_indices,
    load_indices,
    long_tail_class_sizes,
    long_tail_indices,
    save_indices,
    stratified_split_indices,
)

__all__ = [
    "BatchIterator",
    "CARVED_TEST_FRACTION",
    "Dataset",
    "FASHION_MNIST_CLASS_NAMES",
    "LONG_TAIL_PROFILES",
    "MissingSplitError",
    "PREFETCH_BATCHES",
    "SOURCE_FORMS",
    "SUBSETS",
    "SUBSET_INDICES_FILE",
    "batch_at",
    "batch_indices",
    "check_labels",
    "class_counts",
    "cut_class_indices",
    "few_label_indices",
    "images_as_uint8",
    "iterate_batches",
    "load_indices",
    "load_source",
    "load_train_and_test",
    "long_tail_class_sizes",
    "long_tail_indices",
    "process_slice",
    "read_idx",
    "resize_images",
    "save_indices",
    "stacked_batch_at",
    "stratified_split_indices",
    "to_model_range",
    "to_uint8",
]
