import json
import logging

import numpy as np
import pytest
from data_writers import synthetic_images, write_image

import ganjax.data.pipeline as pipeline
from ganjax.config import default_config
from ganjax.data import SUBSET_INDICES_FILE, class_counts, load_indices, load_train_and_test


def _config(source, **overrides):
    config = default_config().data
    config.update(dict(source=source, imbalance_ratio=10.0, cut_class=1, cut_fraction=0.5, labels_per_class=3))
    config.update(overrides)
    return config


@pytest.fixture
def npz_source(tmp_path):
    """60 train images (20 per class) and 9 test images, pixel [0, 0] = example id."""
    path = tmp_path / "data.npz"
    labels = np.arange(60) % 3
    np.savez(
        path,
        x=synthetic_images(60),
        y=labels,
        x_test=synthetic_images(9),
        y_test=np.arange(9) % 3,
        class_names=np.array(["a", "b", "c"]),
    )
    return f"npz:{path}"


def test_no_subset_returns_both_splits_whole(npz_source):
    train, test = load_train_and_test(_config(npz_source))
    assert (len(train), len(test)) == (60, 9)
    assert train.class_names == test.class_names == ("a", "b", "c")
    assert train.image_shape == (6, 6, 1)


def test_image_size_resizes_both_splits(npz_source):
    train, test = load_train_and_test(_config(npz_source, image_size=4))
    assert train.image_shape == test.image_shape == (4, 4, 1)


def test_source_without_test_split_gets_stratified_tenth(tmp_path, caplog):
    for class_name in ("a", "b"):
        for i in range(20):
            write_image(
                tmp_path / class_name / f"{i:02d}.png",
                np.full((4, 4), i + 100 * (class_name == "b"), np.uint8),
            )
    with caplog.at_level(logging.INFO, logger="ganjax.data.pipeline"):
        train, test = load_train_and_test(_config(f"folder:{tmp_path}", seed=5))
    assert "has no test split" in caplog.text
    np.testing.assert_array_equal(class_counts(test.labels, 2), [2, 2])
    np.testing.assert_array_equal(class_counts(train.labels, 2), [18, 18])
    train_values, test_values = set(train.images[:, 0, 0, 0]), set(test.images[:, 0, 0, 0])
    assert not train_values & test_values and len(train_values | test_values) == 40
    again, _ = load_train_and_test(_config(f"folder:{tmp_path}", seed=5))
    np.testing.assert_array_equal(again.images, train.images)


def test_long_tail_applies_to_train_only_and_saves_indices(npz_source, tmp_path):
    workdir = tmp_path / "run"
    train, test = load_train_and_test(_config(npz_source, subset="long_tail"), workdir)
    np.testing.assert_array_equal(class_counts(train.labels, 3), [20, 6, 2])
    assert len(test) == 9
    record = json.loads((workdir / SUBSET_INDICES_FILE).read_text())
    assert record["description"]["subset"] == "long_tail"
    assert record["description"]["num_examples"] == 60
    assert record["num_indices"] == len(train)


