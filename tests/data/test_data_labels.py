"""Labels outside the class names, and classes without an image, stop loading with the values."""

import os

import numpy as np
import pytest
from data_writers import synthetic_images, write_idx_dataset
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from ganjax.config import apply_overrides, default_config
from ganjax.data import load_source, load_train_and_test

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                 phases=[Phase.explicit, Phase.generate, Phase.shrink])  # no database, no patch files


def _npz(path, labels, **arrays):
    np.savez(path, x=synthetic_images(len(labels)), y=np.asarray(labels), **arrays)
    return f"npz:{path}"


def _ten_classes_and_a_stray(stray=99):
    return np.concatenate([np.repeat(np.arange(10), 3), [stray]])


def test_a_stray_label_without_class_names_names_the_empty_classes_and_the_stray(tmp_path):
    source = _npz(tmp_path / "d.npz", _ten_classes_and_a_stray())
    with pytest.raises(ValueError) as error:
        load_source(source)
    message = str(error.value)
    assert "Classes 10..98 of npz:" in message and "(89 of 100 classes)" in message
    assert "Labels found: 0..9, 99; above the first empty class: 99 (1 image)" in message
    assert "config.data.allow_empty_classes=True" in message


def test_a_stray_label_beyond_the_class_names_names_its_value_and_count(tmp_path):
    source = _npz(tmp_path / "d.npz", _ten_classes_and_a_stray(), class_names=np.array(list("abcdefghij")))
    with pytest.raises(ValueError, match=r"d\.npz\[y\] must be 0\.\.9 for the 10 class name\(s\); found 99 \(1 image\)"):
        load_source(source)


def test_missing_classes_inside_the_range_are_listed(tmp_path):
    labels = [c for c in range(10) if c not in (3, 7)]
    with pytest.raises(ValueError, match=r"Classes 3, 7 of npz:.* have no image \(2 of 10 classes\)"):
        load_source(_npz(tmp_path / "d.npz", labels))
    named = _npz(tmp_path / "named.npz", [0, 2], class_names=np.array(["cat", "dog", "eel"]))
    with pytest.raises(ValueError, match=r"Class 1 \(dog\) of npz:.* has no image \(1 of 3 classes\)"):
        load_source(named)


def test_idx_labels_go_through_the_same_check(tmp_path):
    labels = _ten_classes_and_a_stray().astype(np.uint8)
    write_idx_dataset(tmp_path, synthetic_images(len(labels)), labels)
    with pytest.raises(ValueError, match=r"Classes 10\.\.98 of idx:.*99 \(1 image\)"):
        load_source(f"idx:{tmp_path}")


def test_a_huge_label_is_refused_without_making_its_classes(tmp_path):
    source = _npz(tmp_path / "d.npz", np.array([0, 1, 2**31 - 1], np.int64))
    with pytest.raises(ValueError, match=r"d\.npz\[y\] include 2147483647 \(1 image\).*at most 65536 classes"):
        load_source(source)


def test_a_deliberate_gap_loads_with_allow_empty_classes(tmp_path):
    source = _npz(tmp_path / "d.npz", _ten_classes_and_a_stray())
    dataset = load_source(source, allow_empty_classes=True)
    assert dataset.num_classes == 100
    assert np.count_nonzero(np.bincount(dataset.labels, minlength=100)) == 11


def test_the_config_key_reaches_the_loader(tmp_path):
    source = _npz(tmp_path / "d.npz", _ten_classes_and_a_stray(), x_test=synthetic_images(2), y_test=np.array([0, 1]))
    config = apply_overrides(default_config(), [f"data.source={source}"])
    with pytest.raises(ValueError, match="allow_empty_classes"):
        load_train_and_test(config.data)
    config = apply_overrides(config, ["data.allow_empty_classes=true"])
    train, test = load_train_and_test(config.data)
    assert train.num_classes == test.num_classes == 100
    with pytest.raises(ValueError, match="'data.allow_empty_classes' must be of type bool"):
        apply_overrides(default_config(), ["data.allow_empty_classes=sometimes"])


def test_a_test_split_may_miss_a_class(tmp_path):
    source = _npz(tmp_path / "d.npz", [0, 1, 2, 0, 1, 2], x_test=synthetic_images(2), y_test=np.array([0, 1]))
    assert load_source(source, "test").num_classes == 3


def test_duplicate_class_names_are_refused(tmp_path):
    source = _npz(tmp_path / "d.npz", [0, 1, 2], class_names=np.array(["a", "b", "a"]))
    with pytest.raises(ValueError, match="names more than one class 'a'"):
        load_source(source)


@FUZZ
@given(
    labels=st.lists(st.integers(-2, 14), min_size=1, max_size=20),
    num_names=st.one_of(st.none(), st.integers(1, 12)),
    allow_empty=st.booleans(),
)
def test_labels_load_exactly_when_they_fill_0_to_k_minus_1(tmp_path_factory, labels, num_names, allow_empty):
    path = tmp_path_factory.mktemp("labels") / "d.npz"
    names = {} if num_names is None else {"class_names": np.array([f"c{i}" for i in range(num_names)])}
    num_classes = max(max(labels) + 1, 1) if num_names is None else num_names
    in_range = min(labels) >= 0 and max(labels) < num_classes
    filled = set(labels) == set(range(num_classes))
    try:
        dataset = load_source(_npz(path, labels, **names), allow_empty_classes=allow_empty)
    except ValueError as error:
        assert not (in_range and (filled or allow_empty)), error
        assert str(path) in str(error)
        return
    assert in_range and (filled or allow_empty)
    assert dataset.num_classes == num_classes
    np.testing.assert_array_equal(dataset.labels, labels)


def test_train_cli_stops_on_a_stray_label_in_one_line(tmp_path):
    from conftest import REPO, run_python

    source = _npz(tmp_path / "d.npz", _ten_classes_and_a_stray())
    code = (
        "import runpy, sys; sys.argv = ['ganjax.train', '--config', "
        f"{os.path.join(REPO, 'configs', 'digits.py')!r}, '--workdir', {os.fspath(tmp_path / 'run')!r}, "
        f"'--config.data.source={source}']; runpy.run_module('ganjax.train', run_name='__main__')"
    )
    result = run_python(code, env_extra={"GANJAX_COMPILATION_CACHE": "off"}, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("ganjax.train: error:")]
    assert len(error_lines) == 1, result.stderr
    assert "Classes 10..98 of npz:" in error_lines[0] and "99 (1 image)" in error_lines[0]
