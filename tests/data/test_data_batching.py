import subprocess
import sys

import numpy as np
import pytest

from ganjax.data import (
    BatchIterator,
    Dataset,
    batch_at,
    batch_indices,
    iterate_batches,
    process_slice,
    to_model_range,
    to_uint8,
)


def _indexed_dataset(num_examples=23, num_classes=4):
    """Image i has every pixel equal to i, so batches reveal which examples they hold."""
    images = np.broadcast_to(
        np.arange(num_examples, dtype=np.uint8)[:, None, None, None], (num_examples, 3, 2, 1)
    ).copy()
    labels = (np.arange(num_examples) % num_classes).astype(np.int32)
    return Dataset(images, labels, tuple(str(c) for c in range(num_classes)))


def _example_ids(batch):
    return to_uint8(batch["images"])[..., 0, 0, 0].astype(int)


def test_batch_indices_is_deterministic():
    np.testing.assert_array_equal(batch_indices(100, 8, 17, 3), batch_indices(100, 8, 17, 3))
    assert not np.array_equal(batch_indices(100, 8, 17, 3), batch_indices(100, 8, 17, 4))


def test_one_epoch_is_a_permutation_without_repeats():
    num_examples, batch_size = 50, 7
    steps_per_epoch = num_examples // batch_size
    for epoch in range(3):
        steps = range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
        seen = np.concatenate([batch_indices(num_examples, batch_size, s, 0) for s in steps])
        assert len(seen) == len(set(seen)) == steps_per_epoch * batch_size
        assert seen.min() >= 0 and seen.max() < num_examples


def test_epochs_reshuffle_and_follow_the_documented_permutation():
    first = batch_indices(10, 5, 0, seed=1)
    second_epoch = batch_indices(10, 5, 2, seed=1)
    np.testing.assert_array_equal(first, np.random.default_rng([1, 0]).permutation(10)[:5])
    np.testing.assert_array_equal(second_epoch, np.random.default_rng([1, 1]).permutation(10)[:5])
    assert not np.array_equal(first, second_epoch)


def test_batch_larger_than_dataset_names_both_sizes():
    with pytest.raises(ValueError, match="batch_size=11.*num_examples=10"):
        batch_indices(10, 11, 0, 0)


def test_to_model_range_endpoints_and_round_trip():
    images = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
    scaled = to_model_range(images)
    assert scaled.dtype == np.float32
    assert scaled.min() == -1.0 and scaled.max() == 1.0
    np.testing.assert_array_equal(to_uint8(scaled), images)


def test_to_uint8_clips_and_rejects_nan():
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, 0.0, 7.0])), [0, 128, 255])
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([np.nan]))


def test_to_model_range_rejects_floats():
    with pytest.raises(ValueError, match="uint8"):
        to_model_range(np.zeros(3, np.float32))


def test_batch_at_shapes_and_matching_labels():
    dataset = _indexed_dataset()
    batch = batch_at(dataset, 6, step=5, seed=0)
    assert batch["images"].shape == (6, 3, 2, 1) and batch["images"].dtype == np.float32
    assert batch["labels"].shape == (6,) and batch["labels"].dtype == np.int32
    ids = _example_ids(batch)
    np.testing.assert_array_equal(ids, batch_indices(23, 6, 5, 0))
    np.testing.assert_array_equal(batch["labels"], dataset.labels[ids])


def test_iterator_yields_consecutive_batches():
    dataset = _indexed_dataset()
    with iterate_batches(dataset, 4, seed=9) as batches:
        for step in range(12):
            np.testing.assert_array_equal(next(batches)["images"], batch_at(dataset, 4, step, 9)["images"])


def test_resume_equals_uninterrupted():
    dataset = _indexed_dataset()
    fresh = iterate_batches(dataset, 4, seed=2)
    sixth = [next(fresh) for _ in range(6)][5]
    resumed = next(iterate_batches(dataset, 4, seed=2, start_step=5))
    for key in ("images", "labels"):
        np.testing.assert_array_equal(resumed[key], sixth[key])


def test_leading_shape_stacks_consecutive_global_batches():
    dataset = _indexed_dataset()
    items = iterate_batches(dataset, 3, seed=0, start_step=2, leading_shape=(4,))
    item = next(items)
    assert item["images"].shape == (4, 3, 3, 2, 1)
    assert item["labels"].shape == (4, 3)
    for i in range(4):
        expected = batch_at(dataset, 3, 2 * 4 + i, 0)
        np.testing.assert_array_equal(item["images"][i], expected["images"])
        np.testing.assert_array_equal(item["labels"][i], expected["labels"])


def test_iterator_reraises_errors_from_the_prefetch_thread():
    def make_item(step):
        if step == 2:
            raise RuntimeError("broken batch 2")
        return {"step": step}

    items = BatchIterator(make_item)
    assert [next(items)["step"] for _ in range(2)] == [0, 1]
    with pytest.raises(RuntimeError, match="broken batch 2"):
        next(items)


def test_close_stops_the_prefetch_thread():
    items = iterate_batches(_indexed_dataset(), 4, seed=0)
    next(items)
    items.close()
    items._thread.join(timeout=5)
    assert not items._thread.is_alive()
    with pytest.raises(StopIteration):
        next(items)


def test_unfinished_iterator_does_not_block_interpreter_exit():
    script = (
        "import numpy as np; from ganjax.data import Dataset, iterate_batches\n"
        "d = Dataset(np.zeros((8, 2, 2, 1), np.uint8), np.zeros(8, np.int32), ('a',))\n"
        "it = iterate_batches(d, 2, seed=0); next(it); print('done')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


def test_process_slices_reassemble_the_global_batch():
    batch = batch_at(_indexed_dataset(), 8, 0, 0)
    slices = [process_slice(batch, i, 4, axis=0) for i in range(4)]
    assert slices[1]["images"].shape == (2, 3, 2, 1)
    for key in ("images", "labels"):
        np.testing.assert_array_equal(np.concatenate([s[key] for s in slices]), batch[key])


def test_process_slice_on_stacked_batch_axis():
    stacked = np.arange(3 * 6).reshape(3, 6)
    np.testing.assert_array_equal(process_slice(stacked, 1, 2, axis=1), stacked[:, 3:])


def test_process_slice_errors():
    with pytest.raises(ValueError, match="batch of 6 along axis 0 does not split evenly over 4"):
        process_slice(np.zeros(6), 0, 4)
    with pytest.raises(ValueError, match=r"process_index=2 must be in \[0, process_count=2\)"):
        process_slice(np.zeros(6), 2, 2)


def test_class_balanced_batches_draw_every_class_equally_often():
    labels = np.repeat(np.arange(3), [90, 9, 1]).astype(np.int32)
    images = np.zeros((100, 4, 4, 1), np.uint8)
    dataset = Dataset(images=images, labels=labels, class_names=("a", "b", "c"))
    with iterate_batches(dataset, 30, seed=1, leading_shape=(2,), class_balanced=True) as batches:
        drawn = np.concatenate([next(batches)["labels"].ravel() for _ in range(50)])
    frequencies = np.bincount(drawn, minlength=3) / drawn.size
    np.testing.assert_allclose(frequencies, 1 / 3, atol=0.03)
    uniform = batch_at(dataset, 30, 0, 1)["labels"]
    assert np.mean(uniform == 0) > 0.6  # the default stays epoch-shuffled (mostly the head class)