def test_resume_loads_saved_indices_instead_of_recomputing(npz_source, tmp_path, monkeypatch):
    config = _config(npz_source, subset="cut_class", cut_class=2, cut_fraction=0.25, seed=3)
    first, _ = load_train_and_test(config, tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("subset recomputed on resume")

    monkeypatch.setattr(pipeline, "cut_class_indices", fail)
    resumed, _ = load_train_and_test(config, tmp_path)
    np.testing.assert_array_equal(resumed.images, first.images)
    np.testing.assert_array_equal(class_counts(resumed.labels, 3), [20, 20, 5])


def test_resume_with_changed_settings_raises(npz_source, tmp_path):
    load_train_and_test(_config(npz_source, subset="long_tail", imbalance_ratio=10.0), tmp_path)
    with pytest.raises(ValueError, match="imbalance_ratio: stored 10.0 vs now 4.0.*fresh --workdir"):
        load_train_and_test(_config(npz_source, subset="long_tail", imbalance_ratio=4.0), tmp_path)


@pytest.mark.parametrize("subset,key,value", [
    ("long_tail", "long_tail_profile", "step"), ("long_tail", "imbalance_ratio", 4.0), ("long_tail", "seed", 1),
    ("long_tail", "subset", "cut_class"), ("cut_class", "cut_fraction", 0.25), ("cut_class", "cut_class", 2),
    ("few_label", "labels_per_class", 4),
])
def test_rerun_with_a_changed_subset_setting_names_it_and_what_to_do(npz_source, tmp_path, subset, key, value):
    load_train_and_test(_config(npz_source, subset=subset), tmp_path)
    message = rf"different settings \(.*{key}: stored .* vs now {value!r}.*fresh --workdir.*set config.data back"
    with pytest.raises(ValueError, match=message):
        load_train_and_test(_config(npz_source, **{"subset": subset, key: value}), tmp_path)


def test_rerun_with_another_source_names_it(npz_source, tmp_path):
    load_train_and_test(_config(npz_source, subset="long_tail"), tmp_path)
    other = npz_source.replace("data.npz", "copy.npz")
    (tmp_path / "copy.npz").write_bytes((tmp_path / "data.npz").read_bytes())
    with pytest.raises(ValueError, match=r"source: stored 'npz:.*data.npz' vs now 'npz:.*copy.npz'"):
        load_train_and_test(_config(other, subset="long_tail"), tmp_path)


def test_index_file_without_long_tail_profile_counts_as_the_default(npz_source, tmp_path):
    """Files written before the profile was recorded resume with "exp" and refuse "step"."""
    load_train_and_test(_config(npz_source, subset="long_tail"), tmp_path)
    path = tmp_path / SUBSET_INDICES_FILE
    record = json.loads(path.read_text())
    assert record["description"].pop("long_tail_profile") == "exp"
    path.write_text(json.dumps(record))
    load_train_and_test(_config(npz_source, subset="long_tail", long_tail_profile="exp"), tmp_path)
    with pytest.raises(ValueError, match="long_tail_profile: stored 'exp' vs now 'step'"):
        load_train_and_test(_config(npz_source, subset="long_tail", long_tail_profile="step"), tmp_path)


def test_few_label_keeps_full_train_and_stores_labelled_indices(npz_source, tmp_path):
    train, _ = load_train_and_test(_config(npz_source, subset="few_label", labels_per_class=4), tmp_path)
    assert len(train) == 60
    labelled = load_indices(tmp_path / SUBSET_INDICES_FILE, len(train))
    np.testing.assert_array_equal(class_counts(train.labels[labelled], 3), [4, 4, 4])


def test_unknown_subset_names_the_config_key(npz_source):
    with pytest.raises(ValueError, match="config.data.subset='even'"):
        load_train_and_test(_config(npz_source, subset="even"))


def test_a_balanced_subset_keeps_images_per_class_of_each_class(npz_source, tmp_path):
    train, _ = load_train_and_test(_config(npz_source, subset="balanced", images_per_class=6), tmp_path)
    np.testing.assert_array_equal(class_counts(train.labels, 3), [6, 6, 6])
    again, _ = load_train_and_test(_config(npz_source, subset="balanced", images_per_class=6), tmp_path)
    np.testing.assert_array_equal(again.images, train.images)  # the stored indices, reloaded
    with pytest.raises(ValueError, match="fewer than images_per_class=500.*config.data.images_per_class"):
        load_train_and_test(_config(npz_source, subset="balanced", images_per_class=500))


def test_missing_config_key_is_named(npz_source):
    config = _config(npz_source, subset="few_label")
    del config["labels_per_class"]
    with pytest.raises(ValueError, match="config.data.labels_per_class is missing"):
        load_train_and_test(config)


def test_digits_end_to_end_long_tail():
    train, test = load_train_and_test(_config("digits", subset="long_tail", imbalance_ratio=10.0))
    counts = class_counts(train.labels, 10)
    assert counts[-1] == counts[0] // 10
    assert np.all(np.diff(counts) <= 0)
    assert len(test) > 300 and train.image_shape == (16, 16, 1)
