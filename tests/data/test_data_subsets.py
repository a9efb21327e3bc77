import json

import numpy as np
import pytest

from ganjax.data import (
    class_counts,
    cut_class_indices,
    few_label_indices,
    load_indices,
    long_tail_class_sizes,
    long_tail_indices,
    save_indices,
    stratified_split_indices,
)


def _balanced_labels(num_classes=10, per_class=200, seed=0):
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


def _assert_sorted_unique_int64(indices):
    assert indices.dtype == np.int64
    assert np.all(np.diff(indices) > 0)


def test_class_counts():
    counts = class_counts(np.array([0, 2, 2, 0, 2]), 4)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [2, 0, 3, 0])


def test_class_counts_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"must be 0\.\.1 .*found 2 \(1 image\)"):
        class_counts(np.array([0, 2]), 2)


def test_exp_profile_sizes_follow_cui_et_al():
    sizes = long_tail_class_sizes(10, 5000, 100)
    # CIFAR-10-LT with imbalance ratio 100 (Cao et al. 2019, LDAM, Table 1 setup).
    np.testing.assert_array_equal(sizes, [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])


def test_step_profile_sizes():
    np.testing.assert_array_equal(long_tail_class_sizes(5, 100, 10, "step"), [100, 100, 100, 10, 10])


def test_long_tail_counts_follow_profile():
    labels = _balanced_labels(per_class=200)
    labels = np.concatenate([labels, np.full(50, 3)])  # Class 3 larger: n_max is still 200.
    indices = long_tail_indices(labels, 10, imbalance_ratio=20, seed=1)
    _assert_sorted_unique_int64(indices)
    counts = class_counts(labels[indices], 10)
    assert counts[0] == 200
    assert counts[-1] == 200 // 20
    assert np.all(np.diff(counts) <= 0)
    np.testing.assert_array_equal(counts, long_tail_class_sizes(10, 200, 20))


def test_long_tail_is_deterministic_in_seed():
    labels = _balanced_labels()
    first = long_tail_indices(labels, 10, 10, seed=3)
    np.testing.assert_array_equal(first, long_tail_indices(labels, 10, 10, seed=3))
    assert not np.array_equal(first, long_tail_indices(labels, 10, 10, seed=4))


def test_long_tail_keeps_at_least_one_image_per_class():
    counts = class_counts(
        _balanced_labels(per_class=5)[long_tail_indices(_balanced_labels(per_class=5), 10, 1000, 0)],
        10,
    )
    assert counts.min() == 1


@pytest.mark.parametrize("ratio", [1, 0.5, 0, -2, float("nan"), float("inf")])
def test_long_tail_rejects_ratio_not_above_one(ratio):
    with pytest.raises(ValueError, match="imbalance_ratio must be a finite number > 1"):
        long_tail_indices(_balanced_labels(), 10, ratio, 0)


def test_long_tail_rejects_unknown_profile_and_empty_class():
    with pytest.raises(ValueError, match="Unknown long-tail profile 'linear'"):
        long_tail_indices(_balanced_labels(), 10, 10, 0, profile="linear")
    labels = np.array([0, 0, 2, 2])
    with pytest.raises(ValueError, match=r"Classes \[1\] have no images"):
        long_tail_indices(labels, 3, 10, 0)


def test_cut_class_keeps_fraction_of_one_class():
    labels = _balanced_labels(num_classes=4, per_class=100)
    indices = cut_class_indices(labels, class_id=2, fraction=0.29, seed=0)
    _assert_sorted_unique_int64(indices)
    np.testing.assert_array_equal(class_counts(labels[indices], 4), [100, 100, 29, 100])


def test_cut_class_keeps_at_least_one_image():
    labels = _balanced_labels(num_classes=3, per_class=10)
    indices = cut_class_indices(labels, class_id=0, fraction=0.01, seed=0)
    assert class_counts(labels[indices], 3)[0] == 1


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_cut_class_rejects_fraction_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match=r"cut_fraction must be in \(0, 1\]"):
        cut_class_indices(_balanced_labels(), 1, fraction, 0)


