"""Deterministic, resumable batches: batch `step` is a pure function of (step, seed).

Resuming a run needs only the step number: `iterate_batches(..., start_step=s)`
yields exactly what an uninterrupted iterator yields from its s-th item on. Each
epoch reshuffles with `np.random.default_rng([seed, epoch])`; the last partial
batch of an epoch is dropped. NumPy only: device placement belongs to the caller.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ganjax.data.dataset import Dataset

PREFETCH_BATCHES = 2


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of global batch number `step`.

    Args:
        num_examples: dataset size.
        batch_size: examples per batch, at most `num_examples`.
        step: global batch number, >= 0.
        seed: shuffling seed.

    Returns:
        [batch_size] int64 indices; the batches of one epoch are disjoint.
    """
    if batch_size <= 0 or batch_size > num_examples:
        raise ValueError(
            f"batch_size={batch_size} must be in [1, num_examples={num_examples}]; "
            "lower the batch size or use a larger dataset/subset."
        )
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    steps_per_epoch = num_examples // batch_size
    epoch, step_in_epoch = divmod(int(step), steps_per_epoch)
    permutation = np.random.default_rng([int(seed), epoch]).permutation(num_examples)
    start = step_in_epoch * batch_size
    return permutation[start : start + batch_size].astype(np.int64)


def balanced_sample_indices(
    labels: np.ndarray, num_classes: int, batch_size: int, step: int, seed: int, class_probs: np.ndarray | None = None
) -> np.ndarray:
    """Class-balanced sample: each of `batch_size` slots picks a class uniformly (or with
    probabilities `class_probs` [num_classes]), then one of its examples uniformly (with
    replacement). Deterministic in (seed, step).

    Returns:
      [batch_size] int64 indices into `labels`.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng([int(seed), int(step)])
    if class_probs is None:
        classes = rng.integers(0, num_classes, batch_size)
    else:
        classes = rng.choice(num_classes, batch_size, p=np.asarray(class_probs, np.float64))
    offsets = np.floor(rng.random(batch_size) * counts[classes]).astype(np.int64)
    return order[starts[classes] + offsets].astype(np.int64)


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 images in [0, 255] -> float32 in [-1, 1] (x / 127.5 - 1), any shape."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(
            f"to_model_range expects uint8 images, got dtype {images.dtype}; convert "
            "with to_uint8 or load through ganjax.data."
        )
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float images in [-1, 1] -> uint8 in [0, 255], rounded and clipped; any shape.

    The inverse of `to_model_range`: to_uint8(to_model_range(x)) == x.
    """
    images = np.asarray(images, dtype=np.float32)
    if not np.all(np.isfinite(images)):
        raise ValueError(
            "to_uint8 got NaN or inf pixel values; the model producing them has "
            "diverged or was given bad inputs."
        )
    return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def batch_at(
    dataset: Dataset, batch_size: int, step: int, seed: int, class_balanced: bool = False
) -> dict[str, np.ndarray]:
    """Global batch number `step` of `dataset`: epoch-wise shuffled, or with `class_balanced`
    drawn by `balanced_sample_indices` (for long-tailed data).

    Returns:
        images: [batch_size, height, width, channels] float32 in [-1, 1].
        labels: [batch_size] int32.
    """
    if class_balanced:
        indices = balanced_sample_indices(dataset.labels, dataset.num_classes, batch_size, step, seed)
    else:
        indices = batch_indices(len(dataset), batch_size, step, seed)
    return {
        "images": to_model_range(dataset.images[indices]),
        "labels": dataset.labels[indices],
    }


def stack_batches(batches: list) -> Any:
    """Host batches (dicts of arrays, possibly nested, with the same keys and shapes) stacked on
    a new leading axis: the K batches of one K-steps-per-call training call."""
    if isinstance(batches[0], Mapping):
        return {name: stack_batches([batch[name] for batch in batches]) for name in batches[0]}
    return np.stack(batches)