@pytest.mark.parametrize("class_id", [-1, 10, 12])
def test_cut_class_rejects_absent_class(class_id):
    with pytest.raises(ValueError, match=f"cut_class {class_id} does not occur"):
        cut_class_indices(_balanced_labels(), class_id, 0.5, 0)


def test_few_label_exactly_k_per_class():
    labels = _balanced_labels(num_classes=5, per_class=30)
    indices = few_label_indices(labels, 5, per_class=7, seed=2)
    _assert_sorted_unique_int64(indices)
    np.testing.assert_array_equal(class_counts(labels[indices], 5), np.full(5, 7))
    np.testing.assert_array_equal(indices, few_label_indices(labels, 5, 7, seed=2))


@pytest.mark.parametrize("per_class", [0, -1, 2.5])
def test_few_label_rejects_non_positive_per_class(per_class):
    with pytest.raises(ValueError, match="labels_per_class must be a positive int"):
        few_label_indices(_balanced_labels(), 10, per_class, 0)


def test_few_label_names_class_with_too_few_images():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(ValueError, match="Class 1 has only 3 images.*labels_per_class=5"):
        few_label_indices(labels, 3, 5, 0)


def test_stratified_split_is_disjoint_complete_and_proportional():
    labels = np.concatenate([np.zeros(50, int), np.ones(20, int), np.full(1, 2)])
    train, test = stratified_split_indices(labels, 0.2, seed=0)
    _assert_sorted_unique_int64(train)
    _assert_sorted_unique_int64(test)
    assert not set(train) & set(test)
    assert len(train) + len(test) == len(labels)
    np.testing.assert_array_equal(class_counts(labels[test], 3), [10, 4, 0])


def test_save_and_load_indices_round_trip(tmp_path):
    path = tmp_path / "sub" / "indices.json"
    indices = np.array([1, 4, 9], np.int64)
    save_indices(path, indices, {"subset": "long_tail", "num_examples": 10, "ratio": np.float32(2)})
    loaded = load_indices(path, 10, expected_description={"subset": "long_tail"})
    np.testing.assert_array_equal(loaded, indices)
    assert loaded.dtype == np.int64
    assert json.loads(path.read_text())["description"]["ratio"] == 2.0
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_load_indices_rejects_out_of_range(tmp_path):
    path = tmp_path / "indices.json"
    save_indices(path, np.array([0, 7]), {})
    with pytest.raises(ValueError, match=f"{path} holds indices outside \\[0, 4\\]"):
        load_indices(path, 5)


def test_load_indices_rejects_other_dataset_size(tmp_path):
    path = tmp_path / "indices.json"
    save_indices(path, np.array([0, 1]), {"num_examples": 100})
    with pytest.raises(ValueError, match="100 examples but this one has 50"):
        load_indices(path, 50)


def test_load_indices_rejects_other_settings(tmp_path):
    path = tmp_path / "indices.json"
    save_indices(path, np.array([0, 1]), {"subset": "long_tail", "imbalance_ratio": 10})
    with pytest.raises(ValueError, match="imbalance_ratio: stored 10 vs now 100"):
        load_indices(path, 5, expected_description={"subset": "long_tail", "imbalance_ratio": 100})


def test_load_indices_compares_unrecorded_keys_as_their_defaults(tmp_path):
    path = tmp_path / "indices.json"
    save_indices(path, np.array([0, 1]), {"subset": "long_tail"})
    expected = {"subset": "long_tail", "long_tail_profile": "exp"}
    with pytest.raises(ValueError, match=r"long_tail_profile: stored None vs now 'exp'\); delete"):
        load_indices(path, 5, expected_description=expected)
    load_indices(path, 5, expected_description=expected, unrecorded_defaults={"long_tail_profile": "exp"})
    with pytest.raises(ValueError, match=r"long_tail_profile: stored 'exp' vs now 'step'\); start afresh"):
        load_indices(path, 5, expected_description={**expected, "long_tail_profile": "step"},
                     unrecorded_defaults={"long_tail_profile": "exp"}, difference_fix="start afresh")


def test_load_indices_rejects_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_indices(tmp_path / "absent.json", 5)
    path = tmp_path / "corrupt.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt.json is not an index file"):
        load_indices(path, 5)