def stacked_batch_at(
    dataset: Dataset,
    batch_size: int,
    step: int,
    seed: int,
    leading_shape: tuple[int, ...] = (),
    class_balanced: bool = False,
) -> dict[str, np.ndarray]:
    """Item number `step` of `iterate_batches`: prod(leading_shape) global batches.

    Item s covers global batches s * n ... s * n + n - 1, n = prod(leading_shape),
    stacked in order and reshaped to leading_shape.

    Returns:
        images: [*leading_shape, batch_size, height, width, channels] float32 in [-1, 1].
        labels: [*leading_shape, batch_size] int32.
    """
    leading_shape = tuple(int(d) for d in leading_shape)
    if not leading_shape:
        return batch_at(dataset, batch_size, step, seed, class_balanced)
    if any(d <= 0 for d in leading_shape):
        raise ValueError(f"leading_shape must hold positive sizes, got {leading_shape}.")
    count = math.prod(leading_shape)
    batches = [batch_at(dataset, batch_size, step * count + i, seed, class_balanced) for i in range(count)]
    return {
        key: np.stack([b[key] for b in batches]).reshape(leading_shape + batches[0][key].shape)
        for key in ("images", "labels")
    }


class BatchIterator:
    """Infinite iterator over make_item(start_step), make_item(start_step + 1), ...

    `iterate_batches` builds one whose items are `stacked_batch_at(..., step)`.
    A daemon thread prepares the next `PREFETCH_BATCHES` items, so a consumer that
    stops early never blocks interpreter exit. Errors in the thread are re-raised
    by `next`. Call `close()` (or use `with`) to stop the thread early.
    """

    def __init__(self, make_item: Callable[[int], Mapping[str, np.ndarray]], start_step: int = 0):
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_prefetch,
            args=(make_item, start_step, self._queue, self._stop),
            name="ganjax-batch-prefetch",
            daemon=True,
        )
        self._thread.start()

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        while True:
            if self._stop.is_set():
                raise StopIteration
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                continue
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        self.close()


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    leading_shape: tuple[int, ...] = (),
    class_balanced: bool = False,
) -> BatchIterator:
    """Yields `stacked_batch_at(dataset, batch_size, s, seed, leading_shape)` for s >= start_step.

    With leading_shape=(n,), item s stacks global batches s*n ... s*n+n-1 into
    images [n, batch_size, height, width, channels] and labels [n, batch_size];
    `start_step` counts items, so resuming after s items uses start_step=s.
    """
    batch_indices(len(dataset), batch_size, 0, seed)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}.")

    def make_item(step: int) -> dict[str, np.ndarray]:
        return stacked_batch_at(dataset, batch_size, step, seed, leading_shape, class_balanced)

    return BatchIterator(make_item, start_step)


def process_slice(batch, process_index: int, process_count: int, axis: int = 0):
    """This process's contiguous share of a global batch, for multi-host loading.

    Every process builds the same global batch (it is a function of step and seed)
    and keeps chunk `process_index` of `process_count` equal chunks along `axis`.

    Args:
        batch: an array or a mapping of arrays (e.g. from `batch_at`), each with the
            global batch size on `axis`.
        process_index: this process, in [0, process_count).
        process_count: number of processes.
        axis: the batch axis (1 for items from iterate_batches with leading_shape).

    Returns:
        The same structure, each array's `axis` divided by `process_count`.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
    if isinstance(batch, Mapping):
        return {key: process_slice(value, process_index, process_count, axis) for key, value in batch.items()}
    size = batch.shape[axis]
    if size % process_count:
        raise ValueError(
            f"Global batch of {size} along axis {axis} does not split evenly over "
            f"{process_count} processes; make the batch size a multiple of "
            f"{process_count}."
        )
    chunk = size // process_count
    index = [slice(None)] * batch.ndim
    index[axis] = slice(process_index * chunk, (process_index + 1) * chunk)
    return batch[tuple(index)]


def _prefetch(
    make_item: Callable[[int], Mapping[str, np.ndarray]],
    start_step: int,
    output: queue.Queue,
    stop: threading.Event,
) -> None:
    """Puts make_item(start_step), make_item(start_step + 1), ... on `output` until stopped."""
    step = start_step
    while not stop.is_set():
        try:
            item = make_item(step)
        except BaseException as error:  # Handed to the consumer, which re-raises it.
            item = error
        while not stop.is_set():
            try:
                output.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        if isinstance(item, BaseException):
            return
        step += 1
